"""Numba activations: each forward next to its derivative, both one pass over a row.

Design:

A. The forward adds the bias and applies the activation to one output row right after the
   row is computed, while it is hot in cache (:func:`bias_act_row`).
B. The derivative is written from the stored output ``a`` (no pre-activation buffer), turns
   ``grad`` into ``delta`` in place and sums ``db`` in the same pass
   (:func:`act_backward_colsum`).
C. NaN handling follows the reference: ReLU passes NaN through (as ``np.maximum`` does) so a
   diverging network still shows a non-finite loss.
"""

from __future__ import annotations

import numpy as np

from .._codes import IDENTITY, LEAKY_RELU, RELU, SIGMOID, SOFTMAX, TANH
from ._jit import kernel


@kernel
def bias_act_row(row: np.ndarray, b: np.ndarray, act: int, slope: float) -> None:
    """row = act(row + b) in place, for one output row (k,); b (k,)."""
    k = row.shape[0]
    zero = row.dtype.type(0.0)
    if act == RELU:
        for c in range(k):
            z = row[c] + b[c]
            row[c] = zero if z < zero else z
    elif act == IDENTITY:
        for c in range(k):
            row[c] += b[c]
    elif act == LEAKY_RELU:
        s = row.dtype.type(slope)
        for c in range(k):
            z = row[c] + b[c]
            row[c] = z if z > zero else s * z
    elif act == SIGMOID:
        # The tanh form cannot overflow, unlike 1 / (1 + exp(-z)).
        half = row.dtype.type(0.5)
        for c in range(k):
            row[c] = half * (np.tanh(half * (row[c] + b[c])) + 1)
    elif act == TANH:
        for c in range(k):
            row[c] = np.tanh(row[c] + b[c])
    elif act == SOFTMAX and k > 0:
        top = row[0] + b[0]
        for c in range(k):
            row[c] += b[c]
            top = max(top, row[c])
        total = zero
        for c in range(k):
            row[c] = np.exp(row[c] - top)
            total += row[c]
        for c in range(k):
            row[c] /= total


@kernel
def act_backward_colsum(
    a: np.ndarray, grad: np.ndarray, act: int, slope: float, db: np.ndarray
) -> None:
    """grad (n, k): dL/da -> dL/dz in place, from a = act(z) (n, k); db (k,) = column sums."""
    n, k = grad.shape
    zero = grad.dtype.type(0.0)
    one = grad.dtype.type(1.0)
    s = grad.dtype.type(slope)
    for c in range(k):
        db[c] = zero
    for i in range(n):
        g = grad[i]
        ai = a[i]
        if act == RELU:
            for c in range(k):
                g[c] *= one if ai[c] > zero else zero
        elif act == LEAKY_RELU:
            for c in range(k):
                g[c] *= one if ai[c] > zero else s
        elif act == SIGMOID:
            for c in range(k):
                g[c] *= ai[c] * (one - ai[c])
        elif act == TANH:
            for c in range(k):
                g[c] *= one - ai[c] * ai[c]
        elif act == SOFTMAX:
            dot = zero
            for c in range(k):
                dot += g[c] * ai[c]
            for c in range(k):
                g[c] = (g[c] - dot) * ai[c]
        for c in range(k):
            db[c] += g[c]
