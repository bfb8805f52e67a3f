"""Benchmark row "fastnn-sklearn": the "sklearn" row's code with one import line changed.

It trains ``fastnn.sklearn.MLPClassifier`` configured exactly as the "sklearn" row configures
``sklearn.neural_network.MLPClassifier`` (same hyper-parameters, same initial weights copied in,
one ``partial_fit`` per epoch), so the two rows side by side show what a scikit-learn user gains
by writing ``from fastnn.sklearn import MLPClassifier``.

Registered through the ``register_bench_impls`` hook of :mod:`fastnn.sklearn` (a module of
``fastnn.bench.registry.PLUGIN_MODULES``), which calls :func:`register_bench_impls` here.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from fastnn.bench.registry import Impl, Setup
from fastnn.bench.trainers import optimizer_settings

NAME = "fastnn-sklearn"
# fastnn's activation names (Setup.activation) -> scikit-learn's.
_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "logistic", "identity": "identity",
                "leaky_relu": "leaky_relu"}  # fmt: skip


class FastnnSklearnTrainer:
    """``fastnn.sklearn.MLPClassifier`` with the "sklearn" row's settings, one partial_fit/epoch."""

    def __init__(self, setup: Setup) -> None:
        import fastnn
        from fastnn.sklearn import MLPClassifier

        self.setup = setup
        fastnn.set_num_threads(setup.threads)
        opt = optimizer_settings(setup.optimizer)
        common = {"hidden_layer_sizes": tuple(setup.hidden), "alpha": opt["weight_decay"],
                  "activation": _ACTIVATIONS[setup.activation],
                  "batch_size": setup.batch_size, "learning_rate_init": opt["lr"],
                  "shuffle": True, "random_state": setup.seed,
                  "backend": setup.options.get("backend")}  # fmt: skip
        if opt["name"] == "sgd":
            self.clf = MLPClassifier(solver="sgd", learning_rate="constant",
                                     momentum=opt["momentum"],
                                     nesterovs_momentum=opt["nesterov"], **common)  # fmt: skip
        else:
            betas = opt["betas"]
            self.clf = MLPClassifier(solver="adam", beta_1=betas[0], beta_2=betas[1],
                                     epsilon=opt["eps"], **common)  # fmt: skip
        # A one-sample partial_fit builds the network (and compiles kernels) untimed, as the
        # "sklearn" row does; then the shared initial weights go in and the optimizer restarts.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.clf.partial_fit(setup.X[:1], setup.y[:1], classes=np.arange(setup.n_classes))
        params = [*self.clf.coefs_, *self.clf.intercepts_]
        for dst, src in zip(params, [*setup.weights[0::2], *setup.weights[1::2]], strict=True):
            dst[...] = src
        self.clf._optimizer.reset()
        self.clf.t_ = 0

    def run(self, epochs: int, on_epoch_begin: Callable[[int], None],
            on_epoch_end: Callable[[int], bool]) -> None:  # fmt: skip
        s = self.setup
        for epoch in range(epochs):
            on_epoch_begin(epoch)
            self.clf.partial_fit(s.X, s.y)
            if on_epoch_end(epoch):
                break

    def test_accuracy(self) -> float:
        return float(np.mean(self.clf.predict(self.setup.X_test) == self.setup.y_test))


def fastnn_sklearn_trainer(setup: Setup) -> FastnnSklearnTrainer:
    """fastnn.sklearn's MLPClassifier; fastnn's backend ``setup.options["backend"]`` or auto."""
    return FastnnSklearnTrainer(setup)


def register_bench_impls(register: Callable[[Impl], None]) -> None:
    """Add the "fastnn-sklearn" peer row."""
    register(Impl(
        name=NAME, factory=f"{__name__}:fastnn_sklearn_trainer",
        import_code="import fastnn.sklearn", requires=("sklearn",),
        label="fastnn.sklearn.MLPClassifier, the 'sklearn' row's code with one import changed",
    ))  # fmt: skip
