"""The Cython epoch's work split over threads, on ragged sizes (issue 13).

The gather, the nonzero lists, the first layer's forward and its dW are split over the team:
rows in blocks (forward, gather), features in groups of about equal nonzeros (dW), and batches
of ``PROBE_BATCH`` rows or more time blocks of their own forward to choose the mode. Each test
trains with one thread and with two (bitwise equal: every row of every product is computed by
one chunk, in the same order, whatever the split; but see the BLAS note below) and against the
numpy reference epoch.
"""

from __future__ import annotations

import numpy as np
import pytest
from cython_workspace import make_workspace, mnist_like

from fastnn import _codes as C
from fastnn.backends import eager
from fastnn.backends import numpy as ref

cy = pytest.importorskip("fastnn.backends.cython", reason="Cython extension not built")

PROBE_BATCH = 8192  # epoch.pxd: batches this large choose their thread mode inside
PAR_MIN_WORK = 1 << 20  # team.pxd: multiply-adds below which a product stays on one thread


def train(run, X, y, batch_size, hidden, act, optimizer):
    ws = make_workspace((X.shape[1], hidden, 10), [act, C.IDENTITY], C.LOSS_CROSS_ENTROPY,
                        optimizer, batch_size, X.dtype, seed=4)  # fmt: skip
    order = np.random.default_rng(9).permutation(X.shape[0]).astype(np.int64)
    losses = np.full(-(-X.shape[0] // batch_size), np.nan)
    assert run(ws, X, y, order, batch_size, losses) == len(losses)
    return [losses, *ws.weights, *ws.biases, *ws.dW, *ws.db]


@pytest.fixture
def threads():
    before = cy.get_num_threads()
    yield cy.set_num_threads
    cy.set_num_threads(before)


@pytest.mark.parametrize(
    "n, batch_size, hidden, act, optimizer",
    [(40, 1, 127, C.RELU, C.OPT_SGD), (50, 7, 131, C.GELU, C.OPT_MOMENTUM),
     (2000, 200, 131, C.RELU, C.OPT_SGD), (1500, 300, 3, C.ELU, C.OPT_ADAM),
     (1030, 1030, 129, C.RELU, C.OPT_SGD), (PROBE_BATCH + 300, PROBE_BATCH + 300, 131, C.RELU,
                                            C.OPT_SGD)],
    ids=["batch-1", "tiny-7", "hidden-131-batch-200", "hidden-3", "full-1030-ragged-block",
         "full-probed-ragged"],
)  # fmt: skip
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_split_epoch_is_one_threads_and_the_references(threads, n, batch_size, hidden, act,
                                                       optimizer, dtype):  # fmt: skip
    """Hidden widths not divisible by the thread count, batch 1, and full batches whose last
    row block (256 rows), dW region (4096) and probe block (512) are ragged."""
    rng = np.random.default_rng(n + hidden)
    X = mnist_like(rng, n, 400, dtype)
    y = rng.integers(0, 10, n).astype(np.int64)
    results = []
    for nthreads in (1, 2):
        threads(nthreads)
        results.append(train(cy.train_epoch, X, y, batch_size, hidden, act, optimizer))
    # The hidden layer's BLAS products are split by rows over the team too once they hold
    # PAR_MIN_WORK multiply-adds, and OpenBLAS may round a row in the last bit differently
    # in a call of another shape: only the loops are bitwise the same on any split.
    blas_split = batch_size * hidden * 10 >= PAR_MIN_WORK
    for got, want in zip(results[1], results[0], strict=True):
        if blas_split:
            tight = (1e-5, 1e-7) if dtype == np.float32 else (1e-12, 1e-15)
            np.testing.assert_allclose(got, want, rtol=tight[0], atol=tight[1])
        else:
            np.testing.assert_array_equal(got, want)
    want = train(lambda ws, *a: eager.eager_epoch(ref, ws, *a), X, y, batch_size, hidden, act,
                 optimizer)  # fmt: skip
    tol = {"rtol": 2e-3, "atol": 2e-4} if dtype == np.float32 else {"rtol": 1e-9, "atol": 1e-11}
    for got, ref_value in zip(results[0], want, strict=True):
        np.testing.assert_allclose(got, ref_value, **tol)


def test_a_large_batch_records_the_mode_its_blocks_chose(threads):
    """The probe's choice is kept (the next large batch gathers in that mode), and the
    timings of whole batches are left alone."""
    if not cy.HAS_OPENMP:
        pytest.skip("built without OpenMP: one thread, nothing to choose")
    threads(2)
    rng = np.random.default_rng(1)
    n = PROBE_BATCH
    X = mnist_like(rng, n, 300, np.float32)
    ws = make_workspace((300, 64, 10), [C.RELU, C.IDENTITY], C.LOSS_CROSS_ENTROPY, C.OPT_SGD, n,
                        np.float32)  # fmt: skip
    cy.train_epoch(ws, X, rng.integers(0, 10, n), np.arange(n), n, np.zeros(1))
    stats = cy._thread_stats[ws][2]
    assert stats[6] in (1, 2)  # team.PROBED: serial or parallel, plus 1
    assert not stats[:6].any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_a_large_dense_batch_probes_its_blas_forward(threads, dtype):
    """Dense inputs keep BLAS: the probe then times row blocks of the BLAS forward."""
    rng = np.random.default_rng(3)
    n = PROBE_BATCH + 77
    X = rng.standard_normal((n, 60)).astype(dtype)
    y = rng.integers(0, 10, n).astype(np.int64)
    threads(2)
    got = train(cy.train_epoch, X, y, n, 33, C.RELU, C.OPT_MOMENTUM)
    want = train(lambda ws, *a: eager.eager_epoch(ref, ws, *a), X, y, n, 33, C.RELU,
                 C.OPT_MOMENTUM)  # fmt: skip
    tol = {"rtol": 2e-3, "atol": 2e-4} if dtype == np.float32 else {"rtol": 1e-9, "atol": 1e-11}
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, **tol)
