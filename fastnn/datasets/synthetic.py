"""Small generated data sets for examples, tests and quick experiments."""

from __future__ import annotations

import numpy as np


def make_blobs(
    n_samples: int = 300,
    n_features: int = 8,
    n_classes: int = 3,
    spread: float = 2.0,
    seed: int | None = 0,
    dtype: str = "float64",
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters, one per class: a learnable classification problem.

    Each class has a random center ``spread * N(0, I)``; each sample is its class's center plus
    ``N(0, I)`` noise. A larger ``spread`` separates the classes more.

    Parameters
    ----------
    n_samples, n_features, n_classes : int
    spread : float, default 2.0
        Scale of the class centers relative to the unit noise.
    seed : int or None
    dtype : {"float64", "float32"}

    Returns
    -------
    X : ndarray, shape (n_samples, n_features)
    y : ndarray of int64, shape (n_samples,)
        Labels in 0 .. n_classes - 1.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n_samples)
    centers = rng.standard_normal((n_classes, n_features)) * spread
    X = centers[y] + rng.standard_normal((n_samples, n_features))
    return X.astype(dtype, copy=False), y.astype(np.int64)
