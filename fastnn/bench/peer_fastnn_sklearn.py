"""Benchmark row "fastnn-sklearn": the "sklearn" row's code with one import line changed.

It trains ``fastnn.sklearn.MLPClassifier`` configured exactly as the "sklearn" row configures
``sklearn.neural_network.MLPClassifier`` (same hyper-parameters, same initial weights copied in,
one ``partial_fit`` per epoch), so the two rows side by side show what a scikit-learn user gains
by writing ``from fastnn.sklearn import MLPClassifier``.

This module is one of ``fastnn.bench.registry.PLUGIN_MODULES``: the benchmark calls its
:func:`register_bench_impls`; ``fastnn.sklearn`` knows nothing of the benchmark.
"""

from __future__ import annotations

from collections.abc import Callable

from fastnn.bench.registry import Impl, Setup
from fastnn.bench.trainers import SklearnTrainer

NAME = "fastnn-sklearn"
# fastnn's activation names (Setup.activation) -> scikit-learn's.
_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "logistic", "identity": "identity",
                "leaky_relu": "leaky_relu"}  # fmt: skip


class FastnnSklearnTrainer(SklearnTrainer):
    """``fastnn.sklearn.MLPClassifier`` with the "sklearn" row's settings, one partial_fit/epoch.

    Everything but the estimator class, the thread setting and the optimizer restart is the
    "sklearn" row's code (:class:`fastnn.bench.trainers.SklearnTrainer`).
    """

    activations = _ACTIVATIONS

    def _estimator_class(self) -> type:
        from fastnn.sklearn import MLPClassifier

        return MLPClassifier

    def _extra_params(self) -> dict:
        return {"backend": self.setup.options.get("backend")}

    def _limit_threads(self, threads: int) -> None:
        import fastnn

        fastnn.set_num_threads(threads)  # BLAS and fastnn's backends together

    def _restart_optimizer(self) -> None:
        self.clf._optimizer.reset()
        self.clf.t_ = 0

    def _set_rate(self, rate: float) -> None:
        raise ValueError("the fastnn-sklearn row runs constant learning rates only")


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
