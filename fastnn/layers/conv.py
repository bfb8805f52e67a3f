"""The 2-D convolution layer: filters slid over images (NCHW, PyTorch's weight layout)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from .._codes import NEEDS_PREACTIVATION
from .._validation import check_positive
from ..backends.workspace import LayerSlot
from ._activated import ActivatedLayer
from .base import Layer, Shape, register_layer


def output_size(size: int, kernel: int, stride: int, padding: int, what: str, layer: Any) -> int:
    """``(size + 2 padding - kernel) / stride + 1``, or a ValueError naming ``layer``."""
    span = size + 2 * padding - kernel
    if span < 0:
        raise ValueError(
            f"{layer!r}: kernel {kernel} is larger than the {what} {size}"
            + (f" plus padding 2 x {padding}" if padding else "")
        )
    if span % stride:
        raise ValueError(
            f"{layer!r}: stride {stride} does not divide the {what} {size}"
            + (f" + 2 x padding {padding}" if padding else "")
            + f" - kernel {kernel} = {span}; change the stride, the padding or the input size"
        )
    return span // stride + 1


@register_layer
class Conv2D(ActivatedLayer):
    """A 2-D convolution: ``out[f] = activation(sum_c W[f, c] * x[c] + b[f])`` over each image.

    Each of the ``out_channels`` filters holds ``W[f]`` of shape (in_channels, kh, kw) and a
    bias ``b[f]``; it is slid over the input (a cross-correlation, as in PyTorch) with the given
    stride, after zero padding.

    Parameters
    ----------
    in_channels : int
        Channels C of the input images (n, C, H, W).
    out_channels : int
        Filters F: channels of the output (n, F, Ho, Wo).
    kernel_size : int or (int, int)
        Filter height and width (kh, kw).
    stride : int, default 1
        Step between two positions; it must divide ``H + 2 padding - kh`` (and likewise for
        the width), so that no pixel is silently dropped.
    padding : int, default 0
        Zeros added on each side of H and W.
    activation : str or None
        Any of ``fastnn.layers.ACTIVATIONS`` except softmax.
    init : {"auto", "he", "xavier", "normal"}
        Weight initialisation from fan_in = C kh kw and fan_out = F kh kw; biases start at 0.
    negative_slope, alpha : float
        Leaky ReLU's slope and ELU's alpha, as for :class:`fastnn.Dense`.

    Attributes
    ----------
    W : ndarray, shape (out_channels, in_channels, kh, kw)
        PyTorch's layout: weights move between the two libraries without transposes.
    b : ndarray, shape (out_channels,)
    dW, db : ndarray or None
        Gradients after ``backward``.

    Notes
    -----
    Output size: ``Ho = (H + 2 padding - kh) / stride + 1``, ``Wo`` likewise.
    """

    kind = "conv2d"
    param_names = ("W", "b")
    refused_activations = ("softmax",)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        padding: int = 0,
        activation: str | None = None,
        init: str = "auto",
        negative_slope: float = 0.01,
        alpha: float = 1.0,
    ) -> None:
        super().__init__(activation, init, negative_slope, alpha)
        self.in_channels = check_positive("in_channels", in_channels, integer=True)
        self.out_channels = check_positive("out_channels", out_channels, integer=True)
        ks = kernel_size if isinstance(kernel_size, (tuple, list)) else (kernel_size, kernel_size)
        if len(ks) != 2:
            raise ValueError(f"kernel_size must be an int or a pair, got {kernel_size!r}")
        self.kernel_size = tuple(check_positive("kernel_size", k, integer=True) for k in ks)
        self.stride = check_positive("stride", stride, integer=True)
        self.padding = check_positive("padding", padding, integer=True, allow_zero=True)
        self.W: np.ndarray | None = None
        self.b: np.ndarray | None = None
        self.dW: np.ndarray | None = None
        self.db: np.ndarray | None = None

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 3:
            raise ValueError(
                f"{self!r} expects images of shape (n, C, H, W) with C = {self.in_channels}, got "
                f"(n, {', '.join(map(str, input_shape))}); reshape flat pixels to "
                f"(n, {self.in_channels}, H, W) (load_mnist(shape='images') gives (n, 1, 28, 28))"
            )
        c, h, w = input_shape
        if c != self.in_channels:
            raise ValueError(
                f"{self!r} expects {self.in_channels} input channels, got {c} "
                f"(input shape (n, {c}, {h}, {w}))"
            )
        kh, kw = self.kernel_size
        ho = output_size(h, kh, self.stride, self.padding, "height", self)
        wo = output_size(w, kw, self.stride, self.padding, "width", self)
        return (self.out_channels, ho, wo)

    def init_params(self, rng: np.random.Generator, dtype: np.dtype) -> None:
        """Draw ``W`` with the layer's init scheme and zero ``b``."""
        kh, kw = self.kernel_size
        f, c = self.out_channels, self.in_channels
        W = self.draw_weights(rng, (f, c, kh, kw), c * kh * kw, f * kh * kw)
        self.W = np.ascontiguousarray(W, dtype=dtype)
        self.b = np.zeros(f, dtype=dtype)

    def forward_into(self, B: ModuleType, x: np.ndarray, slot: LayerSlot, n: int) -> None:
        W, b = slot.params
        z = slot.buffers.get("z")
        B.conv2d_forward(
            x, W, b, self.stride, self.padding, slot.act, self.act_alpha,
            None if z is None else z[:n], slot.output[:n],
        )  # fmt: skip

    def backward_into(
        self, B: ModuleType, x: np.ndarray, slot: LayerSlot, n: int, grad_x: np.ndarray | None
    ) -> None:
        W, _ = slot.params
        z = slot.buffers.get("z")
        dW, db = slot.grads
        B.conv2d_backward(
            x, W, None if z is None else z[:n], slot.output[:n], slot.delta[:n], self.stride,
            self.padding, slot.act, self.act_alpha, dW, db, grad_x,
        )  # fmt: skip

    def fuses_with(self, following: Layer) -> bool:
        """A max pooling right after this convolution runs with it as one call
        (``conv2d_maxpool_*``), unless the activation's derivative needs z."""
        return following.kind == "maxpool2d" and self.act_code not in NEEDS_PREACTIVATION

    def forward_fused_into(
        self, B: ModuleType, x: np.ndarray, slot: LayerSlot, following: Layer,
        following_slot: LayerSlot, n: int,
    ) -> None:  # fmt: skip
        W, b = slot.params
        B.conv2d_maxpool_forward(
            x, W, b, self.stride, self.padding, slot.act, self.act_alpha,
            following.kernel_size, following.stride, following_slot.output[:n],
            following_slot.buffers["argmax"][:n],
        )  # fmt: skip

    def backward_fused_into(
        self, B: ModuleType, x: np.ndarray, slot: LayerSlot, following: Layer,
        following_slot: LayerSlot, n: int, grad_x: np.ndarray | None,
    ) -> None:  # fmt: skip
        W, _ = slot.params
        dW, db = slot.grads
        B.conv2d_maxpool_backward(
            x, W, following_slot.output[:n], following_slot.buffers["argmax"][:n],
            following_slot.delta[:n], self.stride, self.padding, slot.act, self.act_alpha,
            dW, db, grad_x,
        )  # fmt: skip

    def config(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": self.stride,
                "padding": self.padding, **self.activation_config()}  # fmt: skip

    def describe(self) -> str:
        kh, kw = self.kernel_size
        return f"Conv2D({kh}x{kw}, {self.activation})"

    def __repr__(self) -> str:
        k = self.kernel_size[0] if self.kernel_size[0] == self.kernel_size[1] else self.kernel_size
        extra = "".join(
            f", {name}={value}" for name, value, default in
            (("stride", self.stride, 1), ("padding", self.padding, 0)) if value != default
        )  # fmt: skip
        return f"Conv2D({self.in_channels}, {self.out_channels}, {k}{extra})"
