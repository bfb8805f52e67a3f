"""scikit-learn estimators trained by fastnn's compiled kernels: change one import line.

::

    from fastnn.sklearn import MLPClassifier   # was: from sklearn.neural_network import ...

``MLPClassifier`` and ``MLPRegressor`` take scikit-learn's parameters (plus ``activation=
"leaky_relu"``, ``batch_size="full"``, ``backend`` and ``dtype``), expose the same fitted
attributes, and work in pipelines, grid searches and cross-validation. They need scikit-learn
(``pip install fastnn[sklearn]``); the rest of fastnn never imports it.
"""

from __future__ import annotations

try:
    import sklearn  # noqa: F401  (absolute import: scikit-learn itself, not this package)
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "fastnn.sklearn needs scikit-learn >= 1.6: pip install 'fastnn[sklearn]'"
    ) from exc

from fastnn.sklearn._estimators import MLPClassifier, MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]


def register_bench_impls(register) -> None:  # noqa: ANN001
    """Hook of ``fastnn bench``: adds the "fastnn-sklearn" row (``--peers fastnn-sklearn``).

    The row lives in :mod:`fastnn.bench.peer_fastnn_sklearn`, imported only by the benchmark.
    """
    from fastnn.bench.peer_fastnn_sklearn import register_bench_impls as register_row

    register_row(register)
