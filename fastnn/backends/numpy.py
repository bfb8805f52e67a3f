"""The reference backend: plain NumPy, written to be read.

This is both the fallback that works wherever NumPy does and the yardstick every compiled
backend is tested and timed against. Each docstring carries the formula; every function follows
the kernel contract of :mod:`fastnn.backends` (caller-owned ``out`` buffers, no allocation of
results). Notation: ``x`` layer input (n, d), ``W`` weights (d, k), ``b`` bias (k,),
``z = x @ W + b`` pre-activation, ``a = act(z)`` activation, ``n`` the batch size.
"""

from __future__ import annotations

import sys

import numpy as np

from .. import _codes as C
from . import _eager
from ._workspace import Workspace

NAME = "numpy"


# Activations: forward and derivative side by side -----------------------------------------
def activation_forward(z: np.ndarray, act: int, slope: float) -> None:
    """Apply the activation to ``z`` in place.

    identity: a = z;  sigmoid: a = 1 / (1 + exp(-z));  tanh: a = tanh(z);
    relu: a = max(z, 0);  leaky_relu: a = z if z > 0 else slope * z;
    softmax (per row): a_j = exp(z_j - max z) / sum_i exp(z_i - max z).
    """
    if act == C.IDENTITY:
        return
    if act == C.SIGMOID:
        # 1 / (1 + exp(-z)) overflows for z << 0; the tanh form is stable everywhere.
        np.multiply(z, 0.5, out=z)
        np.tanh(z, out=z)
        z += 1.0
        z *= 0.5
    elif act == C.TANH:
        np.tanh(z, out=z)
    elif act == C.RELU:
        np.maximum(z, 0, out=z)
    elif act == C.LEAKY_RELU:
        np.multiply(z, np.where(z > 0, 1.0, slope).astype(z.dtype), out=z)
    elif act == C.SOFTMAX:
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
    else:
        raise ValueError(f"unknown activation code {act}")


def activation_backward(a: np.ndarray, grad: np.ndarray, act: int, slope: float) -> None:
    """Turn dL/da into dL/dz in place, using only the activation output ``a``.

    identity: 1;  sigmoid: a (1 - a);  tanh: 1 - a^2;  relu: [a > 0];
    leaky_relu: 1 if a > 0 else slope;  softmax: dz = a * (g - sum_j g_j a_j).
    """
    if act == C.IDENTITY:
        return
    if act == C.SIGMOID:
        grad *= a * (1 - a)
    elif act == C.TANH:
        grad *= 1 - a * a
    elif act == C.RELU:
        grad *= a > 0
    elif act == C.LEAKY_RELU:
        grad *= np.where(a > 0, 1.0, slope).astype(grad.dtype)
    elif act == C.SOFTMAX:
        grad -= (grad * a).sum(axis=1, keepdims=True)
        grad *= a
    else:
        raise ValueError(f"unknown activation code {act}")


# Dense layer ---------------------------------------------------------------------------------
def dense_forward(
    x: np.ndarray, W: np.ndarray, b: np.ndarray, act: int, slope: float, out: np.ndarray
) -> None:
    """out = act(x @ W + b).  x (n, d), W (d, k), b (k,), out (n, k)."""
    np.matmul(x, W, out=out)
    out += b
    activation_forward(out, act, slope)


def dense_backward(
    x: np.ndarray,
    W: np.ndarray,
    a: np.ndarray,
    grad: np.ndarray,
    act: int,
    slope: float,
    dW_out: np.ndarray,
    db_out: np.ndarray,
    grad_x_out: np.ndarray | None,
) -> None:
    """Backpropagation through one dense layer.

    delta = dL/dz = grad * act'(z)  (written into ``grad``);
    dL/dW = x.T @ delta;  dL/db = sum_rows(delta);  dL/dx = delta @ W.T.
    """
    activation_backward(a, grad, act, slope)
    np.matmul(x.T, grad, out=dW_out)
    np.sum(grad, axis=0, out=db_out)
    if grad_x_out is not None:
        np.matmul(grad, W.T, out=grad_x_out)


# Losses on raw outputs: value and gradient in one call ----------------------------------------
def _log_softmax(o: np.ndarray) -> np.ndarray:
    shifted = o - o.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def mse(outputs: np.ndarray, targets: np.ndarray, grad_out: np.ndarray) -> float:
    """L = mean over all n*k elements of (o - t)^2;  dL/do = 2 (o - t) / (n k)."""
    np.subtract(outputs, targets, out=grad_out)
    loss = float(np.mean(np.square(grad_out, dtype=np.float64)))
    grad_out *= 2.0 / grad_out.size
    return loss


def softmax_cross_entropy(outputs: np.ndarray, targets: np.ndarray, grad_out: np.ndarray) -> float:
    """L = mean_i [logsumexp(o_i) - o_i[t_i]];  dL/do = (softmax(o) - onehot(t)) / n.

    The log-sum-exp is taken after subtracting the row maximum, so no logit overflows.
    """
    n = outputs.shape[0]
    logp = _log_softmax(outputs.astype(np.float64))
    rows = np.arange(n)
    loss = float(-logp[rows, targets].mean())
    np.exp(logp, out=logp)
    logp[rows, targets] -= 1.0
    np.multiply(logp, 1.0 / n, out=grad_out, casting="unsafe")
    return loss


def softmax_cross_entropy_soft(
    outputs: np.ndarray, targets: np.ndarray, grad_out: np.ndarray
) -> float:
    """L = mean_i [-sum_j t_ij log softmax(o_i)_j];  dL/do = (softmax(o) sum_j t_ij - t) / n."""
    n = outputs.shape[0]
    logp = _log_softmax(outputs.astype(np.float64))
    t = targets.astype(np.float64)
    loss = float(-(t * logp).sum() / n)
    grad = np.exp(logp) * t.sum(axis=1, keepdims=True) - t
    np.multiply(grad, 1.0 / n, out=grad_out, casting="unsafe")
    return loss


def kl_divergence(outputs: np.ndarray, targets: np.ndarray, grad_out: np.ndarray) -> float:
    """L = mean_i sum_j t_ij (log t_ij - log softmax(o_i)_j), with 0 log 0 = 0.

    It differs from soft cross-entropy by the targets' entropy, a constant: same gradient.
    """
    t = targets.astype(np.float64)
    n = outputs.shape[0]
    positive = t > 0
    entropy_term = float((t[positive] * np.log(t[positive])).sum() / n)
    return entropy_term + softmax_cross_entropy_soft(outputs, targets, grad_out)


def binary_cross_entropy(outputs: np.ndarray, targets: np.ndarray, grad_out: np.ndarray) -> float:
    """Sigmoid fused: L = mean of softplus(o) - t o over all n*k elements;
    dL/do = (sigmoid(o) - t) / (n k).  softplus(o) = max(o, 0) + log1p(exp(-|o|)) never overflows.
    """
    o = outputs.astype(np.float64)
    t = targets.astype(np.float64)
    loss = float(np.mean(np.maximum(o, 0) + np.log1p(np.exp(-np.abs(o))) - t * o))
    sig = 0.5 * (np.tanh(0.5 * o) + 1.0)
    np.multiply(sig - t, 1.0 / o.size, out=grad_out, casting="unsafe")
    return loss


# Optimizers: in place on flat views ------------------------------------------------------------
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


# One epoch: the shared per-batch loop over this module's kernels ---------------------------------
def train_epoch(
    ws: Workspace,
    X: np.ndarray,
    targets: np.ndarray,
    order: np.ndarray,
    batch_size: int,
    batch_losses: np.ndarray,
) -> int:
    """One epoch of mini-batch gradient descent, batch by batch (see the contract).

    For every batch: gather, ``dense_forward`` per layer, the loss kernel, ``dense_backward``
    per layer in reverse, then one optimizer update per parameter.
    """
    this = sys.modules[__name__]
    return _eager.eager_epoch(this, ws, X, targets, order, batch_size, batch_losses)
