"""Numba optimizer updates, in place, one pass over flat 1-D parameter views.

Design:

A. Each update reads param, grad and its state once and writes them once (NumPy's version
   makes several passes and temporaries). Hyper-parameters are cast to the parameter dtype
   first, as the reference does, so float32 models see float32 arithmetic.
B. Plain SGD on a sparse layer is stepped row by row inside the backward pass instead
   (:mod:`.sparse`), only where the gradient is not zero.
C. Every optimizer has a *step* kernel of one signature, (param, grad, s1, s2, hyper, step),
   that reads its hyper-parameters from ``hyper``. :func:`update_by_code` dispatches to them at
   run time; the compiled epoch is compiled per optimizer with the one step of
   :func:`update_kernel` instead (:mod:`.jit` Design G), so it never compiles the others.
"""

from __future__ import annotations

import numpy as np

from ..._codes import (
    H_BETA1,
    H_BETA2,
    H_EPS,
    H_LR,
    H_MOMENTUM,
    H_NESTEROV,
    H_WEIGHT_DECAY,
    OPT_ADAM,
    OPT_MOMENTUM,
    OPT_SGD,
)
from .jit import kernel


@kernel
def sgd_update(param: np.ndarray, grad: np.ndarray, lr: float, weight_decay: float) -> None:
    """g = grad + wd * param;  param -= lr * g.  All (p,)."""
    dt = param.dtype.type
    rate = dt(lr)
    if weight_decay:
        shrink = dt(1.0 - lr * weight_decay)
        for i in range(param.shape[0]):
            param[i] = param[i] * shrink - rate * grad[i]
    else:
        for i in range(param.shape[0]):
            param[i] -= rate * grad[i]


@kernel
def momentum_update(
    param: np.ndarray,
    grad: np.ndarray,
    velocity: np.ndarray,
    lr: float,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
):
    """g = grad + wd * param;  v = mu v + g;  param -= lr * (g + mu v if nesterov else v)."""
    dt = param.dtype.type
    rate, mu, wd = dt(lr), dt(momentum), dt(weight_decay)
    for i in range(param.shape[0]):
        g = grad[i] + wd * param[i] if weight_decay else grad[i]
        v = mu * velocity[i] + g
        velocity[i] = v
        param[i] -= rate * (g + mu * v if nesterov else v)


@kernel
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
):
    """g = grad + wd param; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
    param -= lr m_hat / (sqrt(v_hat) + eps), m_hat = m / (1-b1^t), v_hat = v / (1-b2^t).
    """
    dt = param.dtype.type
    b1, b2, wd, e = dt(beta1), dt(beta2), dt(weight_decay), dt(eps)
    c1, c2 = dt(1.0 - beta1), dt(1.0 - beta2)
    step_size = dt(lr / (1.0 - beta1**step))
    bias2 = dt(1.0 - beta2**step)
    for i in range(param.shape[0]):
        g = grad[i] + wd * param[i] if weight_decay else grad[i]
        mi = b1 * m[i] + c1 * g
        vi = b2 * v[i] + c2 * (g * g)
        m[i] = mi
        v[i] = vi
        param[i] -= step_size * (mi / (np.sqrt(vi / bias2) + e))


@kernel
def sgd_step(param, grad, s1, s2, hyper, step):
    """One SGD step on flat views; s1, s2 unused; hyper (N_HYPER,)."""
    sgd_update(param, grad, hyper[H_LR], hyper[H_WEIGHT_DECAY])


@kernel
def momentum_step(param, grad, s1, s2, hyper, step):
    """One momentum step on flat views; s1 the velocity, s2 unused; hyper (N_HYPER,)."""
    momentum_update(
        param, grad, s1, hyper[H_LR], hyper[H_MOMENTUM], hyper[H_NESTEROV] != 0.0,
        hyper[H_WEIGHT_DECAY],
    )  # fmt: skip


@kernel
def adam_step(param, grad, s1, s2, hyper, step):
    """One Adam step on flat views; s1, s2 the moments; hyper (N_HYPER,)."""
    adam_update(
        param, grad, s1, s2, hyper[H_LR], hyper[H_BETA1], hyper[H_BETA2], hyper[H_EPS],
        hyper[H_WEIGHT_DECAY], step,
    )  # fmt: skip


@kernel
def update_by_code(
    optimizer: int, param: np.ndarray, grad: np.ndarray, s1: np.ndarray, s2: np.ndarray,
    hyper: np.ndarray, step: int,
):  # fmt: skip
    """One step of the optimizer code on flat views; s1/s2 its state; hyper (N_HYPER,)."""
    if optimizer == OPT_MOMENTUM:
        momentum_step(param, grad, s1, s2, hyper, step)
    elif optimizer == OPT_ADAM:
        adam_step(param, grad, s1, s2, hyper, step)
    else:
        sgd_step(param, grad, s1, s2, hyper, step)


#: The step kernel of each optimizer code (Design C).
UPDATE_KERNELS = {OPT_SGD: sgd_step, OPT_MOMENTUM: momentum_step, OPT_ADAM: adam_step}


def update_kernel(optimizer: int):  # noqa: ANN201  (a Numba dispatcher)
    """The step kernel :func:`update_by_code` runs for ``optimizer`` (ValueError if unknown)."""
    try:
        return UPDATE_KERNELS[optimizer]
    except KeyError:
        raise ValueError(f"unknown optimizer code {optimizer!r}") from None
