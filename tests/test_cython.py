"""Cython-only behaviour of ``fastnn.backends.cython``: build without the extension, argument
checks on every entry point, and the epoch paths the shared parity tests do not reach (sparse
batches of 8+ rows, row blocks of large sparse batches, OpenMP threads).

Kernel-by-kernel parity with the reference lives in ``test_backend_parity.py``.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fastnn import _codes as C
from fastnn.backends import numpy as ref
from fastnn.backends._workspace import Workspace

cy = pytest.importorskip("fastnn.backends.cython", reason="Cython extension not built")

ROOT = Path(__file__).resolve().parents[1]


# Building and importing without the extension ------------------------------------------------
def test_blocked_extension_leaves_a_working_numpy_fastnn():
    """With the compiled module missing the backend is reported unavailable; numpy trains."""
    code = textwrap.dedent(
        """
        import sys, importlib.abc
        import numpy as np

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "fastnn.backends.cython._kernels":
                    raise ImportError("blocked by the test")
                return None

        sys.meta_path.insert(0, Block())
        from fastnn import backends
        from fastnn.backends._workspace import Workspace
        assert "cython" not in backends.available_backends(), backends.available_backends()
        assert "not built" in backends.backend_status()["cython"]
        B = backends.resolve_backend("auto")
        assert B.NAME != "cython"
        rng = np.random.default_rng(0)
        X = rng.standard_normal((40, 5)).astype(np.float32)
        y = (X[:, 0] > 0).astype(np.int64)
        W = [rng.standard_normal((5, 2)).astype(np.float32)]
        ws = Workspace(W, [np.zeros(2, np.float32)], [0], [0.0], 1, 0,
                       np.array([0.5, 0, 0, 0, 0.9, 0.999, 1e-8]), 8)
        losses = np.empty(5)
        first = None
        for _ in range(20):
            assert B.train_epoch(ws, X, y, rng.permutation(40), 8, losses) == 5
            first = losses.mean() if first is None else first
        assert losses.mean() < first, (first, losses.mean())
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def _copy_sources(dest: Path) -> None:
    for name in ("setup.py", "pyproject.toml", "README.md"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, dest / name)
    shutil.copytree(
        ROOT / "fastnn", dest / "fastnn", ignore=shutil.ignore_patterns("*.so", "__pycache__")
    )


@pytest.mark.parametrize("how", ["FASTNN_NO_EXTENSIONS", "no compiler", "no Cython"])
def test_wheel_builds_without_the_extension(tmp_path, how):
    src = tmp_path / "src"
    src.mkdir()
    _copy_sources(src)
    env = dict(os.environ)
    if how == "FASTNN_NO_EXTENSIONS":
        env["FASTNN_NO_EXTENSIONS"] = "1"
    elif how == "no compiler":
        env["CC"] = str(tmp_path / "no-such-cc")
    else:
        fake = tmp_path / "fake" / "Cython"
        fake.mkdir(parents=True)
        (fake / "__init__.py").write_text("raise ImportError('no Cython in this test')\n")
        env["PYTHONPATH"] = str(fake.parent)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-v",
           "-w", str(tmp_path / "dist"), str(src)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    if how != "FASTNN_NO_EXTENSIONS":
        assert "without its Cython backend" in result.stdout + result.stderr
    (wheel,) = (tmp_path / "dist").glob("fastnn-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "fastnn/backends/numpy.py" in names
    assert "fastnn/backends/cython/__init__.py" in names
    assert not [n for n in names if n.endswith((".so", ".pyd"))]


# Argument checks: every entry point raises before compiled code runs -------------------------
def _f(*shape, dtype=np.float32):
    return np.zeros(shape, dtype)


def _kernel_calls():
    """(name, good arguments, index of an array argument to spoil) for every public kernel."""
    x, W, b, a = _f(4, 3), _f(3, 2), _f(2), _f(4, 2)
    labels = np.zeros(4, np.int64)
    p = _f(5)
    return [
        ("dense_forward", (x, W, b, C.RELU, 0.0, a), [0, 1, 2, 5]),
        ("dense_backward", (x, W, a, a.copy(), C.RELU, 0.0, W.copy(), b.copy(), x.copy()),
         [0, 1, 2, 3, 6, 7, 8]),
        ("mse", (a, a.copy(), a.copy()), [0, 1, 2]),
        ("softmax_cross_entropy", (a, labels, a.copy()), [0, 1, 2]),
        ("softmax_cross_entropy_soft", (a, a.copy(), a.copy()), [0, 1, 2]),
        ("binary_cross_entropy", (a, a.copy(), a.copy()), [0, 1, 2]),
        ("kl_divergence", (a, a.copy(), a.copy()), [0, 1, 2]),
        ("sgd_update", (p, p.copy(), 0.1, 0.0), [0, 1]),
        ("momentum_update", (p, p.copy(), p.copy(), 0.1, 0.9, False, 0.0), [0, 1, 2]),
        ("adam_update", (p, p.copy(), p.copy(), p.copy(), 0.1, 0.9, 0.99, 1e-8, 0.0, 1),
         [0, 1, 2, 3]),
    ]  # fmt: skip


def _spoiled(arg):
    """Wrong dtype, wrong shape, non-contiguous and non-array versions of one array argument."""
    wrong_dtype = arg.astype(np.int32 if arg.dtype == np.int64 else np.float64)
    wrong_shape = np.zeros((arg.shape[0] + 1, *arg.shape[1:]), arg.dtype)
    strided = np.zeros((*arg.shape[:-1], 2 * arg.shape[-1]), arg.dtype)[..., ::2]
    return {"dtype": wrong_dtype, "shape": wrong_shape, "strided": strided, "list": arg.tolist()}


@pytest.mark.parametrize("name, args, spoil", _kernel_calls(), ids=[c[0] for c in _kernel_calls()])
def test_every_kernel_rejects_bad_arrays(name, args, spoil):
    kernel = getattr(cy, name)
    kernel(*args)  # the good call works
    for index in spoil:
        for what, bad in _spoiled(args[index]).items():
            spoilt = list(args)
            spoilt[index] = bad
            with pytest.raises((TypeError, ValueError)):
                kernel(*spoilt)
                pytest.fail(f"{name}: argument {index} with bad {what} was accepted")


def test_read_only_outputs_are_rejected():
    out = _f(4, 2)
    out.flags.writeable = False
    with pytest.raises(ValueError):
        cy.dense_forward(_f(4, 3), _f(3, 2), _f(2), C.RELU, 0.0, out)
    with pytest.raises(ValueError):
        cy.mse(_f(4, 2), _f(4, 2), out)


def _small_workspace(batch_size=4, optimizer=C.OPT_SGD):
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((6, 5)).astype(np.float32),
               rng.standard_normal((5, 3)).astype(np.float32)]  # fmt: skip
    biases = [np.zeros(5, np.float32), np.zeros(3, np.float32)]
    hyper = np.array([0.1, 0.9, 0.0, 0.0, 0.9, 0.999, 1e-8])
    return Workspace(weights, biases, [C.RELU, C.IDENTITY], [0.0, 0.0], C.LOSS_CROSS_ENTROPY,
                     optimizer, hyper, batch_size)  # fmt: skip


@pytest.mark.parametrize(
    "spoil",
    ["outputs", "grads", "dW", "db", "state1_w", "x_batch", "y_batch", "hyper", "acts", "loss"],
)
def test_corrupt_workspace_is_rejected_before_the_epoch(spoil):
    """The compiled epoch indexes every workspace buffer without bounds checks."""
    ws = _small_workspace()
    if spoil in ("outputs", "grads"):
        getattr(ws, spoil)[0] = np.zeros((2, 5), np.float32)  # fewer rows than the batch
    elif spoil in ("dW", "state1_w"):
        getattr(ws, spoil)[1] = np.zeros((5, 3), np.float64)
    elif spoil == "db":
        ws.db[0] = np.zeros((10,), np.float32)[::2]
    elif spoil == "x_batch":
        ws.x_batch = np.zeros((4, 5), np.float32)
    elif spoil == "y_batch":
        ws.y_batch = np.zeros(2, np.int64)
    elif spoil == "hyper":
        ws.hyper = ws.hyper[:3]
    elif spoil == "acts":
        ws.acts = np.array([C.RELU, 42])
    else:
        ws.loss = 17
    X = np.zeros((8, 6), np.float32)
    with pytest.raises((TypeError, ValueError)):
        cy.train_epoch(ws, X, np.zeros(8, np.int64), np.arange(8), 4, np.zeros(2))
    assert ws.step == 0


def test_set_num_threads_validates():
    before = cy.get_num_threads()
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError):
            cy.set_num_threads(bad)
    assert cy.get_num_threads() == before


def test_compiled_codes_match_the_python_table():
    codes = cy._kernels.CODES
    assert codes["activations"] == C.ACTIVATION_CODES
    assert codes["losses"] == sorted(C.LOSS_KERNEL_NAMES)
    assert codes["optimizers"] == [C.OPT_SGD, C.OPT_MOMENTUM, C.OPT_ADAM]


# Epoch paths that only large or sparse batches reach ---------------------------------------------
def _mnist_like(rng, n, d, dtype):
    """Rows of blobs of positive "ink" on zeros, ~80% zeros like MNIST."""
    x = np.zeros((n, d), dtype)
    for r in range(n):
        start = rng.integers(0, d - d // 5)
        x[r, start : start + d // 5] = rng.random(d // 5)
    return x


def _run(module, dtype, X, y, batch_size, optimizer, hyper, sizes, seed=1):
    rng = np.random.default_rng(seed)
    weights = [(rng.standard_normal((a, b)) / math.sqrt(a)).astype(dtype)
               for a, b in zip(sizes[:-1], sizes[1:], strict=True)]  # fmt: skip
    biases = [(0.1 * rng.standard_normal(b)).astype(dtype) for b in sizes[1:]]
    ws = Workspace(weights, biases, [C.RELU] * (len(sizes) - 2) + [C.IDENTITY],
                   [0.0] * (len(sizes) - 1), C.LOSS_CROSS_ENTROPY, optimizer,
                   np.asarray(hyper, np.float64), batch_size)  # fmt: skip
    order = np.random.default_rng(seed + 1).permutation(X.shape[0]).astype(np.int64)
    losses = np.full(-(-X.shape[0] // batch_size), np.nan)
    assert module.train_epoch(ws, X, y, order, batch_size, losses) == len(losses)
    return ws, losses


@pytest.fixture
def threads():
    before = cy.get_num_threads()
    yield cy.set_num_threads
    cy.set_num_threads(before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("nthreads", [1, 2])
@pytest.mark.parametrize(
    "batch_size, optimizer",
    [(4, C.OPT_MOMENTUM), (33, C.OPT_SGD), (32, C.OPT_SGD), (300, C.OPT_SGD), (300, C.OPT_ADAM),
     (600, C.OPT_MOMENTUM)],
    ids=["tiny-momentum", "ragged-tiny-last-sgd", "sparse-32-sgd", "row-blocks-sgd",
         "row-blocks-adam", "one-batch-momentum"],
)  # fmt: skip
def test_sparse_epoch_paths_match_reference(threads, dtype, nthreads, batch_size, optimizer):
    """Tiny batches (rows of dW written from the nonzeros, stale rows zeroed), batches of 8+
    sparse rows (by-feature pattern), > 256 rows (row blocks), a tiny batch after larger ones
    (600 = 18 * 33 + 6), and threads on."""
    threads(nthreads)
    rng = np.random.default_rng(batch_size)
    n, sizes = 600, (200, 128, 10)  # large enough that work is split over threads
    X = _mnist_like(rng, n, sizes[0], dtype)
    y = rng.integers(0, sizes[-1], n).astype(np.int64)
    hyper = [0.05, 0.9, 1.0, 0.0, 0.9, 0.999, 1e-8]
    ws_ref, l_ref = _run(ref, dtype, X, y, batch_size, optimizer, hyper, sizes)
    ws_new, l_new = _run(cy, dtype, X, y, batch_size, optimizer, hyper, sizes)
    tol = {"rtol": 1e-3, "atol": 1e-4} if dtype == np.float32 else {"rtol": 1e-9, "atol": 1e-11}
    np.testing.assert_allclose(l_new, l_ref, **tol)
    assert ws_new.step == ws_ref.step
    for name in ("weights", "biases", "dW", "db", "outputs", "grads"):
        for got, want in zip(getattr(ws_new, name), getattr(ws_ref, name), strict=True):
            np.testing.assert_allclose(got, want, **tol, err_msg=name)


def test_threads_give_the_same_weights_as_one_thread(threads):
    """Column and row splits change no sum order that matters: near-identical results."""
    rng = np.random.default_rng(7)
    n, sizes = 512, (300, 160, 10)
    X = rng.standard_normal((n, sizes[0])).astype(np.float64)  # dense: the BLAS path
    y = rng.integers(0, 10, n).astype(np.int64)
    hyper = [0.05, 0.0, 0.0, 0.0, 0.9, 0.999, 1e-8]
    results = []
    for nthreads in (1, 2):
        threads(nthreads)
        results.append(_run(cy, np.float64, X, y, 128, C.OPT_SGD, hyper, sizes))
    for got, want in zip(results[1][0].weights, results[0][0].weights, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


def test_epoch_restores_the_blas_thread_count(threads):
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads():
        return [
            i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"
        ]

    threads(2)
    before = blas_threads()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 6)).astype(np.float32)
    ws = _small_workspace(batch_size=16)
    losses = np.zeros(4)
    cy.train_epoch(ws, X, rng.integers(0, 3, 64), np.arange(64), 16, losses)
    assert blas_threads() == before


def test_generic_and_avx2_builds_agree():
    """The parity tests exercise the build this CPU picks; the other must give the same."""
    from fastnn.backends.cython import _kernels as generic

    if not generic.cpu_has_avx2_fma():
        pytest.skip("this CPU runs only the generic build")
    avx2 = pytest.importorskip("fastnn.backends.cython._kernels_v3")
    rng = np.random.default_rng(11)
    n, sizes = 300, (200, 128, 10)
    X = _mnist_like(rng, n, sizes[0], np.float64)
    y = rng.integers(0, sizes[-1], n).astype(np.int64)
    hyper = np.array([0.01, 0.0, 0.0, 1e-4, 0.9, 0.999, 1e-8])  # Adam with weight decay
    stats = np.zeros(generic.THREAD_STATS)
    results = []
    for build in (generic, avx2):
        for batch_size in (1, 32, 300):
            rng_w = np.random.default_rng(3)
            weights = [
                rng_w.standard_normal((a, b)) / math.sqrt(a)
                for a, b in zip(sizes[:-1], sizes[1:], strict=True)
            ]
            biases = [np.zeros(b) for b in sizes[1:]]
            ws = Workspace(weights, biases, [C.RELU, C.IDENTITY], [0.0, 0.0],
                           C.LOSS_CROSS_ENTROPY, C.OPT_ADAM, hyper, batch_size)  # fmt: skip
            losses = np.zeros(-(-n // batch_size))
            scratch = build.new_scratch(ws)
            done, steps = build.train_epoch(
                ws, X, y, np.arange(n), batch_size, losses, 1, stats, scratch
            )
            assert done == steps == len(losses)
            results.append([losses, *ws.weights, *ws.biases])
    half = len(results) // 2
    for got, want in zip(results[half:], results[:half], strict=True):
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_threads_or_not_changes_no_number():
    """Whichever mode the epoch's timing picks, threads or one chunk after another, it computes
    the very same numbers (the chunks are the same)."""
    rng = np.random.default_rng(5)
    n, sizes = 512, (300, 160, 10)
    X = _mnist_like(rng, n, sizes[0], np.float32)
    X[:256] += rng.random((256, sizes[0])).astype(np.float32)  # one dense batch: the BLAS path
    y = rng.integers(0, 10, n).astype(np.int64)
    hyper = np.array([0.05, 0.0, 0.0, 0.0, 0.9, 0.999, 1e-8])
    finals = []
    # Timings that make serial, then parallel, the clear winner for every batch of the epoch.
    for stats in ([1e-9, 1.0, 1e9, 0, 0, 9], [1.0, 1e-9, 1e9, 0, 0, 9]):
        rng_w = np.random.default_rng(3)
        weights = [
            (rng_w.standard_normal((a, b)) / math.sqrt(a)).astype(np.float32)
            for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        ]
        ws = Workspace(weights, [np.zeros(b, np.float32) for b in sizes[1:]],
                       [C.RELU, C.IDENTITY], [0.0, 0.0], C.LOSS_CROSS_ENTROPY, C.OPT_SGD,
                       hyper, 256)  # fmt: skip
        losses = np.zeros(2)
        timing, scratch = np.array(stats, float), cy._kernels.new_scratch(ws)
        cy._kernels.train_epoch(ws, X, y, np.arange(n), 256, losses, 2, timing, scratch)
        finals.append([losses, *ws.weights, *ws.biases, *ws.dW])
    for got, want in zip(finals[1], finals[0], strict=True):
        np.testing.assert_array_equal(got, want)


def test_both_modes_get_timed(threads):
    if not cy._kernels.HAS_OPENMP:
        pytest.skip("built without OpenMP: one thread, nothing to time")
    rng = np.random.default_rng(6)
    threads(2)  # through the wrapper: both modes get timed, from scratch
    ws = _small_workspace(batch_size=16)
    X = rng.standard_normal((160, 6)).astype(np.float32)
    cy.train_epoch(ws, X, rng.integers(0, 3, 160), np.arange(160), 16, np.zeros(10))
    timing = cy._thread_stats[ws][2]
    assert timing[0] > 0 and timing[1] > 0  # seconds per row, serial and on threads


def test_scratch_of_another_workspace_is_rejected():
    """The compiled epoch indexes its scratch buffers without bounds checks."""
    ws, other = _small_workspace(batch_size=4), _small_workspace(batch_size=8)
    X = np.zeros((8, 6), np.float32)
    args = (ws, X, np.zeros(8, np.int64), np.arange(8), 4, np.zeros(2), 1)
    with pytest.raises(ValueError, match="another workspace"):
        cy._kernels.train_epoch(
            *args, np.zeros(cy._kernels.THREAD_STATS), cy._kernels.new_scratch(other)
        )
    with pytest.raises(ValueError, match="doubles"):
        cy._kernels.train_epoch(*args, np.zeros(2), cy._kernels.new_scratch(ws))
    assert cy._kernels.train_epoch(
        *args, np.zeros(cy._kernels.THREAD_STATS), cy._kernels.new_scratch(ws)
    ) == (2, 2)
