"""Kernel timings at MNIST shapes, per backend: ``pytest benchmarks/ --benchmark-only``.

Each kernel is called through the backend module exactly as the API calls it (compiled
backends include their argument checks). Compare backends with
``--benchmark-group-by=func,param:batch`` (the default groups by test function).
"""

from __future__ import annotations

import numpy as np
import pytest

from fastnn import _codes as C
from fastnn.backends._workspace import Workspace

BATCHES = (32, 128)


@pytest.mark.parametrize("batch", BATCHES)
def test_dense_forward_first_layer(benchmark, kernels, mnist, mlp_weights, batch):
    """a = relu(x @ W0 + b0): x (batch, 784) MNIST rows, W0 (784, 128)."""
    W, b = mlp_weights[0], mlp_weights[1]
    x = mnist[0][:batch]
    out = np.empty((batch, W.shape[1]), dtype=np.float32)
    benchmark(kernels.dense_forward, x, W, b, C.RELU, 0.0, out)
    np.testing.assert_allclose(out, np.maximum(x @ W + b, 0), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("batch", BATCHES)
def test_dense_backward_first_layer(benchmark, kernels, mnist, mlp_weights, batch):
    """relu' then dW0 = x.T @ delta (784, 128), db0; no input gradient (first layer)."""
    W = mlp_weights[0]
    x = mnist[0][:batch]
    a = np.maximum(x @ W + mlp_weights[1], 0)
    grad0 = np.random.default_rng(0).standard_normal(a.shape).astype(np.float32)
    grad = grad0.copy()
    dW, db = np.empty_like(W), np.empty(W.shape[1], dtype=np.float32)

    def step() -> None:
        grad[...] = grad0  # the kernel overwrites dL/da with dL/dz
        kernels.dense_backward(x, W, a, grad, C.RELU, 0.0, dW, db, None)

    benchmark(step)
    np.testing.assert_allclose(dW, x.T @ (grad0 * (a > 0)), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("batch", BATCHES)
def test_dense_backward_output_layer(benchmark, kernels, mlp_weights, batch):
    """Identity output layer 128 -> 10: dW1, db1 and the input gradient delta @ W1.T."""
    W = mlp_weights[2]
    rng = np.random.default_rng(1)
    x = np.maximum(rng.standard_normal((batch, W.shape[0])), 0).astype(np.float32)
    a = x @ W
    grad = rng.standard_normal(a.shape).astype(np.float32)
    dW, db = np.empty_like(W), np.empty(W.shape[1], dtype=np.float32)
    grad_x = np.empty_like(x)
    benchmark(kernels.dense_backward, x, W, a, grad, C.IDENTITY, 0.0, dW, db, grad_x)
    np.testing.assert_allclose(grad_x, grad @ W.T, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("batch", BATCHES)
def test_softmax_cross_entropy(benchmark, kernels, mnist, batch):
    """Loss and (softmax - onehot) / n for logits (batch, 10)."""
    logits = np.random.default_rng(2).standard_normal((batch, 10)).astype(np.float32)
    labels = mnist[1][:batch]
    grad = np.empty_like(logits)
    loss = benchmark(kernels.softmax_cross_entropy, logits, labels, grad)
    assert np.isfinite(loss)


@pytest.mark.parametrize("rule", ["sgd", "adam"])
def test_optimizer_update_of_W0(benchmark, kernels, mlp_weights, rule):
    """One update of the 100,352 weights of the first layer, on flat views."""
    param = mlp_weights[0].copy().reshape(-1)
    grad = np.full_like(param, 1e-6)
    if rule == "sgd":
        benchmark(kernels.sgd_update, param, grad, 0.01, 0.0)
    else:
        m, v = np.zeros_like(param), np.zeros_like(param)
        benchmark(kernels.adam_update, param, grad, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1)
    assert np.isfinite(param).all()


@pytest.mark.parametrize("batch", BATCHES)
def test_train_epoch_10k(benchmark, kernels, mnist, mlp_weights, batch):
    """One fused epoch (gather, forward, loss, backward, SGD) over 10,000 MNIST images."""
    X, y = mnist
    weights = [w.copy() for w in mlp_weights[0::2]]
    biases = [b.copy() for b in mlp_weights[1::2]]
    hyper = np.zeros(C.N_HYPER)
    hyper[C.H_LR] = 0.05
    ws = Workspace(weights, biases, [C.RELU, C.IDENTITY], [0.0, 0.0], C.LOSS_CROSS_ENTROPY,
                   C.OPT_SGD, hyper, batch)  # fmt: skip
    order = np.random.default_rng(0).permutation(len(X)).astype(np.int64)
    losses = np.empty(-(-len(X) // batch))
    done = benchmark.pedantic(kernels.train_epoch, args=(ws, X, y, order, batch, losses),
                              rounds=5, iterations=1, warmup_rounds=1)  # fmt: skip
    assert done == len(losses) and np.isfinite(losses).all()
