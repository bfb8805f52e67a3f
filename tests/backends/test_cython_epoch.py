"""``fastnn.backends.cython.train_epoch`` against the reference epoch and its sparse paths.

The reference is ``fastnn.backends.eager.eager_epoch`` over the numpy backend's kernels, on a
``Workspace`` of the same ``Dense`` layers (``cython_workspace.py``). Threads and BLAS:
``test_cython_threads.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from cython_workspace import HYPER, make_workspace, mnist_like

from fastnn import _codes as C
from fastnn.backends import eager
from fastnn.backends import numpy as ref

cy = pytest.importorskip("fastnn.backends.cython", reason="Cython extension not built")


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
    X = mnist_like(rng, n, sizes[0], dtype)
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
