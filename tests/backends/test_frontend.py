"""``fastnn.backends._frontend.bind``: the one validate-cast-call layer of compiled backends.

A recording ``impl`` stands in for compiled code: it shows what ``bind`` hands through
(plain Python scalars, the contract's arguments in order) and that nothing reaches it when an
argument is wrong.
"""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import numpy as np
import pytest

from fastnn import _codes as C
from fastnn.backends import _frontend
from fastnn.backends import numpy as ref


@pytest.fixture
def recorded():
    calls = []

    def recorder(name, result=None):
        def kernel(*args):
            calls.append((name, args))
            return result

        return kernel

    impl = SimpleNamespace(**{name: recorder(name) for name in _frontend.contract_names()})
    for name in _frontend.LOSS_NAMES:
        setattr(impl, name, recorder(name, np.float32(0.25)))
    impl.train_epoch = recorder("train_epoch", np.int64(3))
    return SimpleNamespace(**_frontend.bind("fake", impl)), calls


def test_bind_publishes_the_contract_with_the_reference_signatures(recorded):
    B, _ = recorded
    for name in _frontend.contract_names():
        fn = getattr(B, name)
        assert fn.__name__ == name
        assert list(inspect.signature(fn).parameters) == list(
            inspect.signature(getattr(ref, name)).parameters)  # fmt: skip
        assert fn.__doc__.startswith("fake backend: ")
        assert (ref.__dict__[name].__doc__ or "").strip() in fn.__doc__


def test_scalars_reach_the_kernel_as_plain_python_values(recorded):
    B, calls = recorded
    x, W, b = np.ones((2, 3)), np.ones((3, 4)), np.ones(4)
    out, z = np.empty((2, 4)), np.empty((2, 4))
    B.dense_forward(x, W, b, np.int64(C.GELU), np.float32(0.5), z, out)
    name, args = calls[-1]
    assert name == "dense_forward" and args[0] is x and args[5] is z and args[6] is out
    assert type(args[3]) is int and type(args[4]) is float
    p, g = np.ones(5), np.ones(5)
    B.momentum_update(p, g, np.zeros(5), np.float64(0.1), np.float32(0.9), np.bool_(True), 0)
    assert [type(a) for a in calls[-1][1][3:]] == [float, float, bool, float]
    B.adam_update(p, g, np.zeros(5), np.zeros(5), 1e-3, 0.9, 0.999, 1e-8, 0.0, np.int64(4))
    assert type(calls[-1][1][-1]) is int
    value = B.mse(np.ones((2, 3)), np.ones((2, 3)), np.empty((2, 3)))
    assert type(value) is float and value == 0.25


def test_nothing_reaches_the_kernel_when_an_argument_is_wrong(recorded):
    B, calls = recorded
    x, W, b, out = np.ones((2, 3)), np.ones((3, 4)), np.ones(4), np.empty((2, 4))
    bad_calls = [
        lambda: B.dense_forward(x, W, b, C.GELU, 0.0, None, out),  # z needed
        lambda: B.dense_forward(x, W, b, C.RELU, 0.0, None, x),  # out shape
        lambda: B.dense_backward(x, W, None, out, out, C.RELU, 0.0, W, b, None),  # overlap
        lambda: B.sgd_update(np.ones((2, 2)), np.ones((2, 2)), 0.1, 0.0),  # not flat
        lambda: B.softmax_cross_entropy(out, np.array([0, 9]), np.empty_like(out)),
    ]
    for call in bad_calls:
        with pytest.raises((ValueError, TypeError)):
            call()
    assert calls == []
