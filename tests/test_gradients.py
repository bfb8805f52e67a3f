"""Finite-difference gradient checks (float64, central differences) of the reference backend.

Every activation of the registry (``fastnn._codes.ACTIVATION_CODES``, the ones that keep z
included) in hidden layers x every loss kernel (``LOSS_KERNEL_NAMES``), one-layer and
three-layer nets, batch 1 and odd batch sizes — through the same Workspace path that ``fit``
uses, and through the object API (``Sequential.forward`` / ``backward`` with a loss object).
"""

from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import _codes as C
from fastnn.backends import eager
from fastnn.backends import numpy as ref
from fastnn.backends.workspace import Workspace
from fastnn.layers import ACTIVATIONS

ACTS = sorted(C.ACTIVATION_NAMES)
ACT_IDS = [C.ACTIVATION_NAMES[a] for a in ACTS]
LOSSES = sorted(C.LOSS_KERNEL_NAMES)
LOSS_IDS = [C.LOSS_KERNEL_NAMES[code] for code in LOSSES]


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


@pytest.fixture
def make_workspace(dense_stack):
    """Factory: a float64 Workspace with N(0, 0.7^2) weights and a filled first batch."""

    def make(sizes, acts, loss, n, rng, alpha=0.1):
        layers = dense_stack(sizes, acts, np.float64, alpha=alpha)
        for layer in layers:
            layer.W[...] = rng.normal(size=layer.W.shape) * 0.7
            layer.b[...] = rng.normal(size=layer.b.shape) * 0.1
        ws = Workspace(layers, acts, loss, C.OPT_SGD, np.zeros(C.N_HYPER), n, np.float64)
        ws.x_batch[:] = rng.normal(size=ws.x_batch.shape)
        ws.y_batch[:] = make_targets(loss, n, sizes[-1], rng)
        return ws

    return make


def numeric_grad(ws: Workspace, param: np.ndarray, n: int, eps: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(param)
    flat, g = param.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = eager.forward_backward(ref, ws, n)
        flat[i] = old - eps
        minus = eager.forward_backward(ref, ws, n)
        flat[i] = old
        g[i] = (plus - minus) / (2 * eps)
    return grad


def assert_gradients_match(ws: Workspace, n: int) -> None:
    eager.forward_backward(ref, ws, n)
    analytic = [d.copy() for d in ws.parameter_gradients()]
    params = [p for slot in ws.slots for p in slot.params]
    assert len(params) == len(analytic) > 0
    for p, a in zip(params, analytic, strict=True):
        num = numeric_grad(ws, p, n)
        np.testing.assert_allclose(a, num, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
@pytest.mark.parametrize("n", [1, 5])
def test_single_layer_every_loss(make_workspace, loss, n):
    rng = np.random.default_rng(loss * 10 + n)
    ws = make_workspace([4, 3], [C.IDENTITY], loss, n, rng)
    assert_gradients_match(ws, n)


@pytest.mark.parametrize("act", ACTS, ids=ACT_IDS)
@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
def test_three_layer_net_every_activation_and_loss(make_workspace, act, loss):
    rng = np.random.default_rng(act * 7 + loss)
    n = 3
    ws = make_workspace([5, 6, 4, 3], [act, act, C.IDENTITY], loss, n, rng)
    if act in C.NEEDS_PREACTIVATION:  # the path under test keeps z for these, and only these
        assert all(z.shape == (n, k) for z, k in zip(ws.preacts[:2], (6, 4), strict=True))
    assert_gradients_match(ws, n)


@pytest.mark.parametrize("out_act", [a for a in ACTS if a != C.IDENTITY],
                         ids=[C.ACTIVATION_NAMES[a] for a in ACTS if a != C.IDENTITY])  # fmt: skip
def test_mse_through_an_output_activation(make_workspace, out_act):
    rng = np.random.default_rng(out_act)
    ws = make_workspace([4, 5, 3], [C.TANH, out_act], C.LOSS_MSE, 7, rng)
    assert_gradients_match(ws, 7)


@pytest.mark.parametrize("alpha", [0.3, 2.0])
def test_elu_alpha_and_leaky_slope_reach_the_derivative(make_workspace, alpha):
    rng = np.random.default_rng(11)
    ws = make_workspace([4, 6, 5, 3], [C.ELU, C.LEAKY_RELU, C.IDENTITY], C.LOSS_MSE, 6, rng,
                        alpha=alpha)  # fmt: skip
    assert list(ws.alphas) == [alpha, alpha, 0.0]
    assert_gradients_match(ws, 6)


def test_ragged_rows_use_only_the_first_n(make_workspace):
    rng = np.random.default_rng(3)
    ws = make_workspace([4, 5, 3], [C.RELU, C.IDENTITY], C.LOSS_CROSS_ENTROPY, 8, rng)
    assert_gradients_match(ws, 5)  # a ragged last batch uses 5 of 8 buffer rows


def test_ragged_rows_with_a_z_activation(make_workspace):
    act = min(C.NEEDS_PREACTIVATION)
    rng = np.random.default_rng(4)
    ws = make_workspace([4, 5, 3], [act, C.IDENTITY], C.LOSS_CROSS_ENTROPY, 8, rng)
    ws.preacts[0][...] = np.nan  # stale rows beyond n must never be read
    assert_gradients_match(ws, 5)


def object_api_check(model, X, y, loss_obj):
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
    object_api_check(model, X, y, loss_obj)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_object_api_every_hidden_activation(activation):
    """``Layer.forward``/``backward`` (the teaching path) with every activation name."""
    rng = np.random.default_rng(len(activation))
    model = fastnn.Sequential(
        [fastnn.Dense(4, 5, activation, alpha=0.7), fastnn.Dense(5, 3)], seed=2, dtype="float64"
    )
    object_api_check(model, rng.normal(size=(4, 4)), rng.integers(0, 3, 4),
                     fastnn.losses.get_loss("cross_entropy"))  # fmt: skip
