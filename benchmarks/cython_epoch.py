"""Seconds per MNIST epoch of the Cython ``train_epoch`` (784-128-10, ReLU, plain SGD, float32).

Runs on the tree it is imported from, before the backend refactor (``_workspace`` with weight
lists) or after it (``workspace`` over layers), so two trees compare side by side::

    FASTNN_DATA=/work/shared/data PYTHONPATH=<tree> python benchmarks/cython_epoch.py
    ... --dense          # standard-normal inputs of MNIST's shape: every product on BLAS
    ... --batches 1,128 --epochs 5

Prints the best epoch of ``--epochs`` (after one warm-up) per batch size, scaled to 60,000 rows
(batch 1 runs 6,000 rows), and the last loss (the same in both trees when they compute the
same numbers). Alternate the trees, run each twice, and read the minimum on a shared machine.
"""

from __future__ import annotations

import argparse
import gzip
import os
import time

import numpy as np

from fastnn import _codes as C


def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    root = os.path.join(os.environ.get("FASTNN_DATA", "../shared/data"), "mnist")
    with gzip.open(os.path.join(root, "train-images-idx3-ubyte.gz")) as f:
        X = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)
    with gzip.open(os.path.join(root, "train-labels-idx1-ubyte.gz")) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    return (X / np.float32(255)).astype(np.float32), y


def workspace(batch_size: int):  # noqa: ANN201 (either tree's Workspace)
    rng = np.random.default_rng(0)
    hyper = np.array([0.05, 0, 0, 0, 0.9, 0.999, 1e-8])
    sizes, acts = (784, 128, 10), [C.RELU, C.IDENTITY]
    Ws = [(rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
          for a, b in zip(sizes[:-1], sizes[1:], strict=True)]  # fmt: skip
    try:
        from fastnn.backends.workspace import Workspace
        from fastnn.layers import Dense
    except ImportError:  # the tree before the layer protocol
        from fastnn.backends._workspace import Workspace

        bs = [np.zeros(b, np.float32) for b in sizes[1:]]
        return Workspace(Ws, bs, acts, [0.0, 0.0], C.LOSS_CROSS_ENTROPY, C.OPT_SGD, hyper,
                         batch_size)  # fmt: skip
    layers = []
    for W, act in zip(Ws, acts, strict=True):
        layer = Dense(W.shape[0], W.shape[1], C.ACTIVATION_NAMES[act])
        layer.build((W.shape[0],), np.random.default_rng(1), np.float32)
        layer.W[...], layer.b[...] = W, 0  # the same weights in both trees
        layers.append(layer)
    return Workspace(layers, acts, C.LOSS_CROSS_ENTROPY, C.OPT_SGD, hyper, batch_size,
                     np.float32)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,32,128,60000")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--dense", action="store_true", help="standard-normal inputs")
    args = parser.parse_args()
    import fastnn.backends.cython as cy

    X, y = load_mnist()
    if args.dense:
        X = np.random.default_rng(0).standard_normal(X.shape, dtype=np.float32)
    own = getattr(cy, "uses_own_blas", lambda: False)()
    print(f"cython build {cy.BUILD}, {cy.get_num_threads()} threads, own BLAS: {own}")
    for batch_size in (int(b) for b in args.batches.split(",")):
        n = 6000 if batch_size == 1 else X.shape[0]
        ws = workspace(batch_size)
        losses = np.zeros(-(-n // batch_size))
        times = []
        for epoch in range(args.epochs + 1):
            order = np.random.default_rng(epoch).permutation(X.shape[0])[:n].astype(np.int64)
            start = time.perf_counter()
            cy.train_epoch(ws, X, y, order, batch_size, losses)
            times.append(time.perf_counter() - start)
        best = min(times[1:]) * X.shape[0] / n
        print(f"batch {batch_size:>6}: {best:.3f} s/epoch (best of {args.epochs}), "
              f"last loss {losses[-1]:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
