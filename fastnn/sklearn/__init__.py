"""scikit-learn estimators trained by fastnn's compiled kernels: change one import line.

::

    from fastnn.sklearn import MLPClassifier   # was: from sklearn.neural_network import ...

``MLPClassifier`` and ``MLPRegressor`` take scikit-learn's parameters (plus ``activation=
"leaky_relu"``, ``batch_size="full"``, ``backend`` and ``dtype``), expose the same fitted
attributes, and work in pipelines, grid searches and cross-validation. They need scikit-learn
(``pip install fastnn[sklearn]``); the rest of fastnn never imports it.
"""

from __future__ import annotations

import re

_NEEDS = "fastnn.sklearn needs scikit-learn >= 1.6: pip install 'fastnn[sklearn]'"
try:
    import sklearn  # absolute import: scikit-learn itself, not this package
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(_NEEDS) from exc
# validate_data and __sklearn_tags__ arrived in scikit-learn 1.6.
_version = re.match(r"(\d+)\.(\d+)", sklearn.__version__)
if _version is None or tuple(map(int, _version.groups())) < (1, 6):  # pragma: no cover
    raise ImportError(f"{_NEEDS} (found {sklearn.__version__})")

from fastnn.sklearn._estimators import MLPClassifier, MLPRegressor  # noqa: E402

__all__ = ["MLPClassifier", "MLPRegressor"]
