"""``fastnn.backends.cython.train_epoch`` against the reference epoch, its sparse and threaded
paths, and its promise to leave the process's BLAS alone.

The reference is ``fastnn.backends.eager.eager_epoch`` over the numpy backend's kernels, on a
``Workspace`` of the same layers. ``StubDense`` below satisfies the layer protocol the workspace
and the eager loop use, so these tests do not depend on the layers package.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from fastnn import _codes as C
from fastnn.backends import eager
from fastnn.backends import numpy as ref
from fastnn.backends.workspace import Workspace

cy = pytest.importorskip("fastnn.backends.cython", reason="Cython extension not built")

HYPER = {  # lr, momentum, nesterov, weight decay, beta1, beta2, eps
    C.OPT_SGD: [0.05, 0.0, 0.0, 0.0, 0.9, 0.999, 1e-8],
    C.OPT_MOMENTUM: [0.05, 0.9, 1.0, 1e-4, 0.9, 0.999, 1e-8],
    C.OPT_ADAM: [0.01, 0.0, 0.0, 1e-4, 0.9, 0.99, 1e-7],
}


class StubDense:
    """A dense layer as the workspace and the eager loop see it (the layer protocol)."""

    def __init__(self, W: np.ndarray, b: np.ndarray, alpha: float = 0.0) -> None:
        self.W, self.b, self.act_alpha = W, b, alpha
        self.input_shape, self.output_shape = (W.shape[0],), (W.shape[1],)

    def parameters(self) -> list[np.ndarray]:
        return [self.W, self.b]

    def buffer_shapes(self, rows: int, act: int) -> dict[str, tuple[int, ...]]:
        return {"z": (rows, self.W.shape[1])} if act in C.NEEDS_PREACTIVATION else {}

    def forward_into(self, B, x, slot, n) -> None:  # noqa: ANN001
        z = slot.buffers.get("z")
        B.dense_forward(x, *slot.params, slot.act, self.act_alpha,
                        None if z is None else z[:n], slot.output[:n])  # fmt: skip

    def backward_into(self, B, x, slot, n, grad_x) -> None:  # noqa: ANN001
        z = slot.buffers.get("z")
        B.dense_backward(x, slot.params[0], None if z is None else z[:n], slot.output[:n],
                         slot.delta[:n], slot.act, self.act_alpha, *slot.grads, grad_x)  # fmt: skip


def make_workspace(sizes, acts, loss, optimizer, batch_size, dtype, alpha=0.3, seed=1, hyper=None):
    """A workspace of dense layers ``sizes[i] -> sizes[i + 1]`` with seeded weights."""
    rng = np.random.default_rng(seed)
    layers = [
        StubDense((rng.standard_normal((a, b)) / math.sqrt(a)).astype(dtype),
                  (0.1 * rng.standard_normal(b)).astype(dtype), alpha)
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    ]  # fmt: skip
    hyper = np.asarray(HYPER[optimizer] if hyper is None else hyper, np.float64)
    return Workspace(layers, acts, loss, optimizer, hyper, batch_size, dtype)


def targets_for(rng, loss, n, k, dtype):
    if loss == C.LOSS_CROSS_ENTROPY:
        return rng.integers(0, k, n).astype(np.int64)
    if loss == C.LOSS_MSE:
        return rng.standard_normal((n, k)).astype(dtype)
    if loss == C.LOSS_BINARY_CROSS_ENTROPY:
        return (rng.random((n, k)) > 0.5).astype(dtype)
    p = rng.random((n, k))
    return (p / p.sum(axis=1, keepdims=True)).astype(dtype)


def run_both(X, y, batch_size, **ws_args):
    """(reference workspace, losses), (cython workspace, losses) after one epoch each."""
    order = np.random.default_rng(2).permutation(X.shape[0]).astype(np.int64)
    results = []
    for run in (lambda ws, *a: eager.eager_epoch(ref, ws, *a), cy.train_epoch):
        ws = make_workspace(batch_size=batch_size, dtype=X.dtype, **ws_args)
        losses = np.full(-(-X.shape[0] // batch_size), np.nan)
        assert run(ws, X, y, order, batch_size, losses) == len(losses)
        results.append((ws, losses))
    return results


def assert_same_training(results, dtype):
    (ws_ref, l_ref), (ws_cy, l_cy) = results
    tol = {"rtol": 2e-3, "atol": 2e-4} if dtype == np.float32 else {"rtol": 1e-9, "atol": 1e-11}
    np.testing.assert_allclose(l_cy, l_ref, **tol)
    assert ws_cy.step == ws_ref.step
    for name in ("weights", "biases", "dW", "db", "outputs", "grads", "preacts"):
        for got, want in zip(getattr(ws_cy, name), getattr(ws_ref, name), strict=True):
            np.testing.assert_allclose(got, want, **tol, err_msg=name)


@pytest.fixture
def threads():
    before = cy.get_num_threads()
    yield cy.set_num_threads
    cy.set_num_threads(before)


# The epoch against the reference -------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("batch_size", [1, 7, 32], ids=["sgd-1", "ragged-7", "full"])
def test_every_hidden_activation_trains_like_the_reference(dtype, batch_size):
    rng = np.random.default_rng(batch_size)
    X = rng.standard_normal((32, 9)).astype(dtype)
    y = rng.integers(0, 4, 32).astype(np.int64)
    for name, act in C.ACTIVATION_CODES.items():
        results = run_both(X, y, batch_size, sizes=(9, 12, 4), acts=[act, C.IDENTITY],
                           loss=C.LOSS_CROSS_ENTROPY, optimizer=C.OPT_MOMENTUM)  # fmt: skip
        try:
            assert_same_training(results, dtype)
        except AssertionError as exc:
            raise AssertionError(f"activation {name}") from exc


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("optimizer", sorted(HYPER), ids=["sgd", "momentum", "adam"])
def test_every_loss_and_optimizer_trains_like_the_reference(dtype, optimizer):
    rng = np.random.default_rng(optimizer)
    X = rng.standard_normal((45, 6)).astype(dtype)
    for loss in C.LOSS_KERNEL_NAMES:
        y = targets_for(rng, loss, 45, 3, dtype)
        results = run_both(X, y, 10, sizes=(6, 8, 5, 3), acts=[C.GELU, C.ELU, C.IDENTITY],
                           loss=loss, optimizer=optimizer)  # fmt: skip
        try:
            assert_same_training(results, dtype)
        except AssertionError as exc:
            raise AssertionError(f"loss {C.LOSS_KERNEL_NAMES[loss]}") from exc


def _mnist_like(rng, n, d, dtype):
    """Rows of blobs of positive "ink" on zeros, ~80% zeros like MNIST."""
    x = np.zeros((n, d), dtype)
    for r in range(n):
        start = rng.integers(0, d - d // 5)
        x[r, start : start + d // 5] = rng.random(d // 5)
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("nthreads", [1, 2])
@pytest.mark.parametrize(
    "batch_size, optimizer, act",
    [(4, C.OPT_MOMENTUM, C.RELU), (33, C.OPT_SGD, C.SILU), (32, C.OPT_SGD, C.RELU),
     (300, C.OPT_SGD, C.GELU_TANH), (300, C.OPT_ADAM, C.RELU), (600, C.OPT_MOMENTUM, C.ELU)],
    ids=["tiny-momentum", "ragged-tiny-last-sgd-silu", "sparse-32-sgd", "row-blocks-sgd-gelu",
         "row-blocks-adam", "one-batch-momentum-elu"],
)  # fmt: skip
def test_sparse_epoch_paths_match_reference(threads, dtype, nthreads, batch_size, optimizer, act):
    """Tiny batches (rows of dW written from the nonzeros, stale rows zeroed), batches of 8+
    sparse rows (by-feature pattern), > 256 rows (row blocks), a tiny batch after larger ones
    (600 = 18 * 33 + 6), and threads on."""
    threads(nthreads)
    rng = np.random.default_rng(batch_size)
    n, sizes = 600, (200, 128, 10)  # large enough that work is split over threads
    X = _mnist_like(rng, n, sizes[0], dtype)
    y = rng.integers(0, sizes[-1], n).astype(np.int64)
    results = run_both(X, y, batch_size, sizes=sizes, acts=[act, C.IDENTITY],
                       loss=C.LOSS_CROSS_ENTROPY, optimizer=optimizer)  # fmt: skip
    assert_same_training(results, dtype)


def test_empty_order_trains_nothing():
    ws = make_workspace((6, 5, 3), [C.RELU, C.IDENTITY], C.LOSS_CROSS_ENTROPY, C.OPT_SGD, 4,
                        np.float32)  # fmt: skip
    before = [w.copy() for w in ws.weights]
    X, y = np.ones((8, 6), np.float32), np.zeros(8, np.int64)
    assert cy.train_epoch(ws, X, y, np.zeros(0, np.int64), 4, np.zeros(0)) == 0
    assert ws.step == 0
    for got, want in zip(ws.weights, before, strict=True):
        np.testing.assert_array_equal(got, want)


def test_divergence_stops_before_the_update():
    ws = make_workspace((4, 3), [C.IDENTITY], C.LOSS_MSE, C.OPT_SGD, 2, np.float64)
    X = np.ones((6, 4))
    X[3, 0] = np.inf  # the second batch's loss is not finite
    y = np.zeros((6, 3))
    losses = np.full(3, -1.0)
    assert cy.train_epoch(ws, X, y, np.arange(6), 2, losses) == 2
    assert np.isfinite(losses[0]) and not np.isfinite(losses[1]) and losses[2] == -1.0
    assert ws.step == 1 and np.isfinite(ws.weights[0]).all()


# Rejected workspaces and scratch ------------------------------------------------------------
def _small_workspace(batch_size=4, optimizer=C.OPT_SGD, acts=(C.RELU, C.IDENTITY)):
    return make_workspace((6, 5, 3), list(acts), C.LOSS_CROSS_ENTROPY, optimizer, batch_size,
                          np.float32)  # fmt: skip


@pytest.mark.parametrize(
    "spoil",
    ["outputs", "grads", "dW", "db", "state1_w", "preacts", "x_batch", "y_batch", "hyper",
     "acts", "loss"],
)  # fmt: skip
def test_corrupt_workspace_is_rejected_before_the_epoch(spoil):
    """The compiled epoch indexes every workspace buffer without bounds checks."""
    ws = _small_workspace(acts=(C.GELU, C.IDENTITY))
    if spoil in ("outputs", "grads", "preacts"):
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


# Threads ------------------------------------------------------------------------------------
def _fit(X, y, batch_size, epochs=1, seed=3, nthreads=None, **ws_args):
    if nthreads is not None:
        cy.set_num_threads(nthreads)
    ws = make_workspace(batch_size=batch_size, dtype=X.dtype, seed=seed, **ws_args)
    losses = np.zeros(-(-X.shape[0] // batch_size))
    for epoch in range(epochs):
        order = np.random.default_rng(epoch).permutation(X.shape[0]).astype(np.int64)
        assert cy.train_epoch(ws, X, y, order, batch_size, losses) == len(losses)
    return [losses, *ws.weights, *ws.biases]


@pytest.mark.parametrize("dense", [True, False], ids=["dense-blas", "sparse-loops"])
def test_threads_give_the_same_weights_as_one_thread(threads, dense):
    """The team splits whole rows only and BLAS products are never split: bitwise equal."""
    rng = np.random.default_rng(7)
    n, sizes = 512, (300, 160, 10)
    X = rng.standard_normal((n, 300)) if dense else _mnist_like(rng, n, 300, np.float64)
    y = rng.integers(0, 10, n).astype(np.int64)
    args = {"sizes": sizes, "acts": [C.GELU, C.IDENTITY], "loss": C.LOSS_CROSS_ENTROPY,
            "optimizer": C.OPT_ADAM}  # fmt: skip
    one, two = (_fit(X, y, 128, nthreads=t, **args) for t in (1, 2))
    for got, want in zip(two, one, strict=True):
        np.testing.assert_array_equal(got, want)


def test_generic_and_avx2_builds_agree():
    """The other tests exercise the build this CPU picks; the other must give the same."""
    from fastnn.backends.cython import _kernels as generic

    if not generic.cpu_has_avx2_fma():
        pytest.skip("this CPU runs only the generic build")
    avx2 = pytest.importorskip("fastnn.backends.cython._kernels_v3")
    rng = np.random.default_rng(11)
    n, sizes = 300, (200, 128, 10)
    X = _mnist_like(rng, n, sizes[0], np.float64)
    y = rng.integers(0, sizes[-1], n).astype(np.int64)
    results = []
    for build in (generic, avx2):
        for batch_size, act in ((1, C.RELU), (32, C.GELU), (300, C.ELU)):
            ws = make_workspace(sizes, [act, C.IDENTITY], C.LOSS_CROSS_ENTROPY, C.OPT_ADAM,
                                batch_size, np.float64, seed=3)  # fmt: skip
            losses = np.zeros(-(-n // batch_size))
            done, steps = build.train_epoch(ws, X, y, np.arange(n), batch_size, losses, 1,
                                            np.zeros(generic.THREAD_STATS),
                                            build.new_scratch(ws))  # fmt: skip
            assert done == steps == len(losses)
            results.append([losses, *ws.weights, *ws.biases])
    half = len(results) // 2
    for got, want in zip(results[half:], results[:half], strict=True):
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_threads_or_not_changes_no_number():
    """Whichever mode the epoch's timing picks, threads or one chunk after another, it computes
    the very same numbers."""
    rng = np.random.default_rng(5)
    n, sizes = 512, (300, 160, 10)
    X = _mnist_like(rng, n, sizes[0], np.float32)
    X[:256] += rng.random((256, sizes[0])).astype(np.float32)  # one dense batch: the BLAS path
    y = rng.integers(0, 10, n).astype(np.int64)
    finals = []
    # Timings that make serial, then parallel, the clear winner for every batch of the epoch.
    for stats in ([1e-9, 1.0, 1e9, 0, 0, 9], [1.0, 1e-9, 1e9, 0, 0, 9]):
        ws = make_workspace(sizes, [C.SILU, C.IDENTITY], C.LOSS_CROSS_ENTROPY, C.OPT_SGD, 256,
                            np.float32, seed=3)  # fmt: skip
        losses = np.zeros(2)
        timing, scratch = np.array(stats, float), cy._kernels.new_scratch(ws)
        cy._kernels.train_epoch(ws, X, y, np.arange(n), 256, losses, 2, timing, scratch)
        finals.append([losses, *ws.weights, *ws.biases, *ws.dW])
    for got, want in zip(finals[1], finals[0], strict=True):
        np.testing.assert_array_equal(got, want)


def test_both_modes_get_timed(threads):
    if not cy.HAS_OPENMP:
        pytest.skip("built without OpenMP: one thread, nothing to time")
    rng = np.random.default_rng(6)
    threads(2)  # through the public function: both modes get timed, from scratch
    ws = _small_workspace(batch_size=16)
    X = rng.standard_normal((160, 6)).astype(np.float32)
    cy.train_epoch(ws, X, rng.integers(0, 3, 160), np.arange(160), 16, np.zeros(10))
    timing = cy._thread_stats[ws][2]
    assert timing[0] > 0 and timing[1] > 0  # seconds per row, serial and on threads


def test_parallel_fits_leave_blas_and_numpy_alone(threads):
    """NumPy work in one thread while two Cython fits run in two others: the BLAS thread count
    every thread sees, before, during and after, and the NumPy results are those of NumPy alone,
    and each fit gives what it gives on its own (issue 16, item 7)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads():
        info = threadpoolctl.threadpool_info()
        return sorted((i["filepath"], i["num_threads"]) for i in info if i["user_api"] == "blas")

    threads(2)
    rng = np.random.default_rng(9)
    A = rng.standard_normal((300, 300))
    alone = A @ A
    X = rng.standard_normal((2000, 120)).astype(np.float32)  # dense: BLAS products in the epoch
    y = rng.integers(0, 10, 2000).astype(np.int64)
    args = {"X": X, "y": y, "batch_size": 64, "epochs": 8, "sizes": (120, 64, 10),
            "acts": [C.RELU, C.IDENTITY], "loss": C.LOSS_CROSS_ENTROPY,
            "optimizer": C.OPT_SGD}  # fmt: skip
    sequential = {seed: _fit(seed=seed, **args) for seed in (1, 2)}
    before = blas_threads()
    parallel, seen, same = {}, [], []
    started, stop = threading.Event(), threading.Event()

    def numpy_work():
        while not stop.is_set():
            seen.append(blas_threads())
            same.append(np.array_equal(A @ A, alone))
            started.set()

    def fit(seed):
        parallel[seed] = _fit(seed=seed, **args)

    watcher = threading.Thread(target=numpy_work)
    watcher.start()
    started.wait(30)
    fits = [threading.Thread(target=fit, args=(seed,)) for seed in (1, 2)]
    for t in fits:
        t.start()
    for t in fits:
        t.join()
    stop.set()
    watcher.join()
    assert blas_threads() == before
    assert len(seen) > 1 and all(s == before for s in seen), seen
    assert all(same)
    for seed in (1, 2):
        for got, want in zip(parallel[seed], sequential[seed], strict=True):
            np.testing.assert_array_equal(got, want)
