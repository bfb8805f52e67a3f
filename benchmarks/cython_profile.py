"""Where a Cython MNIST epoch goes (784-128-10, ReLU, plain SGD, float32): seconds per part.

The parts are those of ``epoch.pxd`` (``P_GATHER`` ... ``P_UPDATE``), timed inside the compiled
epoch through ``train_epoch``'s ``profile`` argument::

    FASTNN_DATA=/work/shared/data PYTHONPATH=$PWD python benchmarks/cython_profile.py
    ... --batches 128,60000 --epochs 5 --threads 2

Prints, per batch size, the median over ``--epochs`` epochs (after one warm-up) of each part
and of the whole call, and the thread timings (``team.pxd``) the epoch ended with.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from cython_epoch import load_mnist, workspace

PARTS = ("gather", "forward0", "forward", "backward", "dW0", "update")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="32,128,60000")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import fastnn.backends.cython as cy

    kernels = cy._kernels
    X, y = load_mnist()
    print(f"cython build {cy.BUILD}, {args.threads} threads, own BLAS: {cy.uses_own_blas()}")
    print(f"{'batch':>6} {'total':>7} " + " ".join(f"{p:>8}" for p in PARTS) + "  stats")
    for batch_size in (int(b) for b in args.batches.split(",")):
        ws = workspace(batch_size)
        scratch, stats = kernels.new_scratch(ws), np.zeros(kernels.THREAD_STATS)
        losses = np.zeros(-(-X.shape[0] // batch_size))
        rows = []
        for epoch in range(args.epochs + 1):
            order = np.random.default_rng(epoch).permutation(X.shape[0]).astype(np.int64)
            profile = np.zeros(kernels.EPOCH_PROFILE)
            start = time.perf_counter()
            kernels.train_epoch(ws, X, y, order, batch_size, losses, args.threads, stats,
                                scratch, profile)  # fmt: skip
            rows.append([time.perf_counter() - start, *profile])
        med = np.median(np.array(rows[1:]), axis=0)
        print(f"{batch_size:>6} {med[0]:7.3f} " + " ".join(f"{v:8.3f}" for v in med[1:])
              + f"  {np.array2string(stats, precision=2)}")  # fmt: skip


if __name__ == "__main__":
    main()
