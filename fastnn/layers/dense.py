"""The dense (fully connected) layer: neurons, each with its weights, its bias and an activation."""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np

from .. import _codes as C
from .._validation import check_choice, check_positive
from ..backends.workspace import LayerSlot
from .base import Layer, Shape, register_layer

#: Every activation name a layer accepts (the registry the tests loop over).
ACTIVATIONS: tuple[str, ...] = tuple(C.ACTIVATION_CODES)
INITS: dict[str, str] = {
    "auto": "He for the ReLU family, Xavier (Glorot) otherwise",
    "he": "normal, std = sqrt(2 / in_features): keeps ReLU activations from shrinking",
    "xavier": "uniform in ±sqrt(6 / (in + out)): keeps sigmoid/tanh in their sensitive range",
    "normal": "normal, std = 0.01: the naive choice, to see vanishing gradients happen",
}
#: Piecewise-linear units whose zero outputs mean dead units (the diagnostics watch them).
RELU_FAMILY = ("relu", "leaky_relu")
#: Activations that pass large positive inputs through about unchanged: He init suits them.
HE_INIT = (*RELU_FAMILY, "elu", "gelu", "gelu_tanh", "silu")


@register_layer
class Dense(Layer):
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
        super().__init__()
        self.in_features = check_positive("in_features", in_features, integer=True)
        self.out_features = check_positive("out_features", out_features, integer=True)
        name = "identity" if activation is None else activation
        self.activation = check_choice("activation", name, C.ACTIVATION_CODES)
        self.init = check_choice("init", init, INITS)
        self.negative_slope = check_positive("negative_slope", negative_slope, allow_zero=True)
        self.alpha = check_positive("alpha", alpha)
        self.W: np.ndarray | None = None
        self.b: np.ndarray | None = None
        self.dW: np.ndarray | None = None
        self.db: np.ndarray | None = None

    @property
    def act_code(self) -> int:  # type: ignore[override]
        return C.ACTIVATION_CODES[self.activation]

    @property
    def act_alpha(self) -> float:  # type: ignore[override]
        """The activation parameter the kernels take: the slope of leaky ReLU, ELU's alpha."""
        if self.activation == "elu":
            return self.alpha
        return self.negative_slope if self.activation == "leaky_relu" else 0.0

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
        scheme = self.init
        if scheme == "auto":
            scheme = "he" if self.activation in HE_INIT else "xavier"
        if scheme == "he":
            W = rng.standard_normal((d, k)) * math.sqrt(2.0 / d)
        elif scheme == "xavier":
            limit = math.sqrt(6.0 / (d + k))
            W = rng.uniform(-limit, limit, (d, k))
        else:
            W = rng.standard_normal((d, k)) * 0.01
        self.W = np.ascontiguousarray(W, dtype=dtype)
        self.b = np.zeros(k, dtype=dtype)

    def initialize(self, rng: np.random.Generator, dtype: np.dtype) -> None:
        """Build for inputs of ``in_features`` and draw the parameters."""
        self.build((self.in_features,), rng, dtype)

    def buffer_shapes(self, rows: int, act: int) -> dict[str, Shape]:
        # Only the activations whose derivative needs z keep it.
        return {"z": (rows, self.out_features)} if act in C.NEEDS_PREACTIVATION else {}

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
        cfg = {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "activation": self.activation,
            "init": self.init,
            "negative_slope": self.negative_slope,
        }
        if self.activation == "elu":
            cfg["alpha"] = self.alpha
        return cfg

    def describe(self) -> str:
        return f"Dense({self.activation})"

    def __repr__(self) -> str:
        return f"Dense({self.in_features}, {self.out_features}, activation={self.activation!r})"
