"""Classification metrics on network outputs (shared by ``fit``, ``evaluate`` and ``predict``)."""

from __future__ import annotations

import numpy as np


def labels_of(probabilities: np.ndarray) -> np.ndarray:
    """Class labels (n,) from outputs (n, k): the arg-max, or ``p >= 0.5`` for one column."""
    if probabilities.shape[1] == 1:
        return (probabilities[:, 0] >= 0.5).astype(np.int64)
    return np.argmax(probabilities, axis=1)


def accuracy(outputs: np.ndarray, targets: np.ndarray, fused_sigmoid: bool) -> float:
    """Fraction of rows whose predicted class matches the target's class.

    Parameters
    ----------
    outputs : ndarray, shape (n, k)
        Logits or probabilities (the arg-max is the same).
    targets : ndarray, shape (n,) int class indices or (n, k) one-hot / probabilities
    fused_sigmoid : bool
        For one output column: True when ``outputs`` are logits of a fused sigmoid
        (thresholded at 0), False for probabilities (thresholded at 0.5).
    """
    if targets.ndim == 1:
        truth = targets
    elif targets.shape[1] == 1:
        truth = (targets[:, 0] >= 0.5).astype(np.int64)
    else:
        truth = np.argmax(targets, axis=1)
    if outputs.shape[1] == 1:
        cut = 0.0 if fused_sigmoid else 0.5
        pred = (outputs[:, 0] >= cut).astype(np.int64)
    else:
        pred = np.argmax(outputs, axis=1)
    return float(np.mean(pred == truth))
