"""The Numba backend's thread-split sparse loops against one thread, kernel by kernel.

For MNIST rows (``FASTNN_DATA``) and a 784 x 128 first layer, float32, it times the forward
``x @ W`` over the non-zeros and the plain-SGD weight step ``W -= lr x.T @ delta`` on one thread
(``forward_loops``, ``weight_grad_loops``) and on the team (``forward_team``,
``weight_grad_team``), in alternating pairs, and prints per batch size the medians, the median
of the pairwise speed-ups and the team's CPU/wall ratio (below 2 means the second thread did
not get a core of its own: a busy machine). It first prints the cost of waking the team for an
empty region (the ``TEAM_LAUNCH`` of ``fastnn/backends/numba/dense.py``) and the seconds the
two ``parallel=True`` kernels take to compile (run with an empty ``NUMBA_CACHE_DIR`` for those
to mean anything; ``--compile-only`` stops there)::

    NUMBA_CACHE_DIR=$(mktemp -d) FASTNN_DATA=... PYTHONPATH=. python benchmarks/numba_team.py

For the busy-machine case, run it again beside ``taskset -c 1 python -c "while True: pass"``.
"""

from __future__ import annotations

import sys
import time

import numba
import numpy as np

from fastnn.backends.numba import sparse, team
from fastnn.datasets import load_mnist

BATCHES = (32, 128, 1024, 60000)
PAIRS = 15


@numba.njit(parallel=True, nogil=True)
def _empty(a):
    for t in numba.prange(a.shape[0]):
        a[t] += 1.0


def launch_microseconds(regions: int = 5000) -> float:
    a = np.zeros(team.loop_threads())
    _empty(a)
    start = time.perf_counter()
    for _ in range(regions):
        _empty(a)
    return (time.perf_counter() - start) / regions * 1e6


def compile_seconds(x: np.ndarray, W: np.ndarray, delta: np.ndarray, members) -> dict:
    scratch = np.empty(sparse.scratch_size(W.shape[0]), np.int32)
    dirty = np.ones(W.shape[0], np.bool_)
    sparse.forward_loops(x, W, np.empty((x.shape[0], W.shape[1]), W.dtype), scratch)
    sparse.weight_grad_loops(x, delta, W.copy(), scratch, dirty, True, 0.0)  # callees compiled
    seconds = {}
    for name, call in (
        ("forward_team", lambda: sparse.forward_team(x, W, np.empty_like(delta), members)),
        ("weight_grad_team", lambda: sparse.weight_grad_team(x, delta, W.copy(), dirty, members,
                                                              True, 0.0)),
    ):  # fmt: skip
        start, cpu = time.perf_counter(), time.process_time()
        call()
        seconds[name] = {"wall": round(time.perf_counter() - start, 2),
                         "cpu": round(time.process_time() - cpu, 2)}  # fmt: skip
    return seconds


def pair(one: tuple, split: tuple, reps: int) -> tuple[float, float, float, float]:
    """Median one-thread and team microseconds, median pairwise speed-up, team CPU/wall;
    ``one`` and ``split`` are (kernel, arguments)."""
    t1, t2, ratios, busy = [], [], [], []
    for _ in range(PAIRS):
        start = time.perf_counter()
        for _ in range(reps):
            one[0](*one[1])
        a = time.perf_counter() - start
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(reps):
            split[0](*split[1])
        b = time.perf_counter() - start
        busy.append((time.process_time() - cpu) / b)
        t1.append(a / reps * 1e6)
        t2.append(b / reps * 1e6)
        ratios.append(a / b)
    return (
        float(np.median(t1)),
        float(np.median(t2)),
        float(np.median(ratios)),
        float(np.median(busy)),
    )


def main() -> None:
    threads = team.loop_threads()
    if threads < 2:
        sys.exit(f"one thread here (threading layer {numba.threading_layer()}): nothing to time")
    X = load_mnist()[0]
    rng = np.random.default_rng(0)
    d, k = 784, 128
    W = (0.01 * rng.standard_normal((d, k))).astype(np.float32)
    members = np.empty((threads, sparse.scratch_size(d)), np.int32)
    scratch = np.empty(sparse.scratch_size(d), np.int32)
    dirty = np.ones(d, np.bool_)
    print(f"threads {threads}, layer {numba.threading_layer()}")
    delta0 = (1e-6 * rng.standard_normal((64, k))).astype(np.float32)
    print("compile seconds", compile_seconds(X[:64], W, delta0, members))
    if "--compile-only" in sys.argv:
        return
    print(f"waking the team for an empty region: {launch_microseconds():.1f} us")
    for n in BATCHES:
        x = np.ascontiguousarray(X[rng.permutation(X.shape[0])[:n]])
        out = np.empty((n, k), np.float32)
        delta = (1e-6 * rng.standard_normal((n, k))).astype(np.float32)
        reps = max(1, 20000 // n)
        forward = (sparse.forward_loops, (x, W, out, scratch))
        forward_split = (sparse.forward_team, (x, W, out, members))
        step = (sparse.weight_grad_loops, (x, delta, W, scratch, dirty, True, 1e-9))
        step_split = (sparse.weight_grad_team, (x, delta, W, dirty, members, True, 1e-9))
        rows = {
            "forward": pair(forward, forward_split, reps),
            "dW step": pair(step, step_split, reps),
        }
        for name, (one, split, speedup, busy) in rows.items():
            print(f"batch {n:6d} {name:8s}: one thread {one:9.0f} us, team {split:9.0f} us, "
                  f"speed-up {speedup:.2f}, team CPU/wall {busy:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
