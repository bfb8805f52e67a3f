"""Layers: a dense layer of neurons, each with its weights, its bias and an activation."""

from __future__ import annotations

import math

import numpy as np

from . import _codes as C
from ._validation import check_choice, check_positive
from .backends import resolve_backend

ACTIVATIONS: tuple[str, ...] = tuple(C.ACTIVATION_CODES)
INITS: dict[str, str] = {
    "auto": "He for the ReLU family, Xavier (Glorot) otherwise",
    "he": "normal, std = sqrt(2 / in_features): keeps ReLU activations from shrinking",
    "xavier": "uniform in ±sqrt(6 / (in + out)): keeps sigmoid/tanh in their sensitive range",
    "normal": "normal, std = 0.01: the naive choice, to see vanishing gradients happen",
}
RELU_FAMILY = ("relu", "leaky_relu")


class Dense:
    """A fully connected layer: ``out = activation(x @ W + b)``.

    Each of the ``out_features`` neurons holds one column of ``W`` (its weights, one per input)
    and one entry of ``b`` (its bias).

    Parameters
    ----------
    in_features : int
        Inputs per sample, d.
    out_features : int
        Neurons in the layer, k.
    activation : {None, "identity", "sigmoid", "tanh", "relu", "leaky_relu", "softmax"}
        ``None`` means identity. ``softmax`` normalizes each row into probabilities.
    init : {"auto", "he", "xavier", "normal"}
        Weight initialisation; biases start at zero.
    negative_slope : float, default 0.01
        Slope of leaky ReLU for z < 0.

    Attributes
    ----------
    W : ndarray, shape (in_features, out_features)
    b : ndarray, shape (out_features,)
    dW, db : ndarray or None
        Gradients of the loss with respect to ``W`` and ``b`` after ``backward``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        activation: str | None = None,
        init: str = "auto",
        negative_slope: float = 0.01,
    ) -> None:
        self.in_features = check_positive("in_features", in_features, integer=True)
        self.out_features = check_positive("out_features", out_features, integer=True)
        name = "identity" if activation is None else activation
        self.activation = check_choice("activation", name, C.ACTIVATION_CODES)
        self.init = check_choice("init", init, INITS)
        self.negative_slope = check_positive("negative_slope", negative_slope, allow_zero=True)
        self.W: np.ndarray | None = None
        self.b: np.ndarray | None = None
        self.dW: np.ndarray | None = None
        self.db: np.ndarray | None = None
        self._x: np.ndarray | None = None
        self._a: np.ndarray | None = None

    @property
    def act_code(self) -> int:
        return C.ACTIVATION_CODES[self.activation]

    def initialize(self, rng: np.random.Generator, dtype: np.dtype) -> None:
        """Draw ``W`` with the layer's init scheme and zero ``b``."""
        d, k = self.in_features, self.out_features
        scheme = self.init
        if scheme == "auto":
            scheme = "he" if self.activation in RELU_FAMILY else "xavier"
        if scheme == "he":
            W = rng.standard_normal((d, k)) * math.sqrt(2.0 / d)
        elif scheme == "xavier":
            limit = math.sqrt(6.0 / (d + k))
            W = rng.uniform(-limit, limit, (d, k))
        else:
            W = rng.standard_normal((d, k)) * 0.01
        self.W = np.ascontiguousarray(W, dtype=dtype)
        self.b = np.zeros(k, dtype=dtype)

    def _require_init(self) -> tuple[np.ndarray, np.ndarray]:
        if self.W is None or self.b is None:
            raise RuntimeError("layer is not initialised: put it in a Sequential first")
        return self.W, self.b

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Compute ``activation(x @ W + b)`` and remember what ``backward`` needs.

        Parameters
        ----------
        x : ndarray, shape (n, in_features)

        Returns
        -------
        ndarray, shape (n, out_features)
        """
        W, b = self._require_init()
        x = np.ascontiguousarray(x, dtype=W.dtype)
        out = np.empty((x.shape[0], self.out_features), dtype=W.dtype)
        resolve_backend().dense_forward(x, W, b, self.act_code, self.negative_slope, out)
        self._x, self._a = x, out
        return out

    def backward(self, grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """Backpropagate dL/d(output): set ``dW``, ``db`` and return dL/d(input).

        Parameters
        ----------
        grad : ndarray, shape (n, out_features)
            Gradient of the loss with respect to this layer's output.
        need_input_grad : bool
            ``False`` skips dL/dx (first layer) and returns None.

        Returns
        -------
        ndarray, shape (n, in_features), or None
        """
        W, _ = self._require_init()
        if self._x is None or self._a is None:
            raise RuntimeError("backward called before forward")
        delta = np.array(grad, dtype=W.dtype, order="C", copy=True)
        if delta.shape != self._a.shape:
            raise ValueError(f"grad has shape {delta.shape}, expected {self._a.shape}")
        self.dW = np.empty_like(W)
        self.db = np.empty(self.out_features, dtype=W.dtype)
        grad_x = np.empty_like(self._x) if need_input_grad else None
        resolve_backend().dense_backward(
            self._x, W, self._a, delta, self.act_code, self.negative_slope,
            self.dW, self.db, grad_x,
        )  # fmt: skip
        return grad_x

    def config(self) -> dict:
        """The constructor arguments, for ``save``/``load`` and ``summary``."""
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "activation": self.activation,
            "init": self.init,
            "negative_slope": self.negative_slope,
        }

    def __repr__(self) -> str:
        return (
            f"Dense({self.in_features}, {self.out_features}, activation={self.activation!r})"
        )
