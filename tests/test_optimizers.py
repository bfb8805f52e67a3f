"""Optimizers (``fastnn.optimizers``): arguments, the hyper-parameter vector, the step a fit
takes, the state that carries from one fit to the next, and settings validated whenever they
are set (fit uses what was set last)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastnn
from fastnn import _codes as C
from fastnn.datasets import make_blobs
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


# -- settings changed after construction ----------------------------------------------------
X, Y = make_blobs(60, 4, 3, seed=0)
SETTINGS = {
    # name: (optimizer factory, good value, bad values)
    "lr": (fastnn.SGD, 0.05, [-0.1, 0.0, math.nan, math.inf, "0.1", None, True]),
    "weight_decay": (fastnn.Adam, 1e-4, [-1e-4, math.nan, "0"]),
    "momentum": (fastnn.SGD, 0.5, [-0.1, 1.0, 1.5, math.nan]),
    "betas": (fastnn.Adam, (0.8, 0.99), [(1, 1), (0.9, 1.0), (-0.1, 0.9), (0.9,), 0.9, "ab"]),
    "eps": (fastnn.Adam, 1e-7, [0.0, -1e-8, math.nan]),
    "nesterov": (lambda: fastnn.SGD(momentum=0.9), True, ["yes", 1, None]),
}


@pytest.mark.parametrize("name", SETTINGS)
def test_a_bad_value_set_later_raises_and_keeps_the_old_one(name):
    make, good, bad_values = SETTINGS[name]
    opt = make()
    setattr(opt, name, good)
    assert getattr(opt, name) == good
    for bad in bad_values:
        with pytest.raises((TypeError, ValueError), match=name):
            setattr(opt, name, bad)
        assert getattr(opt, name) == good  # a refused value changes nothing


@pytest.mark.parametrize("name", SETTINGS)
def test_the_constructor_refuses_the_same_values(name):
    make, _, bad_values = SETTINGS[name]
    cls = type(make())
    kwargs = {"momentum": 0.9} if name == "nesterov" else {}
    for bad in bad_values:
        with pytest.raises((TypeError, ValueError), match=name):
            cls(**kwargs, **{name: bad})


def test_nesterov_and_momentum_stay_consistent():
    opt = fastnn.SGD(momentum=0.9, nesterov=True)
    with pytest.raises(ValueError, match="nesterov"):
        opt.momentum = 0.0
    opt.nesterov = False
    opt.momentum = 0.0
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        opt.nesterov = True


def test_momentum_set_later_changes_the_kernel_used():
    opt = fastnn.SGD(0.1)
    assert opt.code == C.OPT_SGD
    opt.momentum = 0.9
    assert opt.code == C.OPT_MOMENTUM and opt.hyper()[C.H_MOMENTUM] == 0.9


def fit_weights(opt: fastnn.optimizers.Optimizer, epochs: int = 2) -> list[np.ndarray]:
    model = fastnn.Sequential([fastnn.Dense(4, 8, "relu"), fastnn.Dense(8, 3)], seed=0)
    model.fit(X, Y, optimizer=opt, epochs=epochs, seed=0, backend="numpy")
    return model.get_weights()


@pytest.mark.parametrize(
    ("make", "name", "value"),
    [
        (fastnn.SGD, "lr", 0.3),
        (fastnn.SGD, "momentum", 0.8),
        (fastnn.SGD, "weight_decay", 0.01),
        (fastnn.Adam, "betas", (0.5, 0.9)),
        (fastnn.Adam, "eps", 1e-3),
    ],
)
def test_fit_trains_with_the_value_set_after_construction(make, name, value):
    changed = make()
    setattr(changed, name, value)
    direct = make(**{name: value})
    for a, b in zip(fit_weights(changed), fit_weights(direct), strict=True):
        np.testing.assert_array_equal(a, b)
    untouched, with_value = fit_weights(make()), fit_weights(direct)
    assert any(not np.array_equal(a, b) for a, b in zip(untouched, with_value, strict=True))
