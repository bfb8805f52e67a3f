"""Optimizers (``fastnn.optimizers``): arguments, the hyper-parameter vector, the step a fit
takes, and the state that carries from one fit to the next."""

from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import _codes as C
from fastnn.optimizers import OPTIMIZERS, SGD, Adam, Optimizer, get_optimizer


@pytest.mark.parametrize("lr", [0, -0.1, float("nan"), float("inf")])
def test_bad_learning_rate(lr):
    with pytest.raises(ValueError, match="lr"):
        SGD(lr)
    with pytest.raises(ValueError, match="lr"):
        Adam(lr)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SGD(0.1, momentum=1.0), "momentum must be < 1"),
        (lambda: SGD(0.1, momentum=-0.5), "momentum"),
        (lambda: SGD(0.1, nesterov=True), "nesterov=True needs momentum"),
        (lambda: SGD(0.1, weight_decay=-1e-3), "weight_decay"),
        (lambda: Adam(betas=(0.9, 1.0)), "betas"),
        (lambda: Adam(betas=(0.9,)), "betas"),
        (lambda: Adam(eps=0), "eps"),
    ],
)
def test_bad_hyper_parameters(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_hyper_vector_puts_each_value_in_its_slot():
    h = SGD(0.3, momentum=0.7, nesterov=True, weight_decay=0.01).hyper()
    assert h.shape == (C.N_HYPER,) and h.dtype == np.float64
    assert (h[C.H_LR], h[C.H_MOMENTUM], h[C.H_NESTEROV], h[C.H_WEIGHT_DECAY]) == (
        0.3, 0.7, 1.0, 0.01)  # fmt: skip
    h = Adam(0.02, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1).hyper()
    assert (h[C.H_LR], h[C.H_BETA1], h[C.H_BETA2], h[C.H_EPS], h[C.H_WEIGHT_DECAY]) == (
        0.02, 0.8, 0.95, 1e-6, 0.1)  # fmt: skip
    assert h[C.H_MOMENTUM] == h[C.H_NESTEROV] == 0.0


def test_codes_and_names():
    assert SGD(0.1).code == C.OPT_SGD and SGD(0.1, momentum=0.5).code == C.OPT_MOMENTUM
    assert Adam().code == C.OPT_ADAM
    assert isinstance(get_optimizer(None), SGD) and get_optimizer(None).lr == 0.01
    assert get_optimizer("Momentum").momentum == 0.9
    assert isinstance(get_optimizer("adam"), Adam)
    opt = Adam()
    assert get_optimizer(opt) is opt
    assert set(OPTIMIZERS) == {"sgd", "momentum", "adam"}
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'.*adam"):
        get_optimizer("rmsprop")
    with pytest.raises(ValueError, match="unknown optimizer"):
        get_optimizer(3)


def test_reset_forgets_the_state():
    opt = Adam()
    opt.state, opt.step = [np.zeros(3)], 5
    opt.reset()
    assert opt.state is None and opt.step == 0
    assert isinstance(opt, Optimizer)


@pytest.mark.parametrize(
    "make",
    [
        lambda: SGD(0.1, weight_decay=0.01),
        lambda: SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
        lambda: Adam(0.05, betas=(0.8, 0.9), weight_decay=0.01),
    ],
    ids=["sgd", "nesterov", "adam"],
)
def test_two_full_batch_steps_of_fit_are_the_formulas(make):
    """fit hands the optimizer's hyper-parameters and state to the kernels: two full-batch
    steps equal the textbook updates on gradients from the teaching path."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((8, 3)), rng.integers(0, 2, 8)
    model = fastnn.Sequential([fastnn.Dense(3, 2)], seed=0, dtype="float64")
    w = [p.copy() for p in model.parameters()]
    opt = make()
    model.fit(X, y, optimizer=opt, batch_size=None, epochs=2, shuffle=False, backend="numpy")

    probe = fastnn.Sequential([fastnn.Dense(3, 2)], seed=0, dtype="float64")
    loss = fastnn.losses.CrossEntropy()
    state = [[np.zeros_like(p) for p in w] for _ in range(2)]
    for t in (1, 2):
        probe.set_weights(w)
        loss.forward(probe.forward(X), y)
        probe.backward(loss.backward())
        for i, g in enumerate(probe.gradients()):
            g = g + opt.weight_decay * w[i]
            if isinstance(opt, Adam):
                (b1, b2), m, v = opt.betas, state[0][i], state[1][i]
                m[...] = b1 * m + (1 - b1) * g
                v[...] = b2 * v + (1 - b2) * g * g
                w[i] = w[i] - opt.lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + opt.eps)
            elif opt.momentum:
                v = state[0][i]
                v[...] = opt.momentum * v + g
                w[i] = w[i] - opt.lr * (g + opt.momentum * v if opt.nesterov else v)
            else:
                w[i] = w[i] - opt.lr * g
    for got, want in zip(model.parameters(), w, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    assert opt.step == 2


def test_state_persists_across_fit_calls_and_resets_for_a_new_architecture():
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((40, 3)), rng.integers(0, 2, 40)
    opt = Adam(0.01)
    model = fastnn.Sequential([fastnn.Dense(3, 4, "relu"), fastnn.Dense(4, 2)], seed=0)
    model.fit(X, y, optimizer=opt, batch_size=10, epochs=1)
    assert opt.step == 4 and len(opt.state) == 8
    model.fit(X, y, optimizer=opt, batch_size=10, epochs=1)
    assert opt.step == 8
    other = fastnn.Sequential([fastnn.Dense(3, 2)], seed=0)  # other shapes: start afresh
    other.fit(X, y, optimizer=opt, batch_size=10, epochs=1)
    assert opt.step == 4 and [s.shape for s in opt.state] == [(3, 2), (2,), (3, 2), (2,)]
