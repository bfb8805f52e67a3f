"""Flatten: images (n, C, H, W) to rows (n, C*H*W), for the dense layers after a CNN."""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np

from ..backends.workspace import LayerSlot
from .base import Layer, Shape, register_layer


@register_layer
class Flatten(Layer):
    """``out = x.reshape(n, -1)``: every sample becomes one row, in C order (channel, row,
    column), as PyTorch's ``nn.Flatten``. The backward pass reshapes the gradient back.

    A copy into the layer's buffer, no kernel: it moves n*C*H*W values, nothing to compile.
    """

    kind = "flatten"

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (math.prod(input_shape),)

    def forward_into(self, B: ModuleType, x: np.ndarray, slot: LayerSlot, n: int) -> None:
        slot.output[:n] = x.reshape(n, -1)

    def backward_into(
        self, B: ModuleType, x: np.ndarray, slot: LayerSlot, n: int, grad_x: np.ndarray | None
    ) -> None:
        if grad_x is not None:
            grad_x[...] = slot.delta[:n].reshape(grad_x.shape)

    def config(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        return "Flatten()"
