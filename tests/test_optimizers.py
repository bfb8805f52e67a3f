"""Optimizer settings are validated whenever they are set, and fit uses what was set last."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastnn
from fastnn import _codes as C
from fastnn.datasets import make_blobs

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
