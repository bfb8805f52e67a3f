"""98% test accuracy on MNIST in a few seconds on a laptop-class CPU.

The configuration is ``fastnn.recipes.MNIST_98``: one hidden layer of ReLU units, plain SGD
with a cosine learning-rate decay over three epochs, mini-batches of four. The script
loads MNIST, trains with the default (fastest) backend, and prints the wall-clock seconds of
training and the test accuracy after every epoch (that evaluation is not counted).

Run: ``python examples/mnist_98.py``; ``--subset 2000 --epochs 1`` for a smoke test (the 98%
check is then skipped). Exit code 1 if a full run ends below 98%.
Needs MNIST (``FASTNN_DATA`` or a download).
"""

from __future__ import annotations

import argparse
import sys
import time

import fastnn
from fastnn.datasets import load_mnist
from fastnn.recipes import MNIST_98, build

TARGET = 0.98


class TestAccuracy(fastnn.Callback):
    """Test accuracy after each epoch, with the training time so far (evaluation excluded)."""

    def __init__(self, X_test, y_test) -> None:  # noqa: ANN001
        self.X_test, self.y_test = X_test, y_test

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        accuracy = self.model.evaluate(self.X_test, self.y_test)["accuracy"]
        seconds = sum(self.history.seconds)  # this epoch included
        print(f"epoch {epoch + 1}: loss {logs['loss']:.4f}, test accuracy {accuracy:.4f}, "
              f"{seconds:.2f} s of training")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=MNIST_98["epochs"])
    parser.add_argument("--subset", type=int, default=None, help="train on N samples only")
    parser.add_argument("--backend", default=None, help="default: the fastest that loads")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    X, y, X_test, y_test = load_mnist()
    if args.subset:
        X, y = X[: args.subset], y[: args.subset]
    load_seconds = time.perf_counter() - t0
    recipe = {**MNIST_98, "epochs": args.epochs}
    model, optimizer, schedule = build(recipe, X.shape[1], 10)
    hidden = "-".join(str(h) for h in recipe["hidden"])
    print(f"MNIST: {len(X)} training / {len(X_test)} test images (loaded in {load_seconds:.2f} s)")
    print(f"model 784-{hidden}-10 {recipe['activation']}, {optimizer!r}, {recipe['schedule']} "
          f"schedule, batch {recipe['batch_size']}, {recipe['epochs']} epochs, backend "
          f"{fastnn.get_backend() if args.backend is None else args.backend}")  # fmt: skip
    probe = TestAccuracy(X_test, y_test)
    t1 = time.perf_counter()
    history = model.fit(
        X, y, loss=recipe["loss"], optimizer=optimizer, batch_size=recipe["batch_size"],
        epochs=recipe["epochs"], seed=recipe["seed"], backend=args.backend,
        callbacks=[*schedule, probe], track_accuracy=False,
    )  # fmt: skip
    wall = time.perf_counter() - t1
    train_seconds = sum(history.seconds)
    accuracy = model.evaluate(X_test, y_test)["accuracy"]
    print(f"test accuracy {accuracy:.4f} after {train_seconds:.2f} s of training "
          f"({wall:.2f} s wall-clock with the per-epoch test evaluations), "
          f"{history.iterations} iterations, {history.epochs} epochs")  # fmt: skip
    full_run = args.subset is None and args.epochs >= MNIST_98["epochs"]
    if full_run and accuracy < TARGET:
        print(f"below the {TARGET:.0%} target", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
