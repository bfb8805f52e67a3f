"""Workspaces for the Cython backend's epoch tests, without the layers package.

``StubDense`` satisfies the layer protocol the ``Workspace`` and the eager loop use
(``fastnn.backends.workspace``, ``fastnn.backends.eager``).
"""

from __future__ import annotations

import math

import numpy as np

from fastnn import _codes as C
from fastnn.backends.workspace import Workspace

HYPER = {  # lr, momentum, nesterov, weight decay, beta1, beta2, eps
    C.OPT_SGD: [0.05, 0.0, 0.0, 0.0, 0.9, 0.999, 1e-8],
    C.OPT_MOMENTUM: [0.05, 0.9, 1.0, 1e-4, 0.9, 0.999, 1e-8],
    C.OPT_ADAM: [0.01, 0.0, 0.0, 1e-4, 0.9, 0.99, 1e-7],
}


class StubDense:
    """A dense layer as the workspace and the eager loop see it (the layer protocol)."""

    def __init__(self, W: np.ndarray, b: np.ndarray, alpha: float = 0.0) -> None:
        self.W, self.b, self.act_alpha = W, b, alpha
        self.input_shape, self.output_shape = (W.shape[0],), (W.shape[1],)

    def parameters(self) -> list[np.ndarray]:
        return [self.W, self.b]

    def buffer_shapes(self, rows: int, act: int) -> dict[str, tuple[int, ...]]:
        return {"z": (rows, self.W.shape[1])} if act in C.NEEDS_PREACTIVATION else {}

    def forward_into(self, B, x, slot, n) -> None:  # noqa: ANN001
        z = slot.buffers.get("z")
        B.dense_forward(x, *slot.params, slot.act, self.act_alpha,
                        None if z is None else z[:n], slot.output[:n])  # fmt: skip

    def backward_into(self, B, x, slot, n, grad_x) -> None:  # noqa: ANN001
        z = slot.buffers.get("z")
        B.dense_backward(x, slot.params[0], None if z is None else z[:n], slot.output[:n],
                         slot.delta[:n], slot.act, self.act_alpha, *slot.grads, grad_x)  # fmt: skip


def make_workspace(sizes, acts, loss, optimizer, batch_size, dtype, alpha=0.3, seed=1, hyper=None):
    """A workspace of dense layers ``sizes[i] -> sizes[i + 1]`` with seeded weights."""
    rng = np.random.default_rng(seed)
    layers = [
        StubDense((rng.standard_normal((a, b)) / math.sqrt(a)).astype(dtype),
                  (0.1 * rng.standard_normal(b)).astype(dtype), alpha)
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    ]  # fmt: skip
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
