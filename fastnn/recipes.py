"""Tested training configurations.

``MNIST_98`` is the fastest configuration found that reaches >= 98.0% MNIST test accuracy
(``examples/mnist_98.py``, the benchmark's ``--time-to-accuracy 0.98`` row). How it was
chosen, and the measurements behind it, are in the README ("MNIST to 98%").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MNIST_98: dict[str, Any] = {
    "hidden": (512,),  # one hidden layer of 512 ReLU units: 784-512-10
    "activation": "relu",
    "init": "auto",  # He for ReLU
    "optimizer": "momentum",  # SGD with heavy-ball momentum
    "lr": 0.2,
    "momentum": 0.9,
    "nesterov": False,
    "schedule": "cosine",  # fastnn.schedules.CosineDecay over the run (epoch midpoints)
    "batch_size": 128,
    "epochs": 5,
    "loss": "cross_entropy",
    "dtype": "float32",
    "seed": 0,
}


def build(recipe: Mapping[str, Any], n_features: int = 784, n_classes: int = 10):  # noqa: ANN201
    """The model, optimizer and callbacks of a recipe such as ``MNIST_98``.

    Parameters
    ----------
    recipe : mapping
        Keys as in ``MNIST_98``.
    n_features, n_classes : int
        Input width and number of classes.

    Returns
    -------
    (Sequential, Optimizer, list of Callback)
    """
    from . import schedules
    from .layers import Dense
    from .model import Sequential
    from .optimizers import SGD, Adam

    sizes = [n_features, *recipe["hidden"]]
    layers = [Dense(a, b, recipe["activation"], init=recipe.get("init", "auto"))
              for a, b in zip(sizes[:-1], sizes[1:], strict=True)]  # fmt: skip
    layers.append(Dense(sizes[-1], n_classes))
    model = Sequential(layers, seed=recipe.get("seed"), dtype=recipe.get("dtype", "float32"))
    if recipe["optimizer"] == "adam":
        opt = Adam(lr=recipe["lr"])
    else:
        mu = recipe.get("momentum", 0.0) if recipe["optimizer"] == "momentum" else 0.0
        opt = SGD(lr=recipe["lr"], momentum=mu, nesterov=bool(recipe.get("nesterov")) and mu > 0)
    sched = {"cosine": lambda: [schedules.CosineDecay()],
             "exponential": lambda: [schedules.ExponentialDecay(0.7)],
             "none": list}[recipe.get("schedule", "none")]()  # fmt: skip
    return model, opt, sched


def train(
    X: np.ndarray, y: np.ndarray, recipe: Mapping[str, Any] = MNIST_98, *,
    backend: str | None = None, callbacks: Sequence | None = None, verbose: int = 0,
):  # noqa: ANN201 fmt: skip
    """Train a fresh model with ``recipe`` on ``(X, y)``.

    Parameters
    ----------
    X : ndarray, shape (n, 784)
    y : ndarray of int, shape (n,)
    recipe : mapping, default MNIST_98
    backend : str, optional
    callbacks : list of Callback, optional
        Added after the recipe's schedule.
    verbose : int

    Returns
    -------
    (Sequential, History)
    """
    n_classes = int(np.max(y)) + 1
    model, opt, sched = build(recipe, X.shape[1], max(n_classes, 2))
    history = model.fit(
        X, y, loss=recipe.get("loss", "cross_entropy"), optimizer=opt,
        batch_size=recipe["batch_size"], epochs=recipe["epochs"], seed=recipe.get("seed"),
        backend=backend, callbacks=[*sched, *(callbacks or [])], verbose=verbose,
        track_accuracy=False,
    )  # fmt: skip
    return model, history
