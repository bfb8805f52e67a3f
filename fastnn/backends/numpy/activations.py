"""Activations of the reference backend: each forward next to its derivative.

Notation: ``z`` the pre-activation, ``a = act(z)`` the activation, ``alpha`` the activation
parameter (leaky ReLU's negative slope, ELU's alpha; the others ignore it). Every derivative is
written from ``a`` where ``a`` determines it (scikit-learn's way: no extra buffer); GELU and SiLU
need ``z`` (``fastnn._codes.NEEDS_PREACTIVATION``), and only for those the kernels keep it.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erf

from ... import _codes as C

SQRT_HALF = math.sqrt(0.5)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
GELU_CUBIC = 0.044715


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # 1 / (1 + exp(-z)) overflows for z << 0; the tanh form is stable everywhere.
    return 0.5 * (np.tanh(0.5 * z) + 1.0)


def activation_forward(z: np.ndarray, act: int, alpha: float) -> None:
    """Apply the activation to ``z`` (n, k) in place.

    identity: a = z;  sigmoid: a = 1 / (1 + exp(-z));  tanh: a = tanh(z);
    relu: a = max(z, 0);  leaky_relu: a = z if z > 0 else alpha z;
    softmax (per row): a_j = exp(z_j - max z) / sum_i exp(z_i - max z);
    gelu: a = z Phi(z), Phi(z) = (1 + erf(z / sqrt 2)) / 2;
    gelu_tanh: a = z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3))) / 2;
    silu: a = z sigmoid(z);  elu: a = z if z > 0 else alpha (exp(z) - 1).
    """
    if act == C.IDENTITY:
        return
    if act == C.SIGMOID:
        # In place, with no temporaries: the tanh form of 1 / (1 + exp(-z)).
        np.multiply(z, 0.5, out=z)
        np.tanh(z, out=z)
        z += 1.0
        z *= 0.5
    elif act == C.TANH:
        np.tanh(z, out=z)
    elif act == C.RELU:
        np.maximum(z, 0, out=z)
    elif act == C.LEAKY_RELU:
        np.multiply(z, np.where(z > 0, 1.0, alpha).astype(z.dtype), out=z)
    elif act == C.SOFTMAX:
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
    elif act == C.GELU:
        z[...] = 0.5 * z * (1.0 + erf(z * SQRT_HALF))
    elif act == C.GELU_TANH:
        z[...] = 0.5 * z * (1.0 + np.tanh(SQRT_2_OVER_PI * (z + GELU_CUBIC * z**3)))
    elif act == C.SILU:
        z[...] = z * _sigmoid(z)
    elif act == C.ELU:
        z[...] = np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0)))
    else:
        raise ValueError(f"unknown activation code {act}")


def activation_backward(
    z: np.ndarray | None, a: np.ndarray, grad: np.ndarray, act: int, alpha: float
) -> None:
    """Turn dL/da into dL/dz in ``grad`` (n, k), in place.

    From the output ``a``: identity 1;  sigmoid a (1 - a);  tanh 1 - a^2;  relu [a > 0];
    leaky_relu 1 if a > 0 else alpha;  elu 1 if a > 0 else a + alpha;
    softmax dz = a * (g - sum_j g_j a_j) (a Jacobian-vector product).
    From the pre-activation ``z`` (given only for these):
    gelu Phi(z) + z phi(z), phi(z) = exp(-z^2 / 2) / sqrt(2 pi);
    gelu_tanh (1 + t) / 2 + z (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 z^2) / 2,
    t = tanh(sqrt(2/pi) (z + 0.044715 z^3));  silu s (1 + z (1 - s)), s = sigmoid(z).
    """
    if act == C.IDENTITY:
        return
    if act == C.SIGMOID:
        grad *= a * (1 - a)
    elif act == C.TANH:
        grad *= 1 - a * a
    elif act == C.RELU:
        grad *= a > 0
    elif act == C.LEAKY_RELU:
        grad *= np.where(a > 0, 1.0, alpha).astype(grad.dtype)
    elif act == C.ELU:
        grad *= np.where(a > 0, 1.0, a + alpha).astype(grad.dtype)
    elif act == C.SOFTMAX:
        grad -= (grad * a).sum(axis=1, keepdims=True)
        grad *= a
    elif act == C.GELU:
        grad *= 0.5 * (1.0 + erf(z * SQRT_HALF)) + z * INV_SQRT_2PI * np.exp(-0.5 * z * z)
    elif act == C.GELU_TANH:
        t = np.tanh(SQRT_2_OVER_PI * (z + GELU_CUBIC * z**3))
        grad *= 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * SQRT_2_OVER_PI * (
            1 + 3 * GELU_CUBIC * z * z
        )
    elif act == C.SILU:
        s = _sigmoid(z)
        grad *= s * (1 + z * (1 - s))
    else:
        raise ValueError(f"unknown activation code {act}")
