"""Numba-only behaviour of ``fastnn.backends.numba``: paths, threads, JIT flags, pure Python."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("numba")

from fastnn import _codes as C  # noqa: E402
from fastnn.backends import _jit, _numba_dense, _numba_sparse  # noqa: E402
from fastnn.backends import numba as nb  # noqa: E402
from fastnn.backends._workspace import Workspace  # noqa: E402


def _sparse_batch(rng, n, d, zeros, dtype=np.float64):
    x = rng.standard_normal((n, d)).astype(dtype)
    x[rng.random((n, d)) < zeros] = 0
    return x


@pytest.mark.parametrize("n", [1, 5, 70])  # 70 rows: two chunks of the column index
def test_loops_and_blas_paths_agree(n):
    rng = np.random.default_rng(n)
    d, k = 40, 9
    x = _sparse_batch(rng, n, d, 0.7)
    W, b = rng.standard_normal((d, k)), rng.standard_normal(k)
    grad = rng.standard_normal((n, k))
    out = {}
    for loops in (True, False):
        a = np.empty((n, k))
        _numba_dense.dense_forward_into(x, W, b, C.TANH, 0.0, a, np.empty(d, np.int32), loops)
        g, dW, db, gx = grad.copy(), np.full((d, k), 5.0), np.empty(k), np.empty((n, d))
        work = np.empty(_numba_sparse.work_size(d), np.int32)
        _numba_dense.dense_backward_into(
            x, W, a, g, C.TANH, 0.0, dW, db, gx, True, loops, work, np.ones(d, np.bool_), False, 0.0
        )
        out[loops] = (a, g, dW, db, gx)
    for with_loops, with_blas in zip(out[True], out[False], strict=True):
        np.testing.assert_allclose(with_loops, with_blas, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [1, 9, 70])
def test_sparse_weight_gradient_and_sgd_step(n):
    """dW over the non-zeros (stale rows of an earlier batch zeroed), and the plain-SGD path
    that adds -lr x.T @ delta straight into W instead."""
    rng = np.random.default_rng(n)
    d, k = 30, 6
    zeros = 0.8 if n > 1 else 0.5
    work = np.empty(_numba_sparse.work_size(d), np.int32)
    dirty = np.ones(d, np.bool_)
    dW = np.full((d, k), np.nan)
    for _ in range(2):  # the second batch touches other rows than the first
        x, delta = _sparse_batch(rng, n, d, zeros), rng.standard_normal((n, k))
        _numba_sparse.weight_grad_loops(x, delta, dW, work, dirty, False, 0.0)
        np.testing.assert_allclose(dW, x.T @ delta, rtol=1e-12, atol=1e-12)
        assert not dirty[(x == 0).all(axis=0)].any()  # untouched rows are known to be zero
    W = rng.standard_normal((d, k))
    stepped = W.copy()
    _numba_sparse.weight_grad_loops(x, delta, stepped, work, dirty, True, 0.1)
    np.testing.assert_allclose(stepped, W - 0.1 * dW, rtol=1e-12, atol=1e-12)


def test_loop_choice_follows_density():
    rng = np.random.default_rng(2)
    use = _numba_dense.use_loops
    assert use(rng.standard_normal((1, 784)), 128, 2)  # batch 1: always loops
    assert use(_sparse_batch(rng, 64, 784, 0.81), 128, 2)  # MNIST-like
    assert not use(rng.standard_normal((64, 784)), 128, 1)  # dense: BLAS
    assert not use(_sparse_batch(rng, 4096, 784, 0.81), 128, 2)  # huge batch: threaded BLAS


def test_jit_flags_keep_the_non_finite_check():
    assert _jit.JIT_OPTIONS["cache"] is True
    assert not {"nnan", "ninf", "fast"} & set(_jit.JIT_OPTIONS["fastmath"])
    assert "parallel" not in _jit.JIT_OPTIONS


def test_cached_kernels_depend_on_every_backend_source():
    """A kernel's cache entry must go stale when _codes.py or another _numba_* file changes."""
    locator = _numba_sparse.forward_loops._cache._impl.locator
    assert type(locator).__name__ == "_FastnnCacheLocator"
    assert locator.get_source_stamp()[1] == _jit.sources_stamp()


def _dense_workspace(batch_size):
    rng = np.random.default_rng(0)
    sizes = (300, 200, 10)
    weights = [
        rng.standard_normal((a, b)) / np.sqrt(a) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    ]
    biases = [np.zeros(b) for b in sizes[1:]]
    hyper = np.array([0.01, 0.9, 0.0, 0.0, 0.9, 0.999, 1e-8])
    return Workspace(weights, biases, [C.RELU, C.IDENTITY], [0.0, 0.0],
                     C.LOSS_CROSS_ENTROPY, C.OPT_MOMENTUM, hyper, batch_size)  # fmt: skip


def test_one_and_two_threads_give_the_same_weights():
    """Dense 256-row batches: large enough for a multi-threaded BLAS product."""
    import numba
    from threadpoolctl import threadpool_info, threadpool_limits

    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((512, 300)), rng.integers(0, 10, 512)
    order = rng.permutation(512)
    before_numba = numba.get_num_threads()
    before_blas = {i["filepath"]: i["num_threads"] for i in threadpool_info()}
    results = []
    try:
        for threads in (1, 2):
            nb.set_num_threads(threads)
            ws = _dense_workspace(256)
            nb.train_epoch(ws, X, y, order, 256, np.zeros(2))
            results.append(ws.weights + ws.biases)
    finally:
        numba.set_num_threads(before_numba)
        for info in threadpool_info():
            if info["filepath"] in before_blas:
                threadpool_limits(before_blas[info["filepath"]], user_api=info["user_api"])
    for one, two in zip(*results, strict=True):
        np.testing.assert_allclose(one, two, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError):
        nb.set_num_threads(0)


def test_inconsistent_workspace_is_an_error_not_a_crash():
    ws = _dense_workspace(8)
    ws.weights[1] = np.zeros((150, 10))  # layer 1 expects 200 inputs
    with pytest.raises(ValueError, match="weights\\[1\\]"):
        nb.train_epoch(ws, np.zeros((8, 300)), np.zeros(8, np.int64), np.arange(8), 8, np.zeros(1))
    ws = _dense_workspace(8)
    ws.outputs[0] = np.zeros((4, 200))
    with pytest.raises(ValueError, match="outputs\\[0\\]"):
        nb.train_epoch(ws, np.zeros((8, 300)), np.zeros(8, np.int64), np.arange(8), 8, np.zeros(1))


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_missing_numba_is_an_import_error():
    code = """
        import sys
        sys.modules["numba"] = None  # what Python does for a package that is not installed
        try:
            import fastnn.backends.numba
        except ImportError as exc:
            print("ImportError:", exc)
        import fastnn.backends as B
        print(B.available_backends())
    """
    result = _run_python(code)
    assert result.returncode == 0, result.stderr
    assert "ImportError:" in result.stdout and "'numba'" not in result.stdout.splitlines()[-1]


def test_kernels_are_valid_python_without_jit():
    """With NUMBA_DISABLE_JIT=1 the kernels run as plain Python and still match the reference."""
    code = """
        import numpy as np
        from fastnn import _codes as C
        from fastnn.backends import numba as nb, numpy as ref
        from fastnn.backends._workspace import Workspace
        assert not hasattr(nb._dense.dense_forward_into, "py_func")  # really not compiled

        rng = np.random.default_rng(0)
        x = rng.standard_normal((6, 12)); x[rng.random((6, 12)) < 0.6] = 0
        W, b = rng.standard_normal((12, 4)), rng.standard_normal(4)
        for act in sorted(C.ACTIVATION_NAMES):
            outs = []
            for B in (ref, nb):
                a = np.empty((6, 4)); B.dense_forward(x, W, b, act, 0.1, a)
                g, dW, db, gx = np.ones((6, 4)), np.empty((12, 4)), np.empty(4), np.empty((6, 12))
                B.dense_backward(x, W, a, g, act, 0.1, dW, db, gx)
                outs.append((a, g, dW, db, gx))
            for u, v in zip(*outs):
                np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12)
        for code, name in C.LOSS_KERNEL_NAMES.items():
            t = rng.integers(0, 4, 6) if code == C.LOSS_CROSS_ENTROPY else rng.random((6, 4))
            g1, g2 = np.empty((6, 4)), np.empty((6, 4))
            l1, l2 = getattr(ref, name)(W[:6], t, g1), getattr(nb, name)(W[:6], t, g2)
            assert abs(l1 - l2) < 1e-10, name
            np.testing.assert_allclose(g1, g2, rtol=1e-10, atol=1e-12)
        X, y = x.repeat(3, axis=0), rng.integers(0, 4, 18)
        for opt in (C.OPT_SGD, C.OPT_ADAM):
            wss = []
            for B in (ref, nb):
                ws = Workspace([W.copy(), W[:4].copy()], [b.copy(), b.copy()],
                               [C.RELU, C.IDENTITY], [0.0, 0.0], C.LOSS_CROSS_ENTROPY, opt,
                               np.array([0.1, 0.0, 0.0, 0.0, 0.9, 0.999, 1e-8]), 4)
                assert B.train_epoch(ws, X, y, np.arange(18), 4, np.zeros(5)) == 5
                wss.append(ws)
            for u, v in zip(wss[0].weights + wss[0].dW, wss[1].weights + wss[1].dW):
                np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12)
        print("ok")
    """
    result = _run_python(code, NUMBA_DISABLE_JIT="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
