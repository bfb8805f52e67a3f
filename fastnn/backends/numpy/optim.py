"""Optimizer updates of the reference backend: in place, on flat 1-D views of a parameter.

The same formulas as PyTorch's SGD and Adam (weight decay as L2 added to the gradient).
"""

from __future__ import annotations

import numpy as np


def sgd_update(param: np.ndarray, grad: np.ndarray, lr: float, weight_decay: float) -> None:
    """g = grad + wd * param;  param -= lr * g."""
    if weight_decay:
        param *= 1.0 - lr * weight_decay
    param -= param.dtype.type(lr) * grad


def momentum_update(
    param: np.ndarray,
    grad: np.ndarray,
    velocity: np.ndarray,
    lr: float,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
) -> None:
    """g = grad + wd * param;  v = mu v + g;  param -= lr * (g + mu v if nesterov else v)."""
    g = grad + param.dtype.type(weight_decay) * param if weight_decay else grad
    velocity *= momentum
    velocity += g
    if nesterov:
        param -= param.dtype.type(lr) * (g + param.dtype.type(momentum) * velocity)
    else:
        param -= param.dtype.type(lr) * velocity


def adam_update(
    param: np.ndarray,
    grad: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    step: int,
) -> None:
    """g = grad + wd param;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
    param -= lr m_hat / (sqrt(v_hat) + eps),  m_hat = m / (1 - b1^t),  v_hat = v / (1 - b2^t).
    """
    dt = param.dtype.type
    g = grad + dt(weight_decay) * param if weight_decay else grad
    m *= beta1
    m += dt(1.0 - beta1) * g
    v *= beta2
    v += dt(1.0 - beta2) * (g * g)
    step_size = lr / (1.0 - beta1**step)
    denom = np.sqrt(v / dt(1.0 - beta2**step))
    denom += dt(eps)
    param -= dt(step_size) * (m / denom)
