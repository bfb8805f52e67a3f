"""Losses of the reference backend, on raw outputs: value and gradient in one call.

Every loss takes the raw outputs ``o`` (n, k) of the last layer (logits where a softmax or
sigmoid is fused into the loss), writes dL/do into ``grad_out`` (n, k) and returns the mean loss
over the batch as a Python float (computed in float64 where it matters).
"""

from __future__ import annotations

import numpy as np


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
