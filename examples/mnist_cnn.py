"""Past 99% test accuracy on MNIST in two epochs with a small convolutional network.

The configuration is ``fastnn.recipes.MNIST_99``: conv 1->24 k5, max-pool 2, ReLU, conv 24->32
k3, max-pool 2, ReLU, flatten (800), dense 800->256 ReLU, dense 256->10; Adam (lr 0.01, betas
0.7 and 0.9) under a one-cycle learning-rate schedule stepped every batch, batch 256, two
epochs, on images standardised by MNIST's mean and standard deviation. The script prints the
network, the training time and the test accuracy.

Run: ``python examples/mnist_cnn.py``; ``--subset 2048 --epochs 1`` for a smoke test (the 99%
check is then skipped). Exit code 1 if a full run ends below 99%. Needs MNIST
(``FASTNN_DATA`` or a download).
"""

from __future__ import annotations

import argparse
import sys
import time

import fastnn
from fastnn.datasets import load_mnist
from fastnn.recipes import MNIST_99, build, standardize

TARGET = 0.99


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=MNIST_99["epochs"])
    parser.add_argument("--subset", type=int, default=None, help="train on N samples only")
    parser.add_argument("--backend", default=None, help="default: the fastest that loads")
    args = parser.parse_args(argv)

    X, y, X_test, y_test = load_mnist(channels=True)  # (n, 1, 28, 28) pixels in [0, 1]
    if args.subset:
        X, y = X[: args.subset], y[: args.subset]
    X, X_test = standardize(X), standardize(X_test)  # (x - mean) / std
    recipe = {**MNIST_99, "epochs": args.epochs}
    model, optimizer, schedule = build(recipe)
    print(model.summary())
    print(f"{optimizer!r}, one-cycle schedule, batch {recipe['batch_size']}, "
          f"{recipe['epochs']} epoch(s), backend "
          f"{fastnn.get_backend() if args.backend is None else args.backend}")  # fmt: skip
    t0 = time.perf_counter()
    history = model.fit(
        X, y, optimizer=optimizer, batch_size=recipe["batch_size"], epochs=recipe["epochs"],
        seed=recipe["seed"], backend=args.backend, callbacks=schedule, track_accuracy=False,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    accuracy = model.evaluate(X_test, y_test)["accuracy"]
    print(f"test accuracy {accuracy:.4f} after {sum(history.seconds):.2f} s of training "
          f"({wall:.2f} s wall-clock), {history.iterations} iterations")  # fmt: skip
    full_run = args.subset is None and args.epochs >= MNIST_99["epochs"]
    if full_run and accuracy < TARGET:
        print(f"below the {TARGET:.0%} target", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
