"""What Dense and Conv2D share: an activation (with its parameter), weights drawn by an
init scheme from the layer's fan-in and fan-out, and a ``z`` buffer only where needed."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _codes as C
from .._validation import check_choice, check_positive
from .base import Layer

INITS: dict[str, str] = {
    "auto": "He for the ReLU family, Xavier (Glorot) otherwise",
    "he": "normal, std = sqrt(2 / fan_in): keeps ReLU activations from shrinking",
    "xavier": "uniform in ±sqrt(6 / (fan_in + fan_out)): keeps sigmoid/tanh in their "
    "sensitive range",
    "normal": "normal, std = 0.01: the naive choice, to see vanishing gradients happen",
}
#: Piecewise-linear units whose zero outputs mean dead units (the diagnostics watch them).
RELU_FAMILY = ("relu", "leaky_relu")
#: Activations that pass large positive inputs through about unchanged: He init suits them.
HE_INIT = (*RELU_FAMILY, "elu", "gelu", "gelu_tanh", "silu")


class ActivatedLayer(Layer):
    """Base of the layers that compute ``activation(linear map of x + b)``."""

    #: Activations this layer kind refuses (a convolution has no softmax over its pixels).
    refused_activations: tuple[str, ...] = ()

    def __init__(
        self, activation: str | None, init: str, negative_slope: float, alpha: float
    ) -> None:
        super().__init__()
        name = "identity" if activation is None else activation
        self.activation = check_choice("activation", name, C.ACTIVATION_CODES)
        if self.activation in self.refused_activations:
            raise ValueError(f"{type(self).__name__} does not take activation {name!r}")
        self.init = check_choice("init", init, INITS)
        self.negative_slope = check_positive("negative_slope", negative_slope, allow_zero=True)
        self.alpha = check_positive("alpha", alpha)

    @property
    def act_code(self) -> int:  # type: ignore[override]
        return C.ACTIVATION_CODES[self.activation]

    @property
    def act_alpha(self) -> float:  # type: ignore[override]
        """The activation parameter the kernels take: the slope of leaky ReLU, ELU's alpha."""
        if self.activation == "elu":
            return self.alpha
        return self.negative_slope if self.activation == "leaky_relu" else 0.0

    def draw_weights(
        self, rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int
    ) -> np.ndarray:
        """Initial weights of ``shape`` by the layer's init scheme (float64; caller casts)."""
        scheme = self.init
        if scheme == "auto":
            scheme = "he" if self.activation in HE_INIT else "xavier"
        if scheme == "he":
            return rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)
        if scheme == "xavier":
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            return rng.uniform(-limit, limit, shape)
        return rng.standard_normal(shape) * 0.01

    def buffer_shapes(self, rows: int, act: int) -> dict[str, Any]:
        # Only the activations whose derivative needs z keep it.
        if act in C.NEEDS_PREACTIVATION:
            return {"z": (rows, *self.output_shape)}
        return {}

    def activation_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"activation": self.activation, "init": self.init,
                               "negative_slope": self.negative_slope}  # fmt: skip
        if self.activation == "elu":
            cfg["alpha"] = self.alpha
        return cfg
