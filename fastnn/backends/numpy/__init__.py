"""The reference backend: plain NumPy, written to be read.

This is both the fallback that works wherever NumPy does and the yardstick every compiled
backend is tested and timed against. Each docstring carries the formula; every function follows
the kernel contract of :mod:`fastnn.backends` (caller-owned ``out`` buffers, no allocation of
results). The modules mirror the compiled backends' packages: ``activations``, ``dense``,
``conv`` (convolution and pooling), ``losses``, ``optim``, ``epoch``.
"""

from __future__ import annotations

from .activations import activation_backward, activation_forward
from .conv import (
    conv2d_backward,
    conv2d_forward,
    conv2d_maxpool_backward,
    conv2d_maxpool_forward,
    maxpool2d_backward,
    maxpool2d_forward,
)  # fmt: skip
from .dense import dense_backward, dense_forward
from .epoch import train_epoch
from .losses import (
    binary_cross_entropy,
    kl_divergence,
    mse,
    softmax_cross_entropy,
    softmax_cross_entropy_soft,
)
from .optim import adam_update, momentum_update, sgd_update

NAME = "numpy"
#: Layer kinds ``train_epoch`` runs (the reference runs every layer through the per-batch loop).
FUSED_LAYERS: frozenset[str] = frozenset({"dense"})
# The yardstick runs every layer on its own (its composed pair is no faster).
FUSED_PAIRS: frozenset[tuple[str, str]] = frozenset()

__all__ = [
    "NAME", "FUSED_LAYERS", "FUSED_PAIRS", "activation_backward", "activation_forward",
    "adam_update",
    "binary_cross_entropy", "conv2d_backward", "conv2d_forward", "conv2d_maxpool_backward",
    "conv2d_maxpool_forward", "dense_backward",
    "dense_forward", "kl_divergence", "maxpool2d_backward", "maxpool2d_forward",
    "momentum_update", "mse", "sgd_update", "softmax_cross_entropy",
    "softmax_cross_entropy_soft", "train_epoch",
]  # fmt: skip
