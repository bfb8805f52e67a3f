"""The dense layer of the reference backend: ``a = act(x @ W + b)`` and its backward pass.

Notation: ``x`` layer input (n, d), ``W`` weights (d, k), ``b`` bias (k,),
``z = x @ W + b`` pre-activation (n, k), ``a = act(z)`` activation (n, k).
"""

from __future__ import annotations

import numpy as np

from ... import _codes as C
from .activations import activation_backward, activation_forward


def dense_forward(
    x: np.ndarray,
    W: np.ndarray,
    b: np.ndarray,
    act: int,
    alpha: float,
    z_out: np.ndarray | None,
    out: np.ndarray,
) -> None:
    """out = act(x @ W + b);  z_out = x @ W + b, kept only for activations that need it.

    x (n, d), W (d, k), b (k,), out (n, k); z_out (n, k) or None.
    """
    np.matmul(x, W, out=out)
    out += b
    if act in C.NEEDS_PREACTIVATION:
        z_out[...] = out
    activation_forward(out, act, alpha)


def dense_backward(
    x: np.ndarray,
    W: np.ndarray,
    z: np.ndarray | None,
    a: np.ndarray,
    grad: np.ndarray,
    act: int,
    alpha: float,
    dW_out: np.ndarray,
    db_out: np.ndarray,
    grad_x_out: np.ndarray | None,
) -> None:
    """Backpropagation through one dense layer.

    delta = dL/dz = grad * act'(z)  (written into ``grad``);
    dL/dW = x.T @ delta;  dL/db = sum_rows(delta);  dL/dx = delta @ W.T (skipped when
    ``grad_x_out`` is None: the first layer needs no input gradient).
    """
    activation_backward(z, a, grad, act, alpha)
    np.matmul(x.T, grad, out=dW_out)
    np.sum(grad, axis=0, out=db_out)
    if grad_x_out is not None:
        np.matmul(grad, W.T, out=grad_x_out)
