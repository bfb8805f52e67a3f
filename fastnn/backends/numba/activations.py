"""Numba activations: each forward next to its derivative, both one pass over a row.

Formulas: :mod:`fastnn.backends.numpy.activations` (the reference).

Design:

A. The forward adds the bias and applies the activation to one output row right after the
   row is computed, while it is hot in cache (:func:`bias_act_row`). Rows are indexed as
   ``out[i, c]``, never sliced: a view costs atomic reference counting in Numba.
B. Only gelu, gelu_tanh and silu (``NEEDS_PREACTIVATION``) write ``z`` (the pre-activation,
   kept for their derivative); every other activation leaves ``z`` alone, which is then a
   (0, k) placeholder of the same type, so one compiled specialization serves both.
C. The derivative turns ``grad`` into ``delta`` in place and adds the row into ``db`` in the
   same pass (:func:`act_backward_row`), from the stored output ``a`` where ``a`` determines
   it (elu too: a' = a + alpha below zero), from ``z`` for the three others.
D. Arithmetic stays in the array dtype (constants are cast first): a float64 literal would
   promote float32 rows to float64 and stop the loops from vectorizing.
E. NaN handling follows the reference: ReLU passes NaN through (as ``np.maximum`` does) so a
   diverging network still shows a non-finite loss.
"""

from __future__ import annotations

import math

import numpy as np

from ..._codes import (
    ELU,
    GELU,
    GELU_TANH,
    IDENTITY,
    LEAKY_RELU,
    RELU,
    SIGMOID,
    SILU,
    SOFTMAX,
    TANH,
)
from .jit import kernel

SQRT_HALF = math.sqrt(0.5)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
GELU_CUBIC = 0.044715


@kernel
def _softmax_row(out: np.ndarray, i: int, b: np.ndarray) -> None:
    k = out.shape[1]
    top = out[i, 0] + b[0]
    for c in range(k):
        out[i, c] += b[c]
        top = max(top, out[i, c])
    total = out.dtype.type(0.0)
    for c in range(k):
        out[i, c] = np.exp(out[i, c] - top)
        total += out[i, c]
    for c in range(k):
        out[i, c] /= total


@kernel
def _preact_row(out: np.ndarray, z: np.ndarray, i: int, b: np.ndarray, act: int) -> None:
    """z[i] = out[i] + b, then out[i] = act(z[i]) for gelu, gelu_tanh and silu."""
    k = out.shape[1]
    dt = out.dtype.type
    half, one = dt(0.5), dt(1.0)
    if act == GELU:
        r = dt(SQRT_HALF)
        for c in range(k):
            v = out[i, c] + b[c]
            z[i, c] = v
            out[i, c] = half * v * (one + math.erf(v * r))
    elif act == GELU_TANH:
        s, cubic = dt(SQRT_2_OVER_PI), dt(GELU_CUBIC)
        for c in range(k):
            v = out[i, c] + b[c]
            z[i, c] = v
            out[i, c] = half * v * (one + np.tanh(s * (v + cubic * v * v * v)))
    elif act == SILU:
        for c in range(k):
            v = out[i, c] + b[c]
            z[i, c] = v
            out[i, c] = v * (half * (np.tanh(half * v) + one))


@kernel
def bias_act_row(
    out: np.ndarray, z: np.ndarray, i: int, b: np.ndarray, act: int, alpha: float
) -> None:
    """out[i] = act(out[i] + b) in place, for one row of out (n, k); b (k,).

    z (n, k) receives out[i] + b for the activations that need it (Design B), else unused.
    """
    k = out.shape[1]
    dt = out.dtype.type
    zero, half, one = dt(0.0), dt(0.5), dt(1.0)
    if act == RELU:
        for c in range(k):
            v = out[i, c] + b[c]
            out[i, c] = zero if v < zero else v
    elif act == IDENTITY:
        for c in range(k):
            out[i, c] += b[c]
    elif act == LEAKY_RELU:
        s = dt(alpha)
        for c in range(k):
            v = out[i, c] + b[c]
            out[i, c] = v if v > zero else s * v
    elif act == SIGMOID:
        # The tanh form cannot overflow, unlike 1 / (1 + exp(-z)).
        for c in range(k):
            out[i, c] = half * (np.tanh(half * (out[i, c] + b[c])) + one)
    elif act == TANH:
        for c in range(k):
            out[i, c] = np.tanh(out[i, c] + b[c])
    elif act == ELU:
        s = dt(alpha)
        for c in range(k):
            v = out[i, c] + b[c]
            out[i, c] = v if v > zero else s * math.expm1(v)
    elif act == SOFTMAX and k > 0:
        _softmax_row(out, i, b)
    elif act == GELU or act == GELU_TANH or act == SILU:
        _preact_row(out, z, i, b, act)


@kernel
def _preact_backward_row(z: np.ndarray, grad: np.ndarray, i: int, act: int) -> None:
    """grad[i] *= act'(z[i]) for gelu, gelu_tanh and silu."""
    k = grad.shape[1]
    dt = grad.dtype.type
    half, one = dt(0.5), dt(1.0)
    if act == GELU:
        r, inv = dt(SQRT_HALF), dt(INV_SQRT_2PI)
        for c in range(k):
            v = z[i, c]
            grad[i, c] *= half * (one + math.erf(v * r)) + v * inv * np.exp(-half * v * v)
    elif act == GELU_TANH:
        s, cubic, cubic3 = dt(SQRT_2_OVER_PI), dt(GELU_CUBIC), dt(3.0 * GELU_CUBIC)
        for c in range(k):
            v = z[i, c]
            t = np.tanh(s * (v + cubic * v * v * v))
            grad[i, c] *= half * (one + t) + half * v * (one - t * t) * s * (one + cubic3 * v * v)
    elif act == SILU:
        for c in range(k):
            v = z[i, c]
            sg = half * (np.tanh(half * v) + one)
            grad[i, c] *= sg * (one + v * (one - sg))


@kernel
def act_backward_row(
    z: np.ndarray,
    a: np.ndarray,
    grad: np.ndarray,
    i: int,
    act: int,
    alpha: float,
    db: np.ndarray,
) -> None:
    """grad[i]: dL/da -> dL/dz in place, from a = act(z) (n, k) or z (n, k) (Design C);
    then db (k,) += grad[i]."""
    k = grad.shape[1]
    dt = grad.dtype.type
    zero, one = dt(0.0), dt(1.0)
    s = dt(alpha)
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
    elif act == ELU:
        for c in range(k):
            grad[i, c] *= one if a[i, c] > zero else a[i, c] + s
    elif act == SOFTMAX:
        dot = zero
        for c in range(k):
            dot += grad[i, c] * a[i, c]
        for c in range(k):
            grad[i, c] = (grad[i, c] - dot) * a[i, c]
    elif act == GELU or act == GELU_TANH or act == SILU:
        _preact_backward_row(z, grad, i, act)
    for c in range(k):
        db[c] += grad[i, c]
