"""One epoch of MNIST_99's CNN at batch 256: fastnn (numba) against PyTorch, same weights.

Both start from fastnn's initial weights (copied into PyTorch by ``fastnn.bench.cnn``'s
trainer), see the samples in the same order and follow the same recipe (Adam, OneCycle per
iteration). Each run is a fresh process; the two implementations alternate ``--repeats``
times, so a change of machine load hits both. Prints seconds per epoch, the ratio of the
medians, the test accuracies and the load average.

    FASTNN_DATA=/work/shared/data PYTHONPATH=. python benchmarks/numba_cnn_vs_torch.py \\
        [--n-train 12800] [--threads 2] [--repeats 2] [--backend numba]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time
import numpy as np
from fastnn.bench.cnn import cnn_data, fastnn_cnn_trainer, torch_cnn_trainer
from fastnn.bench.registry import Setup
from fastnn.recipes import MNIST_99, build
impl, backend, n, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
X, y, Xt, yt = cnn_data()
weights = build(MNIST_99)[0].get_weights()
setup = Setup(X=X[:n], y=y[:n], X_test=Xt, y_test=yt, weights=weights, activation="relu",
              optimizer={"name": "adam"}, batch_size=MNIST_99["batch_size"], threads=threads,
              seed=MNIST_99["seed"], options={"backend": backend} if impl == "fastnn" else {})
trainer = (fastnn_cnn_trainer if impl == "fastnn" else torch_cnn_trainer)(setup)
marks = []
trainer.run(1, lambda e: marks.append(time.perf_counter()),
            lambda e: marks.append(time.perf_counter()) or False)
print(json.dumps({"epoch_s": marks[1] - marks[0], "accuracy": trainer.test_accuracy()}))
"""


def run(impl: str, backend: str, n: int, threads: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, impl, backend, str(n), str(threads)],
                         capture_output=True, text=True, check=True, timeout=3600)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=60000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--backend", default="numba")
    args = parser.parse_args()
    results: dict[str, list[dict]] = {"fastnn": [], "torch": []}
    loads = [os.getloadavg()[0]]
    for _ in range(args.repeats):
        for impl in results:
            t0 = time.perf_counter()
            r = run(impl, args.backend, args.n_train, args.threads)
            loads.append(os.getloadavg()[0])
            results[impl].append(r)
            print(
                f"{impl:>6}: {r['epoch_s']:.2f} s/epoch, test accuracy {r['accuracy']:.4f} "
                f"(process {time.perf_counter() - t0:.0f} s, load {loads[-1]:.1f})",
                flush=True,
            )
    med = {k: sorted(r["epoch_s"] for r in v)[len(v) // 2] for k, v in results.items()}
    print(f"\n{args.n_train} samples, batch 256, {args.threads} threads: fastnn ({args.backend}) "
          f"{med['fastnn']:.2f} s, torch {med['torch']:.2f} s per epoch (median); torch / fastnn"
          f" = {med['torch'] / med['fastnn']:.2f}x; load average {min(loads):.1f}-{max(loads):.1f}"
          " on 2 cores")  # fmt: skip


if __name__ == "__main__":
    main()
