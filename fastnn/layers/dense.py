"""The dense (fully connected) layer: neurons, each with its weights, its bias and an activation."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from .. import _codes as C
from .._validation import check_positive
from ..backends.workspace import LayerSlot
from ._activated import ActivatedLayer
from .base import Shape, register_layer

#: Every activation name a layer accepts (the registry the tests loop over).
ACTIVATIONS: tuple[str, ...] = tuple(C.ACTIVATION_CODES)


@register_layer
class Dense(ActivatedLayer):
    """A fully connected layer: ``out = activation(x @ W + b)``.

    Each of the ``out_features`` neurons holds one column of ``W`` (its weights, one per input)
    and one entry of ``b`` (its bias).

    Parameters
    ----------
    in_features : int
        Inputs per sample, d.
    out_features : int
        Neurons in the layer, k.
    activation : str or None
        One of ``fastnn.layers.ACTIVATIONS``: None or "identity", "sigmoid", "tanh", "relu",
        "leaky_relu", "softmax" (per row), "gelu" (exact, ``z Phi(z)`` with the normal CDF
        Phi, as PyTorch's default), "gelu_tanh" (the tanh approximation, PyTorch's
        ``approximate="tanh"``), "silu" (``z sigmoid(z)``, also called swish), "elu".
    init : {"auto", "he", "xavier", "normal"}
        Weight initialisation; biases start at zero.
    negative_slope : float, default 0.01
        Slope of leaky ReLU for z < 0 (>= 0, so its derivative is written from its output).
    alpha : float, default 1.0
        ELU's ``alpha``: ``elu(z) = alpha (exp(z) - 1)`` for z <= 0 (> 0).

    Attributes
    ----------
    W : ndarray, shape (in_features, out_features)
    b : ndarray, shape (out_features,)
    dW, db : ndarray or None
        Gradients of the loss with respect to ``W`` and ``b`` after ``backward``.
    """

    kind = "dense"
    param_names = ("W", "b")

    def __init__(
        self,
        in_features: int,
        out_features: int,
        activation: str | None = None,
        init: str = "auto",
        negative_slope: float = 0.01,
        alpha: float = 1.0,
    ) -> None:
        super().__init__(activation, init, negative_slope, alpha)
        self.in_features = check_positive("in_features", in_features, integer=True)
        self.out_features = check_positive("out_features", out_features, integer=True)
        self.W: np.ndarray | None = None
        self.b: np.ndarray | None = None
        self.dW: np.ndarray | None = None
        self.db: np.ndarray | None = None

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        if input_shape != (self.in_features,):
            hint = " (add a Flatten() before it)" if len(input_shape) > 1 else ""
            raise ValueError(
                f"{self!r} expects inputs of shape (n, {self.in_features}), got "
                f"(n, {', '.join(map(str, input_shape))}){hint}"
            )
        return (self.out_features,)

    def init_params(self, rng: np.random.Generator, dtype: np.dtype) -> None:
        """Draw ``W`` with the layer's init scheme and zero ``b``."""
        d, k = self.in_features, self.out_features
        self.W = np.ascontiguousarray(self.draw_weights(rng, (d, k), d, k), dtype=dtype)
        self.b = np.zeros(k, dtype=dtype)

    def initialize(self, rng: np.random.Generator, dtype: np.dtype) -> None:
        """Build for inputs of ``in_features`` and draw the parameters."""
        self.build((self.in_features,), rng, dtype)

    def forward_into(self, B: ModuleType, x: np.ndarray, slot: LayerSlot, n: int) -> None:
        W, b = slot.params
        z = slot.buffers.get("z")
        B.dense_forward(
            x, W, b, slot.act, self.act_alpha, None if z is None else z[:n], slot.output[:n]
        )

    def backward_into(
        self, B: ModuleType, x: np.ndarray, slot: LayerSlot, n: int, grad_x: np.ndarray | None
    ) -> None:
        W, _ = slot.params
        z = slot.buffers.get("z")
        dW, db = slot.grads
        B.dense_backward(
            x, W, None if z is None else z[:n], slot.output[:n], slot.delta[:n], slot.act,
            self.act_alpha, dW, db, grad_x,
        )  # fmt: skip

    def config(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features,
                **self.activation_config()}  # fmt: skip

    def describe(self) -> str:
        return f"Dense({self.activation})"

    def __repr__(self) -> str:
        return f"Dense({self.in_features}, {self.out_features}, activation={self.activation!r})"
