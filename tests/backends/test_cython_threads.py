"""The Cython epoch's threads and BLAS: the same numbers with any thread count or mode, both
builds alike, and the process's BLAS left alone (issue 16, item 7).

Each test runs on both BLAS routes of the epoch: the backend's own single-threaded handle
(``own_blas.py``, split over the team) and scipy's BLAS (whole products outside the team).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from cython_workspace import fit, make_workspace, mnist_like

from fastnn import _codes as C

cy = pytest.importorskip("fastnn.backends.cython", reason="Cython extension not built")


@pytest.fixture
def threads():
    before = cy.get_num_threads()
    yield cy.set_num_threads
    cy.set_num_threads(before)


@pytest.fixture(params=["own", "process"])
def blas_route(request):
    """The epoch's BLAS: the own handle, or scipy's (the route without scipy-openblas32)."""
    own = cy._own_blas
    if request.param == "own" and own is None:
        pytest.skip("scipy-openblas32 is not installed: no own BLAS handle")
    builds = {cy._generic, cy._kernels}
    for build in builds:
        build.set_own_blas(*((own.sgemm, own.dgemm) if request.param == "own" else (0, 0)))
    assert cy.uses_own_blas() == (request.param == "own")
    yield request.param
    for build in builds:
        build.set_own_blas(*((own.sgemm, own.dgemm) if own else (0, 0)))


@pytest.mark.parametrize("dense", [True, False], ids=["dense-blas", "sparse-loops"])
def test_threads_give_the_same_weights_as_one_thread(threads, blas_route, dense):
    """Chunks hold whole rows of every product: bitwise equal."""
    rng = np.random.default_rng(7)
    n, sizes = 512, (300, 160, 10)
    X = rng.standard_normal((n, 300)) if dense else mnist_like(rng, n, 300, np.float64)
    y = rng.integers(0, 10, n).astype(np.int64)
    args = {"sizes": sizes, "acts": [C.GELU, C.IDENTITY], "loss": C.LOSS_CROSS_ENTROPY,
            "optimizer": C.OPT_ADAM}  # fmt: skip
    results = []
    for nthreads in (1, 2):
        threads(nthreads)
        results.append(fit(cy, X, y, 128, **args))
    for got, want in zip(results[1], results[0], strict=True):
        np.testing.assert_array_equal(got, want)


def test_generic_and_avx2_builds_agree():
    """The other tests exercise the build this CPU picks; the other must give the same."""
    from fastnn.backends.cython import _kernels as generic

    if not generic.cpu_has_avx2_fma():
        pytest.skip("this CPU runs only the generic build")
    avx2 = pytest.importorskip("fastnn.backends.cython._kernels_v3")
    rng = np.random.default_rng(11)
    n, sizes = 300, (200, 128, 10)
    X = mnist_like(rng, n, sizes[0], np.float64)
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


def test_threads_or_not_changes_no_number(blas_route):
    """Whichever mode the epoch's timing picks, threads or one chunk after another, it computes
    the very same numbers."""
    rng = np.random.default_rng(5)
    n, sizes = 512, (300, 160, 10)
    X = mnist_like(rng, n, sizes[0], np.float32)
    X[:256] += rng.random((256, sizes[0])).astype(np.float32)  # one dense batch: the BLAS path
    y = rng.integers(0, 10, n).astype(np.int64)
    finals = []
    # Timings that make serial, then parallel, the clear winner for every batch of the epoch.
    for stats in ([1e-9, 1.0, 1e9, 0, 0, 9, 1], [1.0, 1e-9, 1e9, 0, 0, 9, 2]):
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
    ws = make_workspace((6, 5, 3), [C.RELU, C.IDENTITY], C.LOSS_CROSS_ENTROPY, C.OPT_SGD, 16,
                        np.float32)  # fmt: skip
    X = rng.standard_normal((160, 6)).astype(np.float32)
    cy.train_epoch(ws, X, rng.integers(0, 3, 160), np.arange(160), 16, np.zeros(10))
    timing = cy._thread_stats[ws][2]
    assert timing[0] > 0 and timing[1] > 0  # seconds per row, serial and on threads


def test_parallel_fits_leave_blas_and_numpy_alone(threads, blas_route):
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
    args = {"B": cy, "X": X, "y": y, "batch_size": 64, "epochs": 8, "sizes": (120, 64, 10),
            "acts": [C.RELU, C.IDENTITY], "loss": C.LOSS_CROSS_ENTROPY,
            "optimizer": C.OPT_SGD}  # fmt: skip
    sequential = {seed: fit(seed=seed, **args) for seed in (1, 2)}
    before = blas_threads()
    parallel, seen, same = {}, [], []
    started, stop = threading.Event(), threading.Event()

    def numpy_work():
        while not stop.is_set():
            seen.append(blas_threads())
            same.append(np.array_equal(A @ A, alone))
            started.set()

    def run(seed):
        parallel[seed] = fit(seed=seed, **args)

    watcher = threading.Thread(target=numpy_work)
    watcher.start()
    started.wait(30)
    fits = [threading.Thread(target=run, args=(seed,)) for seed in (1, 2)]
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


def test_the_own_blas_is_private_and_held_at_one_thread(threads):
    """The own handle is a separate OpenBLAS instance: its thread count is not NumPy's or
    SciPy's, and the epoch puts it back to one thread when a process-wide limit changed it."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    own = cy._own_blas
    if own is None:
        pytest.skip("scipy-openblas32 is not installed: no own BLAS handle")
    import scipy.linalg  # noqa: F401  (SciPy's own BLAS, loaded)

    info = threadpoolctl.threadpool_info()
    libraries = {i["filepath"]: i for i in info if i["user_api"] == "blas"}
    assert libraries[own.path]["num_threads"] == 1
    others = [i for path, i in libraries.items() if path != own.path]
    assert others, "NumPy's and SciPy's BLAS are other libraries"
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 6)).astype(np.float32)
    y = rng.integers(0, 3, 64).astype(np.int64)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):  # the user's own choice
        threads(2)
        fit(cy, X, y, 16, sizes=(6, 5, 3), acts=[C.RELU, C.IDENTITY], loss=C.LOSS_CROSS_ENTROPY,
            optimizer=C.OPT_SGD)  # fmt: skip
        after = {i["filepath"]: i["num_threads"] for i in threadpoolctl.threadpool_info()}
        assert after[own.path] == 1
        assert all(after[i["filepath"]] == 2 for i in others)
