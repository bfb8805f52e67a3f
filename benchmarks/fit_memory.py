"""Peak extra memory of ``fit``: peak RSS minus the RSS after loading the data.

Every case (input dtype x backend) runs in a fresh process: it imports fastnn and warms the
backend up on a tiny fit (so Numba's compiler and the imports are not counted), fills ``X``
(rows x features random values of the input dtype, chunk by chunk: no temporary of X's size),
then resets the kernel's high-water mark (``/proc/self/clear_refs``), reads ``VmRSS``, trains
one epoch of an MLP features-128-10 (float32, batch 128, SGD) and reads ``VmHWM``. Linux only.

    PYTHONPATH=. python benchmarks/fit_memory.py        # 300,000 x 784, 'auto' backend, ~2 min
    PYTHONPATH=. python benchmarks/fit_memory.py --backends numpy,numba --rows 60000

It runs against whichever fastnn is first on the path, so the same command on two checkouts
gives a before/after table. ``uint8`` inputs are trained with ``input_scale=1/255`` where
``fit`` takes it (older checkouts convert them to float32 instead). The target of issue 16:
extra memory <= 10% of X's size plus the model's buffers.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import time

HIDDEN, CLASSES, BATCH = 128, 10, 128


def _status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in bytes."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) * 1024
    return fields


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _fill(rows: int, features: int, dtype: str):  # noqa: ANN202
    """Random inputs of ``dtype``, generated in chunks straight into the final array."""
    import numpy as np

    rng = np.random.default_rng(0)
    X = np.empty((rows, features), dtype=dtype)
    for start in range(0, rows, 10_000):
        block = X[start : start + 10_000]
        if block.dtype == np.uint8:
            block[...] = rng.integers(0, 256, size=block.shape, dtype=np.uint8)
        else:
            block[...] = rng.random(
                block.shape, dtype=np.float64 if dtype == "float64" else np.float32
            )
    return X, rng.integers(0, CLASSES, rows)


def worker(dtype: str, backend: str, rows: int, features: int) -> dict:
    """One case in this (fresh) process; returns the measurements."""
    import fastnn
    from fastnn import training

    def model() -> fastnn.Sequential:
        return fastnn.Sequential(
            [fastnn.Dense(features, HIDDEN, "relu"), fastnn.Dense(HIDDEN, CLASSES)], seed=0
        )

    scaled = dtype == "uint8" and "input_scale" in inspect.signature(training.fit).parameters
    options = {"input_scale": 1 / 255} if scaled else {}
    small, small_y = _fill(2 * BATCH, features, dtype)
    model().fit(small, small_y, batch_size=BATCH, backend=backend, **options)  # warm-up
    X, y = _fill(rows, features, dtype)
    reset = _reset_peak()
    before = _status()["VmRSS"]
    t0 = time.perf_counter()
    model().fit(X, y, batch_size=BATCH, epochs=1, backend=backend,
                optimizer=fastnn.SGD(0.01), **options)  # fmt: skip
    seconds = time.perf_counter() - t0
    peak = _status()["VmHWM"]
    return {"dtype": dtype, "backend": backend, "x_bytes": int(X.nbytes), "extra": peak - before,
            "scaled": scaled, "peak_reset": reset, "seconds": seconds}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--features", type=int, default=784)
    parser.add_argument("--dtypes", default="float64,float32,uint8")
    parser.add_argument("--backends", default=None, help="default: the 'auto' choice")
    parser.add_argument("--worker", nargs=2, metavar=("DTYPE", "BACKEND"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.rows, args.features)))
        return 0
    import fastnn

    names = args.backends.split(",") if args.backends else [fastnn.get_backend()]
    backends = [b for b in names if b in fastnn.available_backends()]
    print(f"fastnn from {os.path.dirname(fastnn.__file__)}; X is {args.rows:,} x {args.features}")
    print(f"{'input':<11}{'backend':<9}{'X MB':>9}{'extra MB':>10}{'extra/X':>9}{'fit s':>8}")
    for dtype in args.dtypes.split(","):
        for backend in backends:
            cmd = [sys.executable, __file__, "--rows", str(args.rows),
                   "--features", str(args.features), "--worker", dtype, backend]  # fmt: skip
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode:
                print(f"{dtype:<11}{backend:<9} failed: {done.stderr.strip().splitlines()[-1]}")
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            label = dtype + ("/255" if r["scaled"] else "")
            note = "" if r["peak_reset"] else "  (peak not reset: includes loading)"
            print(f"{label:<11}{backend:<9}{r['x_bytes'] / 1e6:>9.0f}{r['extra'] / 1e6:>10.1f}"
                  f"{r['extra'] / r['x_bytes']:>9.1%}{r['seconds']:>8.1f}{note}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
