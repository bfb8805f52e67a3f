"""Slow, obviously right formulas of every activation an exporter knows (float64 NumPy).

Includes activations the installed fastnn may not have yet (gelu, gelu_tanh, silu, elu), so the
ONNX and PyTorch exporters are checked against the math itself, not only against fastnn.
Parameters: leaky_relu slope 0.2, elu alpha 0.7 (the tests set the layers to these).
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

NEGATIVE_SLOPE = 0.2
ALPHA = 0.7

REFERENCE = {
    "identity": lambda z: z,
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0),
    "leaky_relu": lambda z: np.where(z > 0, z, NEGATIVE_SLOPE * z),
    "softmax": lambda z: np.exp(z) / np.exp(z).sum(axis=1, keepdims=True),
    "gelu": lambda z: 0.5 * z * (1 + erf(z / np.sqrt(2))),
    "gelu_tanh": lambda z: 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3))),
    "silu": lambda z: z / (1 + np.exp(-z)),
    "elu": lambda z: np.where(z > 0, z, ALPHA * np.expm1(np.minimum(z, 0))),
}
