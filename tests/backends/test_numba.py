"""``fastnn.backends.numba`` against the NumPy reference, and its Numba-only behaviour.

Kernels and epochs loop over the registries of ``fastnn._codes`` (every activation, every
loss), float32 and float64, batch 1, ragged batches, sparse inputs (the loops paths) and inputs
dense and large enough for BLAS. The JIT flags and the disk cache: ``test_numba_jit.py``.
"""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("numba")

from fastnn import _codes as C  # noqa: E402
from fastnn.backends import eager  # noqa: E402
from fastnn.backends import numba as nb  # noqa: E402
from fastnn.backends import numpy as ref  # noqa: E402
from fastnn.backends.numba import blas as nb_blas  # noqa: E402
from fastnn.backends.numba import dense, sparse  # noqa: E402
from fastnn.backends.workspace import Workspace  # noqa: E402
from fastnn.layers import Dense  # noqa: E402

ACTS = sorted(C.ACTIVATION_NAMES)
ACT_IDS = [C.ACTIVATION_NAMES[a] for a in ACTS]
DTYPES = [np.float32, np.float64]
TOL = {np.float32: (2e-4, 2e-5), np.float64: (1e-10, 1e-12)}  # rtol, atol
# (n, d, k, fraction of zero inputs): batch 1, odd sizes, sparse rows, dense enough for BLAS.
SHAPES = [(1, 7, 5, 0.0), (1, 30, 9, 0.8), (13, 9, 3, 0.0), (20, 30, 6, 0.8), (64, 64, 40, 0.0)]
HYPER = np.array([0.05, 0.9, 0.0, 0.0, 0.9, 0.999, 1e-8])


def close(actual, expected, dtype, scale=1.0):
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(actual, expected, rtol=rtol * scale, atol=atol * scale)


def inputs(rng, n, d, zeros, dtype):
    x = rng.standard_normal((n, d)).astype(dtype)
    x[rng.random((n, d)) < zeros] = 0
    return x


def targets_for(loss, rng, n, k, dtype):
    if loss == C.LOSS_CROSS_ENTROPY:
        return rng.integers(0, k, n).astype(np.int64)
    if loss == C.LOSS_MSE:
        return rng.standard_normal((n, k)).astype(dtype)
    t = rng.random((n, k)).astype(dtype)
    t[rng.random((n, k)) < 0.3] = 0  # 0 log 0 = 0
    t[:, 0] += 0.1
    return t if loss == C.LOSS_BINARY_CROSS_ENTROPY else (t / t.sum(1, keepdims=True)).astype(dtype)


def dense_pass(B, x, W, b, act, grad, first_layer=False):
    n, k = x.shape[0], W.shape[1]
    z = np.full((n, k), np.nan, x.dtype)  # must be written (or, if not needed, left alone)
    out = np.full((n, k), 7, x.dtype)
    B.dense_forward(x, W, b, act, 0.3, z if act in C.NEEDS_PREACTIVATION else None, out)
    g = grad.copy()
    dW, db = np.full(W.shape, np.nan, x.dtype), np.full(k, np.nan, x.dtype)
    gx = None if first_layer else np.full(x.shape, np.nan, x.dtype)
    B.dense_backward(x, W, z if act in C.NEEDS_PREACTIVATION else None, out, g, act, 0.3,
                     dW, db, gx)  # fmt: skip
    return out, z, g, dW, db, gx


# Kernels against the reference -------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("act", ACTS, ids=ACT_IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{n}x{d}x{k}z{z}" for n, d, k, z in SHAPES])
def test_dense_forward_backward(dtype, act, shape):
    n, d, k, zeros = shape
    rng = np.random.default_rng(n * d + act)
    x = inputs(rng, n, d, zeros, dtype)
    W = (rng.standard_normal((d, k)) / math.sqrt(d)).astype(dtype)
    b = rng.standard_normal(k).astype(dtype)
    grad = rng.standard_normal((n, k)).astype(dtype)
    first = shape == SHAPES[1]  # one case without the input gradient
    expected = dense_pass(ref, x, W, b, act, grad, first)
    got = dense_pass(nb, x, W, b, act, grad, first)
    for name, u, v in zip(("out", "z", "delta", "dW", "db", "grad_x"), got, expected, strict=True):
        if name == "z" and act not in C.NEEDS_PREACTIVATION:
            assert np.isnan(u).all(), "z of an activation that keeps none must not be written"
        elif v is not None:
            close(u, v, dtype, scale=10.0 if name in ("dW", "grad_x") else 1.0)


def test_shapes_cover_both_products():
    """SHAPES must exercise the sparse loops and BLAS (else the kernel test misses one)."""
    rng = np.random.default_rng(0)
    choice = {dense.use_loops(inputs(rng, n, d, z, np.float64), k, 2) for n, d, k, z in SHAPES}
    assert choice == {True, False}


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("loss", sorted(C.LOSS_KERNEL_NAMES), ids=C.LOSS_KERNEL_NAMES.values())
@pytest.mark.parametrize("n", [1, 13])
def test_losses(dtype, loss, n):
    rng = np.random.default_rng(loss * 10 + n)
    k = 5
    outputs = (3 * rng.standard_normal((n, k))).astype(dtype)
    targets = targets_for(loss, rng, n, k, dtype)
    name = C.LOSS_KERNEL_NAMES[loss]
    g_ref, g_new = np.empty_like(outputs), np.full_like(outputs, np.nan)
    value_ref = getattr(ref, name)(outputs, targets, g_ref)
    value_new = getattr(nb, name)(outputs, targets, g_new)
    assert type(value_new) is float
    assert value_new == pytest.approx(value_ref, rel=1e-5 if dtype == np.float32 else 1e-12)
    close(g_new, g_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize(
    "update",
    [("sgd", (0.1, 0.0)), ("sgd", (0.1, 0.01)), ("momentum", (0.1, 0.9, False, 0.01)),
     ("momentum", (0.1, 0.9, True, 0.0)), ("adam", (0.01, 0.9, 0.999, 1e-8, 0.01, 3))],
    ids=["sgd", "sgd-wd", "momentum-wd", "nesterov", "adam"],
)  # fmt: skip
def test_optimizers(dtype, update):
    kind, hyper = update
    rng = np.random.default_rng(len(hyper))
    n_state = {"sgd": 0, "momentum": 1, "adam": 2}[kind]
    arrays = [rng.standard_normal(17).astype(dtype) for _ in range(2)]
    arrays += [np.abs(rng.standard_normal(17)).astype(dtype) for _ in range(n_state)]
    copies = [[a.copy() for a in arrays] for _ in range(2)]
    for B, arrs in zip((ref, nb), copies, strict=True):
        getattr(B, f"{kind}_update")(*arrs, *hyper)
    for u, v in zip(copies[1], copies[0], strict=True):
        close(u, v, dtype)


# The epoch against the eager loop on the reference -------------------------------------------
def network(rng, sizes, activations, dtype):
    """Built Dense layers (leaky slope 0.3, ELU alpha 0.7) with non-zero biases."""
    layers = []
    for d, k, name in zip(sizes[:-1], sizes[1:], activations, strict=True):
        layer = Dense(d, k, activation=name, negative_slope=0.3, alpha=0.7)
        layer.build((d,), rng, dtype)
        layer.b[:] = 0.1 * rng.standard_normal(k)
        layers.append(layer)
    return layers


def workspace(layers, loss, optimizer, batch_size, dtype):
    """As fit builds it; the last layer's activation is the loss's (identity here)."""
    acts = [layer.act_code for layer in layers]
    return Workspace(copy.deepcopy(layers), acts, loss, optimizer, HYPER, batch_size, dtype)


def run_both(layers, loss, optimizer, X, y, batch_size, dtype):
    """The same epoch through nb.train_epoch and through eager_epoch on the reference."""
    order = np.random.default_rng(1).permutation(X.shape[0])
    results = []
    for B, run in ((nb, nb.train_epoch), (ref, None)):
        ws = workspace(layers, loss, optimizer, batch_size, dtype)
        losses = np.full(-(-X.shape[0] // batch_size), np.nan)
        if run is None:
            done = eager.eager_epoch(B, ws, X, y, order, batch_size, losses)
        else:
            done = run(ws, X, y, order, batch_size, losses)
        results.append((ws, done, losses))
    return results


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("act", ACTS, ids=ACT_IDS)
@pytest.mark.parametrize("optimizer", [C.OPT_SGD, C.OPT_MOMENTUM, C.OPT_ADAM],
                         ids=["sgd", "momentum", "adam"])  # fmt: skip
def test_train_epoch_matches_eager(dtype, act, optimizer):
    """Every activation in the hidden layer (its z kept in ws.preacts where it needs it);
    sparse inputs, a ragged last batch; plain SGD steps W inside backward."""
    rng = np.random.default_rng(act)
    X = inputs(rng, 37, 20, 0.7, dtype)
    y = rng.integers(0, 4, 37)
    layers = network(rng, (20, 9, 4), [C.ACTIVATION_NAMES[act], None], dtype)
    (ws, done, losses), (ws_ref, done_ref, losses_ref) = run_both(
        layers, C.LOSS_CROSS_ENTROPY, optimizer, X, y, 8, dtype
    )
    assert done == done_ref == 5 and ws.step == ws_ref.step == 5
    close(losses, losses_ref, dtype)
    for name in ("weights", "biases", "dW", "db", "state1_w", "state2_b", "preacts"):
        for u, v in zip(getattr(ws, name), getattr(ws_ref, name), strict=True):
            close(u, v, dtype, scale=20.0)


@pytest.mark.parametrize("loss", sorted(C.LOSS_KERNEL_NAMES), ids=C.LOSS_KERNEL_NAMES.values())
def test_train_epoch_every_loss(loss):
    """Three layers (depth is part of the specialization), batch 1 and a ragged full batch."""
    rng = np.random.default_rng(loss)
    X = inputs(rng, 11, 6, 0.3, np.float64)
    y = targets_for(loss, rng, 11, 3, np.float64)
    layers = network(rng, (6, 8, 5, 3), ["gelu", "elu", None], np.float64)
    for batch_size in (1, 11):
        (ws, done, losses), (ws_ref, _, losses_ref) = run_both(
            layers, loss, C.OPT_ADAM, X, y, batch_size, np.float64
        )
        close(losses, losses_ref, np.float64)
        for u, v in zip(ws.weights + ws.dW, ws_ref.weights + ws_ref.dW, strict=True):
            close(u, v, np.float64, scale=20.0)


def test_train_epoch_stops_at_a_non_finite_loss():
    rng = np.random.default_rng(3)
    X = inputs(rng, 24, 5, 0.0, np.float64)
    X[13] = np.inf  # batch 3 of 8 rows (rows 8-15 in order)
    ws = workspace(network(rng, (5, 4, 2), ["relu", None], np.float64), C.LOSS_MSE, C.OPT_SGD, 8,
                   np.float64)  # fmt: skip
    losses = np.zeros(3)
    done = nb.train_epoch(ws, X, rng.standard_normal((24, 2)), np.arange(24), 8, losses)
    assert done == 2 and ws.step == 1 and not math.isfinite(losses[1])


# Numba-only paths ------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ACTS, ids=ACT_IDS)
@pytest.mark.parametrize("n", [1, 5, 70])  # 70 rows: two chunks of the column index
def test_loops_and_blas_paths_agree(n, act):
    rng = np.random.default_rng(n)
    d, k = 40, 9
    x = inputs(rng, n, d, 0.7, np.float64)
    W, b = rng.standard_normal((d, k)), rng.standard_normal(k)
    grad = rng.standard_normal((n, k))
    out = {}
    for loops in (True, False):
        a, z = np.empty((n, k)), np.empty((n if act in C.NEEDS_PREACTIVATION else 0, k))
        dense.dense_forward_kernel(x, W, b, act, 0.2, z, a, np.empty(d, np.int32), loops)
        g, dW, db, gx = grad.copy(), np.full((d, k), 5.0), np.empty(k), np.empty((n, d))
        scratch = np.empty(sparse.scratch_size(d), np.int32)
        stepped = dense.dense_backward_kernel(
            x, W, z, a, g, act, 0.2, dW, db, gx, True, loops, scratch, np.ones(d, np.bool_),
            False, 0.0,
        )  # fmt: skip
        assert not stepped
        out[loops] = (a, z, g, dW, db, gx)
    for with_loops, with_blas in zip(out[True], out[False], strict=True):
        np.testing.assert_allclose(with_loops, with_blas, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [1, 9, 70])
def test_sparse_weight_gradient_and_sgd_step(n):
    """dW over the non-zeros (stale rows of an earlier batch zeroed), and the plain-SGD path
    that adds -lr x.T @ delta straight into W instead."""
    rng = np.random.default_rng(n)
    d, k = 30, 6
    scratch = np.empty(sparse.scratch_size(d), np.int32)
    dirty = np.ones(d, np.bool_)
    dW = np.full((d, k), np.nan)
    for _ in range(2):  # the second batch touches other rows than the first
        x = inputs(rng, n, d, 0.8 if n > 1 else 0.5, np.float64)
        delta = rng.standard_normal((n, k))
        sparse.weight_grad_loops(x, delta, dW, scratch, dirty, False, 0.0)
        np.testing.assert_allclose(dW, x.T @ delta, rtol=1e-12, atol=1e-12)
        assert not dirty[(x == 0).all(axis=0)].any()  # untouched rows are known to be zero
    W = rng.standard_normal((d, k))
    stepped = W.copy()
    sparse.weight_grad_loops(x, delta, stepped, scratch, dirty, True, 0.1)
    np.testing.assert_allclose(stepped, W - 0.1 * dW, rtol=1e-12, atol=1e-12)


def test_loop_choice_follows_density():
    rng = np.random.default_rng(2)
    use = dense.use_loops
    assert use(rng.standard_normal((1, 784)), 128, 2)  # batch 1: always loops
    assert use(inputs(rng, 64, 784, 0.81, np.float64), 128, 2)  # MNIST-like
    assert not use(rng.standard_normal((64, 784)), 128, 1)  # dense: BLAS
    assert not use(inputs(rng, 4096, 784, 0.81, np.float64), 128, 2)  # huge batch: threaded BLAS


def test_one_and_two_threads_give_the_same_weights():
    """Dense 256-row batches: large enough for a multi-threaded BLAS product."""
    import numba
    from threadpoolctl import threadpool_info, threadpool_limits

    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((512, 300)), rng.integers(0, 10, 512)
    layers = network(rng, (300, 200, 10), ["relu", None], np.float64)
    order = rng.permutation(512)
    before_numba = numba.get_num_threads()
    before_blas = {i["filepath"]: i["num_threads"] for i in threadpool_info()}
    results = []
    try:
        for threads in (1, 2):
            nb.set_num_threads(threads)
            assert nb.get_num_threads() == threads
            ws = workspace(layers, C.LOSS_CROSS_ENTROPY, C.OPT_MOMENTUM, 256, np.float64)
            nb.train_epoch(ws, X, y, order, 256, np.zeros(2))
            results.append(ws.weights + ws.biases)
    finally:
        numba.set_num_threads(before_numba)
        for info in threadpool_info():
            if info["filepath"] in before_blas:
                threadpool_limits(before_blas[info["filepath"]], user_api=info["user_api"])
        nb_blas.set_blas_threads(max(before_blas.values(), default=1))
    for one, two in zip(*results, strict=True):
        np.testing.assert_allclose(one, two, rtol=1e-12, atol=1e-14)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError):
            nb.set_num_threads(bad)


def test_inconsistent_workspace_is_an_error_not_a_crash():
    layers = network(np.random.default_rng(0), (30, 20, 10), ["relu", None], np.float64)
    args = (np.zeros((8, 30)), np.zeros(8, np.int64), np.arange(8), 8, np.zeros(1))
    ws = workspace(layers, C.LOSS_CROSS_ENTROPY, C.OPT_SGD, 8, np.float64)
    ws.weights[1] = np.zeros((15, 10))  # layer 1 expects 20 inputs
    with pytest.raises(ValueError, match="weights\\[1\\]"):
        nb.train_epoch(ws, *args)
    ws = workspace(layers, C.LOSS_CROSS_ENTROPY, C.OPT_SGD, 8, np.float64)
    ws.outputs[0] = np.zeros((4, 20))
    with pytest.raises(ValueError, match="outputs\\[0\\]"):
        nb.train_epoch(ws, *args)


def test_package_mirrors_the_other_backends():
    """The contract, the module names and the shared identifiers of BACKEND_SPEC's table."""
    from fastnn.backends._frontend import contract_names
    from fastnn.backends.numba import activations, epoch, jit, losses, optim

    assert nb.NAME == "numba" and nb.FUSED_LAYERS == frozenset({"dense"})
    for name in contract_names():
        assert vars(nb)[name].__doc__.startswith("numba backend:"), name
    shared = {activations: ["bias_act_row", "act_backward_row"], losses: ["loss_by_code"],
              dense: ["dense_forward_kernel", "dense_backward_kernel", "use_loops"],
              optim: ["update_by_code"], epoch: ["train_epoch_kernel"], sparse: ["scratch_size"],
              jit: ["kernel", "sources_stamp"]}  # fmt: skip
    for module, names in shared.items():
        for name in names:
            assert callable(getattr(module, name)), f"{module.__name__}.{name}"


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_kernels_are_valid_python_without_jit():
    """With NUMBA_DISABLE_JIT=1 the kernels run as plain Python and still match the reference:
    every activation (z kept where needed), every loss, and the epoch against the eager loop."""
    code = """
        import copy
        import numpy as np
        from fastnn import _codes as C
        from fastnn.backends import eager, numba as nb, numpy as ref
        from fastnn.backends.numba import dense, sparse
        from fastnn.backends.workspace import Workspace
        from fastnn.layers import Dense
        assert not hasattr(dense.dense_forward_kernel, "py_func")  # really not compiled

        rng = np.random.default_rng(0)
        x = rng.standard_normal((6, 12)); x[rng.random((6, 12)) < 0.6] = 0
        W, b = rng.standard_normal((12, 4)), rng.standard_normal(4)
        for act in sorted(C.ACTIVATION_NAMES):
            outs = []
            for B in (ref, nb):
                z = np.empty((6, 4)) if act in C.NEEDS_PREACTIVATION else None
                a = np.empty((6, 4)); B.dense_forward(x, W, b, act, 0.1, z, a)
                g, dW, db, gx = np.ones((6, 4)), np.empty((12, 4)), np.empty(4), np.empty((6, 12))
                B.dense_backward(x, W, z, a, g, act, 0.1, dW, db, gx)
                outs.append((a, g, dW, db, gx))
            for u, v in zip(*outs):
                np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12, err_msg=str(act))
        W2, a2 = rng.standard_normal((12, 73)), np.empty((6, 73))  # 64 + 8 + 1 columns:
        sparse.forward_loops(x, W2, a2, np.empty(12, np.int32))  # every part of a block
        np.testing.assert_allclose(a2, x @ W2, rtol=1e-12, atol=1e-12)
        for code, name in C.LOSS_KERNEL_NAMES.items():
            t = rng.integers(0, 4, 6) if code == C.LOSS_CROSS_ENTROPY else rng.random((6, 4))
            g1, g2 = np.empty((6, 4)), np.empty((6, 4))
            l1, l2 = getattr(ref, name)(W[:6], t, g1), getattr(nb, name)(W[:6], t, g2)
            assert abs(l1 - l2) < 1e-10, name
            np.testing.assert_allclose(g1, g2, rtol=1e-10, atol=1e-12)
        X, y = x.repeat(3, axis=0), rng.integers(0, 4, 18)
        hyper = np.array([0.1, 0.0, 0.0, 0.0, 0.9, 0.999, 1e-8])
        layers = [Dense(12, 4, activation="silu"), Dense(4, 4)]
        for layer in layers:
            layer.initialize(rng, np.float64)
        for opt in (C.OPT_SGD, C.OPT_ADAM):
            wss = []
            for run in (nb.train_epoch, lambda *a: eager.eager_epoch(ref, *a)):
                ws = Workspace(copy.deepcopy(layers), [C.SILU, C.IDENTITY], C.LOSS_CROSS_ENTROPY,
                               opt, hyper, 4, np.float64)
                assert run(ws, X, y, np.arange(18), 4, np.zeros(5)) == 5
                wss.append(ws)
            for u, v in zip(wss[0].weights + wss[0].dW, wss[1].weights + wss[1].dW):
                np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12)
        print("ok")
    """
    result = _run_python(code, NUMBA_DISABLE_JIT="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
