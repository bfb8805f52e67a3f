"""Finite-difference gradient checks (float64, central differences) of the reference backend.

Every activation in hidden layers x every loss, one-layer and three-layer nets, batch 1 and odd
batch sizes — through the same Workspace path that ``fit`` uses, and through the object API
(``Sequential.forward`` / ``backward`` with a loss object).
"""

from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import _codes as C
from fastnn.backends import _eager
from fastnn.backends import numpy as ref
from fastnn.backends._workspace import Workspace

HIDDEN_ACTS = [C.IDENTITY, C.SIGMOID, C.TANH, C.RELU, C.LEAKY_RELU, C.SOFTMAX]
LOSSES = [
    C.LOSS_MSE,
    C.LOSS_CROSS_ENTROPY,
    C.LOSS_CROSS_ENTROPY_SOFT,
    C.LOSS_BINARY_CROSS_ENTROPY,
    C.LOSS_KL_DIVERGENCE,
]


def make_targets(loss: int, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    if loss == C.LOSS_CROSS_ENTROPY:
        return rng.integers(0, k, n).astype(np.int64)
    if loss == C.LOSS_MSE:
        return rng.normal(size=(n, k))
    if loss == C.LOSS_BINARY_CROSS_ENTROPY:
        return rng.uniform(size=(n, k))
    p = rng.uniform(size=(n, k))
    p[0, 0] = 0.0  # a zero probability exercises 0 log 0 in KL
    return p / p.sum(axis=1, keepdims=True)


def make_workspace(sizes, acts, loss, n, rng, slope=0.1):
    weights = [rng.normal(size=(a, b)) * 0.7 for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    biases = [rng.normal(size=b) * 0.1 for b in sizes[1:]]
    hyper = np.zeros(C.N_HYPER)
    ws = Workspace(weights, biases, acts, [slope] * len(acts), loss, C.OPT_SGD, hyper, n)
    ws.x_batch[:] = rng.normal(size=ws.x_batch.shape)
    ws.y_batch[:] = make_targets(loss, n, sizes[-1], rng)
    return ws


def numeric_grad(ws: Workspace, param: np.ndarray, n: int, eps: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(param)
    flat, g = param.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = _eager.forward_backward(ref, ws, n)
        flat[i] = old - eps
        minus = _eager.forward_backward(ref, ws, n)
        flat[i] = old
        g[i] = (plus - minus) / (2 * eps)
    return grad


def assert_gradients_match(ws: Workspace, n: int) -> None:
    _eager.forward_backward(ref, ws, n)
    analytic = [d.copy() for d in (*ws.dW, *ws.db)]
    params = [*ws.weights, *ws.biases]
    for p, a in zip(params, analytic, strict=True):
        num = numeric_grad(ws, p, n)
        np.testing.assert_allclose(a, num, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("n", [1, 5])
def test_single_layer_every_loss(loss, n):
    rng = np.random.default_rng(loss * 10 + n)
    ws = make_workspace([4, 3], [C.IDENTITY], loss, n, rng)
    assert_gradients_match(ws, n)


@pytest.mark.parametrize("act", HIDDEN_ACTS)
@pytest.mark.parametrize("loss", LOSSES)
def test_three_layer_net_every_activation_and_loss(act, loss):
    rng = np.random.default_rng(act * 7 + loss)
    n = 3
    ws = make_workspace([5, 6, 4, 3], [act, act, C.IDENTITY], loss, n, rng)
    assert_gradients_match(ws, n)


@pytest.mark.parametrize("out_act", [C.SIGMOID, C.TANH, C.RELU, C.LEAKY_RELU, C.SOFTMAX])
def test_mse_through_an_output_activation(out_act):
    rng = np.random.default_rng(out_act)
    ws = make_workspace([4, 5, 3], [C.TANH, out_act], C.LOSS_MSE, 7, rng)
    assert_gradients_match(ws, 7)


def test_ragged_rows_use_only_the_first_n():
    rng = np.random.default_rng(3)
    ws = make_workspace([4, 5, 3], [C.RELU, C.IDENTITY], C.LOSS_CROSS_ENTROPY, 8, rng)
    assert_gradients_match(ws, 5)  # a ragged last batch uses 5 of 8 buffer rows


@pytest.mark.parametrize(
    ("activation", "loss", "from_logits"),
    [
        (None, "cross_entropy", True),
        ("softmax", "cross_entropy", False),
        ("sigmoid", "mse", True),
        ("tanh", "mse", True),
        (None, "binary_cross_entropy", True),
        (None, "kl_divergence", True),
    ],
)
def test_object_api_backprop_matches_finite_differences(activation, loss, from_logits):
    rng = np.random.default_rng(0)
    model = fastnn.Sequential(
        [fastnn.Dense(4, 6, "tanh"), fastnn.Dense(6, 3, activation)], seed=1, dtype="float64"
    )
    X = rng.normal(size=(5, 4))
    if loss in ("cross_entropy",):
        y = rng.integers(0, 3, 5)
    elif loss == "kl_divergence":
        y = make_targets(C.LOSS_KL_DIVERGENCE, 5, 3, rng)
    else:
        y = rng.uniform(size=(5, 3))
    loss_obj = fastnn.losses.get_loss(loss)
    loss_obj.from_logits = from_logits

    def value() -> float:
        return loss_obj.forward(model.forward(X), y)

    value()
    model.backward(loss_obj.backward())
    for p, g in zip(model.parameters(), model.gradients(), strict=True):
        num = np.zeros_like(p)
        for i in range(p.size):
            old = p.flat[i]
            p.flat[i] = old + 1e-6
            plus = value()
            p.flat[i] = old - 1e-6
            minus = value()
            p.flat[i] = old
            num.flat[i] = (plus - minus) / 2e-6
        np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-7)
