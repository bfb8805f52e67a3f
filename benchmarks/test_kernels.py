"""Kernel timings at MNIST shapes, per backend: ``pytest benchmarks/ --benchmark-only``.

Each kernel is called through the backend module exactly as the API calls it (compiled
backends include their argument checks). Compare backends with
``--benchmark-group-by=func,param:batch`` (the default groups by test function). After timing,
every benchmark checks that the backend computed what the reference (``fastnn.backends.numpy``)
computes on the same inputs, so a fast wrong kernel fails here.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastnn import _codes as C
from fastnn.backends import numpy as ref
from fastnn.backends.workspace import Workspace

BATCHES = (32, 128)
# float32 results of different summation orders (BLAS blocking, loops over non-zeros).
RTOL, ATOL = 1e-4, 1e-5


@pytest.mark.parametrize("batch", BATCHES)
def test_dense_forward_first_layer(benchmark, kernels, mnist, mlp_weights, batch):
    """a = relu(x @ W0 + b0): x (batch, 784) MNIST rows, W0 (784, 128)."""
    W, b = mlp_weights[0], mlp_weights[1]
    x = mnist[0][:batch]
    out, expected = (np.empty((batch, W.shape[1]), np.float32) for _ in range(2))
    benchmark(kernels.dense_forward, x, W, b, C.RELU, 0.0, None, out)
    ref.dense_forward(x, W, b, C.RELU, 0.0, None, expected)
    np.testing.assert_allclose(out, expected, rtol=RTOL, atol=ATOL)


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
        kernels.dense_backward(x, W, None, a, grad, C.RELU, 0.0, dW, db, None)

    benchmark(step)
    want = [grad0.copy(), np.empty_like(dW), np.empty_like(db)]
    ref.dense_backward(x, W, None, a, want[0], C.RELU, 0.0, want[1], want[2], None)
    for got, expected in zip((grad, dW, db), want, strict=True):
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


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
    benchmark(kernels.dense_backward, x, W, None, a, grad, C.IDENTITY, 0.0, dW, db, grad_x)
    want = [np.empty_like(dW), np.empty_like(db), np.empty_like(grad_x)]
    ref.dense_backward(x, W, None, a, grad.copy(), C.IDENTITY, 0.0, *want)
    for got, expected in zip((dW, db, grad_x), want, strict=True):
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("batch", BATCHES)
def test_softmax_cross_entropy(benchmark, kernels, mnist, batch):
    """Loss and (softmax - onehot) / n for logits (batch, 10)."""
    logits = np.random.default_rng(2).standard_normal((batch, 10)).astype(np.float32)
    labels = mnist[1][:batch]
    grad, expected = np.empty_like(logits), np.empty_like(logits)
    loss = benchmark(kernels.softmax_cross_entropy, logits, labels, grad)
    assert loss == pytest.approx(ref.softmax_cross_entropy(logits, labels, expected), rel=1e-6)
    np.testing.assert_allclose(grad, expected, rtol=RTOL, atol=1e-7)


@pytest.mark.parametrize("rule", ["sgd", "adam"])
def test_optimizer_update_of_W0(benchmark, kernels, mlp_weights, rule):
    """One update of the 100,352 weights of the first layer, on flat views."""
    p0 = mlp_weights[0].reshape(-1)
    grad = np.random.default_rng(3).standard_normal(p0.size).astype(np.float32) * 1e-3

    def fresh():  # every round updates the same starting point: the result is one step
        state = [p0.copy()] + ([] if rule == "sgd" else [np.zeros_like(p0), np.zeros_like(p0)])
        return (state, {})

    def update(param, *moments):
        if rule == "sgd":
            kernels.sgd_update(param, grad, 0.01, 1e-4)
        else:
            kernels.adam_update(param, grad, *moments, 1e-3, 0.9, 0.999, 1e-8, 1e-4, 1)

    args, _ = fresh()
    benchmark.pedantic(lambda: update(*args), setup=lambda: _refill(args, fresh), rounds=20)
    want, _ = fresh()
    if rule == "sgd":
        ref.sgd_update(want[0], grad, 0.01, 1e-4)
    else:
        ref.adam_update(*want[:1], grad, *want[1:], 1e-3, 0.9, 0.999, 1e-8, 1e-4, 1)
    for got, expected in zip(args, want, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-8)


def _refill(args, fresh):
    """Reset the arrays the benchmark updates in place to their starting values."""
    for dst, src in zip(args, fresh()[0], strict=True):
        dst[...] = src


def _workspace(mlp_weights, batch):
    """The 784-128-10 MLP (relu, identity) with SGD, weights copied from ``mlp_weights``."""
    import fastnn

    model = fastnn.Sequential([fastnn.Dense(784, 128, "relu"), fastnn.Dense(128, 10)], seed=0)
    model.set_weights(mlp_weights)
    hyper = np.zeros(C.N_HYPER)
    hyper[C.H_LR] = 0.05
    return Workspace(model.layers, [C.RELU, C.IDENTITY], C.LOSS_CROSS_ENTROPY, C.OPT_SGD, hyper,
                     batch, np.float32)  # fmt: skip


@pytest.mark.parametrize("batch", BATCHES)
def test_train_epoch_10k(benchmark, kernels, mnist, mlp_weights, batch):
    """One fused epoch (gather, forward, loss, backward, SGD) over 10,000 MNIST images."""
    X, y = mnist
    order = np.random.default_rng(0).permutation(len(X)).astype(np.int64)
    losses = np.empty(-(-len(X) // batch))
    runs = []

    def setup():  # every round trains one epoch from the same starting weights
        runs.append(_workspace(mlp_weights, batch))
        return (runs[-1], X, y, order, batch, losses), {}

    done = benchmark.pedantic(kernels.train_epoch, setup=setup, rounds=5, warmup_rounds=1)
    assert done == len(losses) and np.isfinite(losses).all()
    expected_ws, expected_losses = _workspace(mlp_weights, batch), np.empty_like(losses)
    assert ref.train_epoch(expected_ws, X, y, order, batch, expected_losses) == done
    # An epoch of 313 (or 79) float32 SGD steps: rounding differences grow a little per step.
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-3, atol=1e-4)
    ws = runs[-1]
    assert ws.step == expected_ws.step == done
    for got, expected in zip(ws.weights + ws.biases, expected_ws.weights + expected_ws.biases,
                             strict=True):  # fmt: skip
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
