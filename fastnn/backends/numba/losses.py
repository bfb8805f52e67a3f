"""Numba loss kernels: value and gradient in one pass over the raw outputs.

Design:

A. Every loss returns the batch mean in float64 and writes ``grad`` (n, k) in the model dtype;
   per-element arithmetic runs in float64 (cheap: k is the number of outputs), so float32 models
   get the reference's float64 loss.
B. Targets are always 2-D here: class indices arrive as an int64 (n, 1) view. Then every
   loss type-checks for both target kinds, and :func:`loss_by_code` can dispatch on the loss
   code at run time inside the compiled epoch (one specialization per target dtype). The
   contract's ``softmax_cross_entropy`` (targets (n,)) is the Python entry point in front of
   :func:`softmax_cross_entropy_kernel`.
   The compiled epoch does not use the run-time dispatch: it is compiled per loss with the one
   kernel of :func:`loss_kernel` (:mod:`.jit` Design G), so it never compiles the other four.
C. Softmax losses take the row maximum first (stable log-sum-exp); the gradient entries are
   ``exp(o - lse)`` computed in float64, so ``p - 1`` of the true class does not cancel in
   float32.
"""

from __future__ import annotations

import math

import numpy as np

from ..._codes import (
    LOSS_BINARY_CROSS_ENTROPY,
    LOSS_CROSS_ENTROPY,
    LOSS_CROSS_ENTROPY_SOFT,
    LOSS_KL_DIVERGENCE,
    LOSS_MSE,
)
from .jit import kernel


@kernel
def _log_sum_exp(outputs: np.ndarray, i: int) -> float:
    """log sum_j exp(outputs[i, j]), in float64, after subtracting the row maximum."""
    top = np.float64(outputs[i, 0])
    for c in range(1, outputs.shape[1]):
        top = max(top, np.float64(outputs[i, c]))
    total = 0.0
    for c in range(outputs.shape[1]):
        total += math.exp(np.float64(outputs[i, c]) - top)
    return top + math.log(total)


@kernel
def mse(outputs: np.ndarray, targets: np.ndarray, grad: np.ndarray) -> float:
    """L = mean of (o - t)^2 over n*k elements; grad = 2 (o - t) / (n k).  t (n, k)."""
    n, k = outputs.shape
    scale = grad.dtype.type(2.0 / (n * k))
    total = 0.0
    for i in range(n):
        for c in range(k):
            diff = outputs[i, c] - targets[i, c]
            total += np.float64(diff) * np.float64(diff)
            grad[i, c] = diff * scale
    return total / (n * k)


@kernel
def softmax_cross_entropy_kernel(
    outputs: np.ndarray, targets: np.ndarray, grad: np.ndarray
) -> float:
    """L = mean_i [lse(o_i) - o_i[t_i]]; grad = (softmax(o) - onehot(t)) / n.  t (n, 1) int."""
    n, k = outputs.shape
    inv_n = 1.0 / n
    total = 0.0
    for i in range(n):
        lse = _log_sum_exp(outputs, i)
        label = np.int64(targets[i, 0])
        total += lse - np.float64(outputs[i, label])
        for c in range(k):
            grad[i, c] = math.exp(np.float64(outputs[i, c]) - lse) * inv_n
        grad[i, label] = (math.exp(np.float64(outputs[i, label]) - lse) - 1.0) * inv_n
    return total * inv_n


@kernel
def _soft_targets(outputs, targets, grad, with_entropy):
    n, k = outputs.shape
    inv_n = 1.0 / n
    total = 0.0
    for i in range(n):
        lse = _log_sum_exp(outputs, i)
        mass = 0.0
        for c in range(k):
            mass += np.float64(targets[i, c])
        for c in range(k):
            t = np.float64(targets[i, c])
            logp = np.float64(outputs[i, c]) - lse
            total -= t * logp
            if with_entropy and t > 0.0:
                total += t * math.log(t)
            grad[i, c] = (math.exp(logp) * mass - t) * inv_n
    return total * inv_n


@kernel
def softmax_cross_entropy_soft(outputs: np.ndarray, targets: np.ndarray, grad: np.ndarray) -> float:
    """L = mean_i [-sum_j t_ij log softmax(o_i)_j]; grad = (softmax(o) sum_j t_ij - t) / n."""
    return _soft_targets(outputs, targets, grad, False)


@kernel
def kl_divergence(outputs: np.ndarray, targets: np.ndarray, grad: np.ndarray) -> float:
    """L = mean_i sum_j t_ij (log t_ij - log softmax(o_i)_j), 0 log 0 = 0; soft-CE gradient."""
    return _soft_targets(outputs, targets, grad, True)


@kernel
def binary_cross_entropy(outputs: np.ndarray, targets: np.ndarray, grad: np.ndarray) -> float:
    """Sigmoid fused: L = mean of softplus(o) - t o; grad = (sigmoid(o) - t) / (n k)."""
    n, k = outputs.shape
    inv = 1.0 / (n * k)
    total = 0.0
    for i in range(n):
        for c in range(k):
            o = np.float64(outputs[i, c])
            t = np.float64(targets[i, c])
            # softplus(o) = max(o, 0) + log1p(exp(-|o|)) never overflows.
            total += max(o, 0.0) + math.log1p(math.exp(-abs(o))) - t * o
            grad[i, c] = (0.5 * (math.tanh(0.5 * o) + 1.0) - t) * inv
    return total * inv


@kernel
def loss_by_code(loss: int, outputs: np.ndarray, targets: np.ndarray, grad: np.ndarray) -> float:
    """Dispatch on the loss code of :mod:`fastnn._codes` (targets 2-D, see Design B)."""
    if loss == LOSS_CROSS_ENTROPY:
        return softmax_cross_entropy_kernel(outputs, targets, grad)
    if loss == LOSS_MSE:
        return mse(outputs, targets, grad)
    if loss == LOSS_CROSS_ENTROPY_SOFT:
        return softmax_cross_entropy_soft(outputs, targets, grad)
    if loss == LOSS_BINARY_CROSS_ENTROPY:
        return binary_cross_entropy(outputs, targets, grad)
    if loss == LOSS_KL_DIVERGENCE:
        return kl_divergence(outputs, targets, grad)
    return math.nan


#: The kernel of each loss code, all with the signature (outputs, targets 2-D, grad) -> float.
LOSS_KERNELS = {
    LOSS_CROSS_ENTROPY: softmax_cross_entropy_kernel,
    LOSS_MSE: mse,
    LOSS_CROSS_ENTROPY_SOFT: softmax_cross_entropy_soft,
    LOSS_BINARY_CROSS_ENTROPY: binary_cross_entropy,
    LOSS_KL_DIVERGENCE: kl_divergence,
}


def loss_kernel(loss: int):  # noqa: ANN201  (a Numba dispatcher)
    """The kernel :func:`loss_by_code` runs for the code ``loss`` (ValueError if unknown)."""
    try:
        return LOSS_KERNELS[loss]
    except KeyError:
        raise ValueError(f"unknown loss code {loss!r}") from None


def softmax_cross_entropy(outputs: np.ndarray, targets: np.ndarray, grad_out: np.ndarray) -> float:
    """Trusted entry point of the contract: targets (n,) int64 become the (n, 1) view."""
    return softmax_cross_entropy_kernel(outputs, targets.reshape(-1, 1), grad_out)
