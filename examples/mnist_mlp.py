"""Train a 784-128-10 ReLU network on MNIST and print test accuracy and seconds per epoch.

Run: ``FASTNN_DATA=../shared/data python examples/mnist_mlp.py [--backend numpy] [--epochs 3]``
"""

from __future__ import annotations

import argparse

import fastnn
from fastnn.datasets import load_mnist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="auto", help="auto, numpy, numba or cython")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.1)
    args = parser.parse_args()

    X_train, y_train, X_test, y_test = load_mnist()
    model = fastnn.Sequential([fastnn.Dense(784, 128, "relu"), fastnn.Dense(128, 10)], seed=0)
    history = model.fit(
        X_train, y_train, optimizer=fastnn.SGD(args.lr), batch_size=args.batch_size,
        epochs=args.epochs, backend=args.backend, verbose=1, track_accuracy=False,
    )  # fmt: skip
    scores = model.evaluate(X_test, y_test)
    per_epoch = sum(history.seconds) / len(history.seconds)
    print(
        f"backend {fastnn.backends.resolve_backend(args.backend).NAME}: "
        f"test accuracy {scores['accuracy']:.4f}, {per_epoch:.2f} s/epoch, "
        f"{history.iterations} iterations in {history.epochs} epochs"
    )


if __name__ == "__main__":
    main()
