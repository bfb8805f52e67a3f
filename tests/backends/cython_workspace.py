"""Workspaces of seeded ``Dense`` layers and data for the Cython backend's epoch tests."""

from __future__ import annotations

import math

import numpy as np

from fastnn import _codes as C
from fastnn.backends.workspace import Workspace
from fastnn.layers import Dense

HYPER = {  # lr, momentum, nesterov, weight decay, beta1, beta2, eps
    C.OPT_SGD: [0.05, 0.0, 0.0, 0.0, 0.9, 0.999, 1e-8],
    C.OPT_MOMENTUM: [0.05, 0.9, 1.0, 1e-4, 0.9, 0.999, 1e-8],
    C.OPT_ADAM: [0.01, 0.0, 0.0, 1e-4, 0.9, 0.99, 1e-7],
}


def make_workspace(sizes, acts, loss, optimizer, batch_size, dtype, alpha=0.3, seed=1, hyper=None):
    """A workspace of built ``Dense`` layers ``sizes[i] -> sizes[i + 1]`` with seeded weights;
    layer i declares the activation of code ``acts[i]`` (``alpha``: leaky slope, ELU alpha)."""
    rng = np.random.default_rng(seed)
    layers = []
    for (d, k), act in zip(zip(sizes[:-1], sizes[1:], strict=True), acts, strict=True):
        layer = Dense(d, k, C.ACTIVATION_NAMES[int(act)], negative_slope=alpha, alpha=alpha)
        layer.build((d,), rng, dtype)
        layer.W[...] = rng.standard_normal((d, k)) / math.sqrt(d)
        layer.b[...] = 0.1 * rng.standard_normal(k)
        layers.append(layer)
    hyper = np.asarray(HYPER[optimizer] if hyper is None else hyper, np.float64)
    return Workspace(layers, acts, loss, optimizer, hyper, batch_size, dtype)


def mnist_like(rng, n, d, dtype):
    """Rows of blobs of positive "ink" on zeros, ~80% zeros like MNIST."""
    x = np.zeros((n, d), dtype)
    for r in range(n):
        start = rng.integers(0, d - d // 5)
        x[r, start : start + d // 5] = rng.random(d // 5)
    return x


def fit(B, X, y, batch_size, epochs=1, seed=3, **ws_args):
    """Losses, weights and biases after ``epochs`` epochs of ``B.train_epoch`` on seeded data."""
    ws = make_workspace(batch_size=batch_size, dtype=X.dtype, seed=seed, **ws_args)
    losses = np.zeros(-(-X.shape[0] // batch_size))
    for epoch in range(epochs):
        order = np.random.default_rng(epoch).permutation(X.shape[0]).astype(np.int64)
        assert B.train_epoch(ws, X, y, order, batch_size, losses) == len(losses)
    return [losses, *ws.weights, *ws.biases]
