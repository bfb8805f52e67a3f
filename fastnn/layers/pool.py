"""Max pooling: the largest value of each window, per channel (NCHW)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from .._validation import check_positive
from ..backends.workspace import LayerSlot
from .base import Layer, Shape, register_layer
from .conv import output_size


@register_layer
class MaxPool2D(Layer):
    """``out[i, c, y, x] = max of x[i, c]`` over the window at ``(stride y, stride x)``.

    Parameters
    ----------
    kernel_size : int, default 2
        Window height and width.
    stride : int, optional
        Step between windows; default ``kernel_size`` (windows that tile the image). It must
        divide ``H - kernel_size`` and ``W - kernel_size``.

    Notes
    -----
    Input (n, C, H, W), output (n, C, Ho, Wo) with ``Ho = (H - kernel_size) / stride + 1``.
    The backward pass sends each output's gradient to the input pixel that was its maximum
    (the first one on ties), which the forward pass records.
    """

    kind = "maxpool2d"

    def __init__(self, kernel_size: int = 2, stride: int | None = None) -> None:
        super().__init__()
        self.kernel_size = check_positive("kernel_size", kernel_size, integer=True)
        self.stride = (
            self.kernel_size if stride is None else check_positive("stride", stride, integer=True)
        )

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 3:
            raise ValueError(f"{self!r} expects images of shape (n, C, H, W), got "
                             f"(n, {', '.join(map(str, input_shape))})")  # fmt: skip
        c, h, w = input_shape
        k, s = self.kernel_size, self.stride
        return (c, output_size(h, k, s, 0, "height", self), output_size(w, k, s, 0, "width", self))

    def buffer_shapes(self, rows: int, act: int) -> dict[str, Any]:
        return {"argmax": ((rows, *self.output_shape), np.int64)}

    def forward_into(self, B: ModuleType, x: np.ndarray, slot: LayerSlot, n: int) -> None:
        B.maxpool2d_forward(
            x, self.kernel_size, self.stride, slot.output[:n], slot.buffers["argmax"][:n]
        )

    def backward_into(
        self, B: ModuleType, x: np.ndarray, slot: LayerSlot, n: int, grad_x: np.ndarray | None
    ) -> None:
        if grad_x is not None:
            B.maxpool2d_backward(slot.delta[:n], slot.buffers["argmax"][:n], grad_x)

    def config(self) -> dict[str, Any]:
        return {"kernel_size": self.kernel_size, "stride": self.stride}

    def describe(self) -> str:
        return f"MaxPool2D({self.kernel_size})"

    def __repr__(self) -> str:
        s = "" if self.stride == self.kernel_size else f", stride={self.stride}"
        return f"MaxPool2D({self.kernel_size}{s})"
