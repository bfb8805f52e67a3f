"""Numba activations: each forward next to its derivative, both one pass over a row.

Design:

A. The forward adds the bias and applies the activation to one output row right after the
   row is computed, while it is hot in cache (:func:`bias_act_row`). Rows are indexed as
   ``out[i, c]``, never sliced: a view costs atomic reference counting in Numba.
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
def bias_act_row(out: np.ndarray, i: int, b: np.ndarray, act: int, slope: float) -> None:
    """out[i] = act(out[i] + b) in place, for one row of out (n, k); b (k,)."""
    k = out.shape[1]
    zero = out.dtype.type(0.0)
    if act == RELU:
        for c in range(k):
            z = out[i, c] + b[c]
            out[i, c] = zero if z < zero else z
    elif act == IDENTITY:
        for c in range(k):
            out[i, c] += b[c]
    elif act == LEAKY_RELU:
        s = out.dtype.type(slope)
        for c in range(k):
            z = out[i, c] + b[c]
            out[i, c] = z if z > zero else s * z
    elif act == SIGMOID:
        # The tanh form cannot overflow, unlike 1 / (1 + exp(-z)).
        half = out.dtype.type(0.5)
        for c in range(k):
            out[i, c] = half * (np.tanh(half * (out[i, c] + b[c])) + 1)
    elif act == TANH:
        for c in range(k):
            out[i, c] = np.tanh(out[i, c] + b[c])
    elif act == SOFTMAX and k > 0:
        top = out[i, 0] + b[0]
        for c in range(k):
            out[i, c] += b[c]
            top = max(top, out[i, c])
        total = zero
        for c in range(k):
            out[i, c] = np.exp(out[i, c] - top)
            total += out[i, c]
        for c in range(k):
            out[i, c] /= total


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
        if act == RELU:
            for c in range(k):
                grad[i, c] *= one if a[i, c] > zero else zero
        elif act == LEAKY_RELU:
            for c in range(k):
                grad[i, c] *= one if a[i, c] > zero else s
        elif act == SIGMOID:
            for c in range(k):
                grad[i, c] *= a[i, c] * (one - a[i, c])
        elif act == TANH:
            for c in range(k):
                grad[i, c] *= one - a[i, c] * a[i, c]
        elif act == SOFTMAX:
            dot = zero
            for c in range(k):
                dot += grad[i, c] * a[i, c]
            for c in range(k):
                grad[i, c] = (grad[i, c] - dot) * a[i, c]
        for c in range(k):
            db[c] += grad[i, c]
