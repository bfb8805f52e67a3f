"""The thread-split sparse loops of the Numba backend (sparse.py Design F, team.py Design E).

Every split kernel against the reference and bit for bit against the one-thread loops on ragged
sizes (batch 1, odd batches, widths and input counts not divisible by the thread count, several
row blocks of the column index), the loops-or-BLAS-or-team choice, whole epochs on one and two
threads, and the threading-layer policy (in subprocesses: it is process-wide).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

pytest.importorskip("numba")

from fastnn import _codes as C  # noqa: E402
from fastnn.backends import eager  # noqa: E402
from fastnn.backends import numba as nb  # noqa: E402
from fastnn.backends import numpy as ref  # noqa: E402
from fastnn.backends.numba import dense, sparse, team  # noqa: E402
from fastnn.backends.workspace import Workspace  # noqa: E402
from fastnn.layers import Dense  # noqa: E402

HYPER = np.array([0.05, 0.9, 0.0, 0.0, 0.9, 0.999, 1e-8])


def inputs(rng, n, d, zeros, dtype=np.float64):
    x = rng.standard_normal((n, d)).astype(dtype)
    x[rng.random((n, d)) < zeros] = 0
    return x


def scratch_team(threads, size):
    return np.full((threads, size), -1, np.int32)  # garbage the kernels must overwrite


@pytest.mark.parametrize("size", [0, 1, 7, 33, 128])
@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("multiple", [1, 2])
def test_team_shares_cover_the_range_once(size, threads, multiple):
    parts = [sparse.team_share(size, t, threads, multiple) for t in range(threads)]
    covered = [i for start, stop in parts for i in range(start, stop)]
    assert covered == list(range(size))
    assert all(start % multiple == 0 for start, stop in parts if start < stop)


# Widths through every part of a forward register block (sparse.py Design A): fewer columns
# than a vector (7), single vectors and a tail (37), one or two blocks of 8 vectors and a tail
# (130: float32 one block + 2, float64 two blocks + 2), and a block plus vectors and a tail (300).
WIDTHS = [7, 37, 130, 300]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("n", [1, 2, 3, 33, 130])
@pytest.mark.parametrize("k", WIDTHS)
@pytest.mark.parametrize("threads", [2, 3])
def test_forward_team_matches_reference_and_one_thread(dtype, n, k, threads):
    """Rows split in pairs: the same arithmetic as one thread, so bitwise equal."""
    rng = np.random.default_rng(n * k + threads)
    d = 31
    x, W = inputs(rng, n, d, 0.7, dtype), rng.standard_normal((d, k)).astype(dtype)
    one, split = np.full((n, k), np.nan, dtype), np.full((n, k), np.nan, dtype)
    sparse.forward_loops(x, W, one, np.empty(d, np.int32))
    sparse.forward_team(x, W, split, scratch_team(threads, d))
    np.testing.assert_array_equal(split, one)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(split, x.astype(np.float64) @ W, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("k", WIDTHS)
def test_forward_rows_do_not_depend_on_their_partner_row(dtype, k):
    """A row paired with another (the union of their non-zeros) gives the bits it gives alone:
    each output is one chain of FMAs in column order, and a zero input adds an exact zero."""
    rng = np.random.default_rng(k)
    n, d = 7, 45
    x, W = inputs(rng, n, d, 0.6, dtype), rng.standard_normal((d, k)).astype(dtype)
    together = np.full((n, k), np.nan, dtype)
    sparse.forward_loops(x, W, together, np.empty(d, np.int32))
    for i in range(n):
        alone = np.full((1, k), np.nan, dtype)
        sparse.forward_loops(np.ascontiguousarray(x[i : i + 1]), W, alone, np.empty(d, np.int32))
        np.testing.assert_array_equal(alone[0], together[i])


@pytest.mark.parametrize("n", [1, 33, 130])  # 130 rows: three blocks of the column index
@pytest.mark.parametrize("d", [31, 50])
@pytest.mark.parametrize("threads", [2, 3])
def test_weight_grad_team_matches_reference_and_one_thread(n, d, threads):
    """dW (stale rows of an earlier batch zeroed, dirty kept), then the plain-SGD step."""
    rng = np.random.default_rng(n + d + threads)
    k = 13
    size = sparse.scratch_size(d)
    one, split = np.full((d, k), np.nan), np.full((d, k), np.nan)
    dirty_one, dirty_split = np.ones(d, np.bool_), np.ones(d, np.bool_)
    for _ in range(2):  # the second batch touches other rows than the first
        x = inputs(rng, n, d, 0.8 if n > 1 else 0.5)
        delta = rng.standard_normal((n, k))
        sparse.weight_grad_loops(x, delta, one, np.empty(size, np.int32), dirty_one, False, 0.0)
        sparse.weight_grad_team(x, delta, split, dirty_split, scratch_team(threads, size), False,
                                0.0)  # fmt: skip
        np.testing.assert_array_equal(split, one)
        np.testing.assert_array_equal(dirty_split, dirty_one)
        np.testing.assert_allclose(split, x.T @ delta, rtol=1e-12, atol=1e-12)
    W = rng.standard_normal((d, k))
    stepped_one, stepped_split = W.copy(), W.copy()
    sparse.weight_grad_loops(x, delta, stepped_one, np.empty(size, np.int32), dirty_one, True, 0.1)
    sparse.weight_grad_team(x, delta, stepped_split, dirty_split, scratch_team(threads, size),
                            True, 0.1)  # fmt: skip
    np.testing.assert_array_equal(stepped_split, stepped_one)
    np.testing.assert_allclose(stepped_split, W - 0.1 * (x.T @ delta), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [1, 33])
def test_dense_kernels_with_a_team_equal_one_thread(n):
    """dense_forward_kernel / dense_backward_kernel: loops on 2 threads == loops on 1."""
    rng = np.random.default_rng(n)
    d, k, act = 45, 37, C.RELU
    x, W, b = inputs(rng, n, d, 0.7), rng.standard_normal((d, k)), rng.standard_normal(k)
    grad = rng.standard_normal((n, k))
    results = []
    for loops, members in ((1, None), (2, scratch_team(2, sparse.scratch_size(d)))):
        a, z = np.empty((n, k)), np.empty((0, k))
        dense.dense_forward_kernel(x, W, b, act, 0.0, z, a, np.empty(d, np.int32), loops, members)
        g, dW, db, gx = grad.copy(), np.full((d, k), 5.0), np.empty(k), np.empty((n, d))
        scratch = np.empty(sparse.scratch_size(d), np.int32)
        dense.dense_backward_kernel(
            x, W, z, a, g, act, 0.0, dW, db, gx, True, loops, scratch, np.ones(d, np.bool_),
            False, 0.0, members,
        )  # fmt: skip
        results.append((a, g, dW, db, gx))
    for one, two in zip(*results, strict=True):
        np.testing.assert_array_equal(two, one)
    np.testing.assert_allclose(results[0][2], x.T @ results[0][1], rtol=1e-12, atol=1e-12)


def test_team_only_where_it_pays():
    rng = np.random.default_rng(5)
    use = dense.use_loops
    big = inputs(rng, 2048, 784, 0.81)  # MNIST-like full-batch rows: loops on both threads
    assert use(big, 128, 2, 2) == 2
    assert use(big, 128, 2, 1) in (0, 1)  # never more threads than given
    assert use(big, 10, 2, 2) in (0, 1)  # thin layer: never split
    assert use(rng.standard_normal((1, 784)), 128, 2, 2) == 1  # batch 1: one thread
    assert use(inputs(rng, 8, 784, 0.81), 128, 2, 2) == 1  # too little work to wake a team


def network(rng, sizes, dtype):
    layers = []
    for d, k, name in zip(sizes[:-1], sizes[1:], ["relu", None], strict=True):
        layer = Dense(d, k, activation=name)
        layer.build((d,), rng, dtype)
        layers.append(layer)
    return layers


def run_epoch(layers, optimizer, X, y, order, batch_size, backend=nb):
    acts = [layer.act_code for layer in layers]
    ws = Workspace(layers, acts, C.LOSS_CROSS_ENTROPY, optimizer, HYPER, batch_size, X.dtype)
    losses = np.full(-(-X.shape[0] // batch_size), np.nan)
    if backend is nb:
        nb.train_epoch(ws, X, y, order, batch_size, losses)
    else:
        eager.eager_epoch(backend, ws, X, y, order, batch_size, losses)
    return ws.weights + ws.biases + ws.dW


@pytest.fixture
def two_threads(monkeypatch):
    """Two threads, and every epoch asks for the team (no timing trial: team.py Design F)."""
    if team.loop_threads() < 2 and (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: no second thread")
    monkeypatch.setattr(team.TeamTrial, "wanted", lambda self: True)
    before = nb.get_num_threads()
    nb.set_num_threads(2)
    yield
    nb.set_num_threads(before)


def test_team_trial_keeps_the_faster_mode():
    trial = team.TeamTrial()
    seen = []
    for seconds in ({True: 9.0}, {True: 1.0}, {False: 2.0}) + ({True: 1.0, False: 2.0},) * 14:
        mode = trial.wanted()
        seen.append(mode)
        trial.record(mode, seconds[mode])
    # warm-up (not counted), each mode once, then the faster, the other again every 16th
    assert seen == [True, True, False] + [True] * 13 + [False]
    slow = team.TeamTrial()
    for _ in range(3):
        slow.record(slow.wanted(), 5.0 if slow.calls else 0.0)  # the team as slow as one thread
    slow.record(True, 6.0)
    assert not slow.wanted()
    busy = team.TeamTrial()
    for _ in range(4):  # the team was always held by another caller
        busy.wanted()
        busy.record(False, 1.0)
    assert busy.wanted()  # the team is still to be timed


def sparse_problem(rng):
    """1100 rows sparse enough that one thread also picks the loops for the first layer (a
    different choice, BLAS, would change the bits), and the team pays on two."""
    X = inputs(rng, 1100, 784, 0.9, np.float32)
    assert dense.use_loops(X, 128, 2, 1) == 1 and dense.use_loops(X, 128, 2, 2) == 2
    layers = network(rng, (784, 128, 10), np.float32)
    return X, rng.integers(0, 10, 1100), rng.permutation(1100), layers


@pytest.mark.parametrize("optimizer", [C.OPT_SGD, C.OPT_MOMENTUM], ids=["sgd", "momentum"])
@pytest.mark.parametrize("batch_size", [33, 1100])  # 1100 > one block of the column index
def test_epoch_on_two_threads_equals_one_thread(two_threads, optimizer, batch_size):
    """The whole compiled epoch: the team (2 threads) and the same code on a team of one (the
    path of a caller that finds the team busy) give the same bits; both match the reference."""
    import copy

    rng = np.random.default_rng(batch_size)
    X, y, order, layers = sparse_problem(rng)
    split = run_epoch(copy.deepcopy(layers), optimizer, X, y, order, batch_size)
    with team._loops_lock:  # busy: loop_team hands out a team of one thread
        serial = run_epoch(copy.deepcopy(layers), optimizer, X, y, order, batch_size)
    reference = run_epoch(copy.deepcopy(layers), optimizer, X, y, order, batch_size, ref)
    for two, one, expected in zip(split, serial, reference, strict=True):
        np.testing.assert_array_equal(two, one)
        np.testing.assert_allclose(two, expected, rtol=2e-3, atol=2e-5)


def test_concurrent_epochs_do_not_collide(two_threads):
    """Two Python threads training at once (workqueue would abort on two launchers): one gets
    the team, the other runs serially; both give the weights of a lone run."""
    import copy

    X, y, order, layers = sparse_problem(np.random.default_rng(9))
    alone = run_epoch(copy.deepcopy(layers), C.OPT_SGD, X, y, order, 1100)
    found: list = [None] * 4

    def work(slot):
        found[slot] = run_epoch(copy.deepcopy(layers), C.OPT_SGD, X, y, order, 1100)

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in found:
        for got, expected in zip(result, alone, strict=True):
            np.testing.assert_array_equal(got, expected)


def _python(code: str, env: dict) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_threading_layer_policy():
    """workqueue unless the user chose a layer; a spinning layer keeps the loops on one thread."""
    code = """
        import fastnn, numba
        from fastnn.backends.numba import team
        fastnn.set_num_threads(2)
        print(numba.threading_layer(), team.loop_threads())
    """
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    assert _python(code, env) == "workqueue 2"
    assert _python(code, {**env, "NUMBA_THREADING_LAYER": "omp"}) == "omp 1"
