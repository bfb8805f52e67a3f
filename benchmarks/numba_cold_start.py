"""Where the Numba backend's cold start goes: import + first fused epoch, per compiled function.

An MLP 784-128-10 (ReLU, cross-entropy, plain SGD, float32) trains one epoch at batch 128 on
60,000 random MNIST-like rows (81% zeros); the first epoch compiles everything it calls. Run it
in a fresh process with an empty cache (the numbers mean nothing otherwise)::

    NUMBA_CACHE_DIR=$(mktemp -d) OPENBLAS_NUM_THREADS=1 PYTHONPATH=. \\
        python benchmarks/numba_cold_start.py

It prints wall and CPU seconds of the import and the first (compiling) epoch, a second (warm)
epoch, and every compiled specialization with its own compile time (callees excluded), from
Numba's compile events. It also runs on checkouts from before the backend package (5251c53).
"""

from __future__ import annotations

import time
from collections import Counter

T0, C0 = time.perf_counter(), time.process_time()

import numpy as np  # noqa: E402
from numba.core import event  # noqa: E402

from fastnn import _codes as C  # noqa: E402
from fastnn.backends import numba as nb  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - T0


class CompileTimes(event.Listener):
    """Own compile time of every specialization (nested compiles subtracted)."""

    def __init__(self) -> None:
        self.stack: list[list[float]] = []
        self.own: Counter[str] = Counter()
        self.count: Counter[str] = Counter()

    def on_start(self, ev: event.Event) -> None:
        self.stack.append([time.perf_counter(), 0.0])

    def on_end(self, ev: event.Event) -> None:
        start, children = self.stack.pop()
        seconds = time.perf_counter() - start
        if self.stack:
            self.stack[-1][1] += seconds
        func = ev.data["dispatcher"].py_func
        name = f"{func.__module__}.{func.__qualname__}"
        self.own[name] += seconds - children
        self.count[name] += 1


class DenseStub:
    """The layer protocol the Workspace reads (until fastnn.layers has it)."""

    def __init__(self, W: np.ndarray, b: np.ndarray) -> None:
        self.W, self.b, self.act_alpha = W, b, 0.0
        self.input_shape, self.output_shape = (W.shape[0],), (W.shape[1],)

    def parameters(self) -> list[np.ndarray]:
        return [self.W, self.b]

    def buffer_shapes(self, rows: int, act: int) -> dict[str, tuple[int, int]]:
        return {"z": (rows, self.W.shape[1])} if act in C.NEEDS_PREACTIVATION else {}


def workspace(rng: np.random.Generator):  # noqa: ANN201
    W1 = (0.05 * rng.standard_normal((784, 128))).astype(np.float32)
    W2 = (0.1 * rng.standard_normal((128, 10))).astype(np.float32)
    b1, b2 = np.zeros(128, np.float32), np.zeros(10, np.float32)
    hyper = np.array([0.1, 0.0, 0.0, 0.0, 0.9, 0.999, 1e-8])
    acts, loss, opt = [C.RELU, C.IDENTITY], C.LOSS_CROSS_ENTROPY, C.OPT_SGD
    try:
        from fastnn.backends.workspace import Workspace
    except ImportError:  # checkouts before the backend package: the old Workspace
        from fastnn.backends._workspace import Workspace

        return Workspace([W1, W2], [b1, b2], acts, [0.0, 0.0], loss, opt, hyper, 128)
    layers = [DenseStub(W1, b1), DenseStub(W2, b2)]
    return Workspace(layers, acts, loss, opt, hyper, 128, np.float32)


def main() -> None:
    times = CompileTimes()
    event.register("numba:compile", times)
    rng = np.random.default_rng(0)
    n = 60_000
    X = rng.random((n, 784), dtype=np.float32)
    X[rng.random((n, 784)) < 0.81] = 0
    y = rng.integers(0, 10, n)
    ws, order, losses = workspace(rng), rng.permutation(n), np.zeros(-(-n // 128))
    t1 = time.perf_counter()
    nb.train_epoch(ws, X, y, order, 128, losses)
    first = time.perf_counter() - t1
    cpu = time.process_time() - C0
    t2 = time.perf_counter()
    nb.train_epoch(ws, X, y, order, 128, losses)
    second = time.perf_counter() - t2
    cold = IMPORT_SECONDS + first
    print(f"import {IMPORT_SECONDS:.2f} s + first epoch {first:.2f} s = cold {cold:.2f} s wall "
          f"({cpu:.2f} s CPU); warm epoch {second:.2f} s")  # fmt: skip
    print(f"{sum(times.count.values())} specializations of {len(times.count)} functions, "
          f"{sum(times.own.values()):.1f} s compiling:")  # fmt: skip
    for name, seconds in times.own.most_common():
        print(f"  {seconds:6.2f} s  {times.count[name]} x {name}")


if __name__ == "__main__":
    main()
