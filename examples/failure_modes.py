"""Failure modes of training, and what fastnn's diagnostics say about them.

Four experiments on MNIST, each followed by its remedy:

1. Vanishing gradients: a deep sigmoid network with tiny initial weights. Each sigmoid layer
   multiplies the backpropagated gradient by at most 0.25 times small weights, so the layers
   near the input receive almost nothing and do not learn.
   Remedy: ReLU activations with He initialisation.
2. Dead ReLU units: a learning rate far too high. The first steps blow the weights up (the
   diagnostics call it exploding), some biases are pushed so negative that the units never
   fire again; a dead unit has zero gradient, so it never recovers.
   Remedy: a lower learning rate.
3. Divergence: mean squared error with a learning rate that makes the loss overflow. fit
   raises ``TrainingDivergedError`` naming the epoch and iteration; the model keeps the weights
   it had before that epoch.
   Remedy: ``clip_grad_norm`` (or a lower learning rate).

Run: ``python examples/failure_modes.py`` (about 10 s); ``--subset 1000 --epochs 1`` for a
quick look. Needs MNIST (``FASTNN_DATA`` or a download).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import fastnn
from fastnn.datasets import load_mnist
from fastnn.diagnostics import GradientWarning, format_epoch


def network(hidden: list[int], activation: str, init: str = "auto") -> fastnn.Sequential:
    sizes = [784, *hidden]
    layers = [fastnn.Dense(a, b, activation, init=init)
              for a, b in zip(sizes[:-1], sizes[1:], strict=True)]  # fmt: skip
    return fastnn.Sequential([*layers, fastnn.Dense(sizes[-1], 10)], seed=0)


def experiment(title: str, model: fastnn.Sequential, data: tuple, epochs: int, **fit_args) -> None:
    """Train with diagnostics and print, per epoch, the table and its warnings."""
    X, y, X_test, y_test = data
    print(f"\n=== {title}")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GradientWarning)  # the tables below print them
        try:
            history = model.fit(X, y, epochs=epochs, batch_size=64, diagnostics=True, **fit_args)
        except fastnn.TrainingDivergedError as exc:
            print(f"TrainingDivergedError: {exc}")
            finite = all(np.isfinite(w).all() for w in model.get_weights())
            print(f"the model's weights are all finite: {finite}")
            return
    for record in history.diagnostics:
        print(f"-- epoch {record['epoch']}: loss {history.loss[record['epoch'] - 1]:.4f}")
        print(format_epoch(record))
    accuracy = model.evaluate(X_test, y_test)["accuracy"]
    print(f"test accuracy {accuracy:.4f} ({time.perf_counter() - t0:.1f} s)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=10000, help="training samples to use")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)
    X, y, X_test, y_test = load_mnist()
    data = (X[: args.subset], y[: args.subset], X_test, y_test)
    deep = [128] * 5

    experiment("1. deep sigmoid network, weights drawn from N(0, 0.01): vanishing gradients",
               network(deep, "sigmoid", init="normal"), data, args.epochs,
               optimizer=fastnn.SGD(0.1))  # fmt: skip
    experiment("   remedy: the same depth with ReLU and He initialisation",
               network(deep, "relu"), data, args.epochs,
               optimizer=fastnn.SGD(0.1))  # fmt: skip

    experiment("2. ReLU network, SGD lr 1.0 with momentum 0.9: exploding, then dead units",
               network([128, 128], "relu"), data, args.epochs,
               optimizer=fastnn.SGD(1.0, momentum=0.9))  # fmt: skip
    experiment("   remedy: learning rate 0.05",
               network([128, 128], "relu"), data, args.epochs,
               optimizer=fastnn.SGD(0.05, momentum=0.9))  # fmt: skip

    experiment("3. mean squared error with SGD lr 3.0: the loss overflows",
               network([128, 128], "relu"), data, args.epochs, loss="mse",
               optimizer=fastnn.SGD(3.0))  # fmt: skip
    experiment("   remedy: clip_grad_norm=0.5 (each batch's gradient norm at most 0.5)",
               network([128, 128], "relu"), data, args.epochs, loss="mse",
               optimizer=fastnn.SGD(3.0), clip_grad_norm=0.5)  # fmt: skip


if __name__ == "__main__":
    main()
