"""Bad input gets a clear exception that names the problem."""

from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn._validation import check_X


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(20, 4)).astype(np.float32), rng.integers(0, 3, 20)


@pytest.fixture
def model():
    return fastnn.Sequential([fastnn.Dense(4, 5, "relu"), fastnn.Dense(5, 3)], seed=0)


@pytest.mark.parametrize(
    ("X", "message"),
    [
        (np.zeros(20), "2-D"),
        (np.zeros((20, 4, 1)), "2-D"),
        (np.zeros((20, 5)), "5 features"),
        (np.zeros((0, 4)), "empty"),
        (np.array([["a"] * 4] * 20), "real numbers"),
        (np.full((20, 4), np.nan), "NaN"),
        (np.full((20, 4), np.inf), "NaN or infinite"),
    ],
)
def test_bad_X(model, data, X, message):
    with pytest.raises((ValueError, TypeError), match=message):
        model.fit(X, data[1][: len(X)] if len(X) else data[1][:0])


def test_length_mismatch(model, data):
    with pytest.raises(ValueError, match="20 samples but y has 19"):
        model.fit(data[0], data[1][:19])


@pytest.mark.parametrize(
    ("y", "message"),
    [
        (np.full(20, 3), r"0\.\.2"),
        (np.full(20, -1), r"0\.\.2"),
        (np.full(20, 0.5), "non-integers"),
        (np.full(20, np.nan), "NaN"),
        (np.array(["x"] * 20), "integers"),
    ],
)
def test_bad_labels(model, data, y, message):
    with pytest.raises((ValueError, TypeError), match=message):
        model.fit(data[0], y)


def test_bad_soft_targets(model, data):
    with pytest.raises(ValueError, match="probabilities"):
        model.fit(data[0], np.full((20, 3), 0.5))
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        model.fit(data[0], np.full((20, 4), 0.25), loss="mse")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": -3}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"epochs": -1}, "epochs"),
        ({"optimizer": fastnn.SGD(0.1), "loss": "hinge"}, "unknown loss 'hinge'.*cross_entropy"),
        ({"optimizer": "rmsprop"}, "unknown optimizer.*adam"),
        ({"backend": "cuda"}, "unknown backend 'cuda'.*numpy"),
        ({"clip_grad_norm": 0}, "clip_grad_norm"),
    ],
)
def test_bad_fit_arguments(model, data, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        model.fit(*data, **kwargs)


def test_loss_needs_logits_not_relu(data):
    model = fastnn.Sequential([fastnn.Dense(4, 3, "relu")])
    with pytest.raises(ValueError, match="logits"):
        model.fit(*data)


def trained_from(X, y):
    """Weights after one seeded epoch on ``X`` (the reference backend: bit-reproducible)."""
    model = fastnn.Sequential([fastnn.Dense(4, 5, "relu"), fastnn.Dense(5, 3)], seed=0)
    model.fit(X, y, epochs=1, seed=1, backend="numpy")
    return model.get_weights()


def test_inputs_are_converted(data):
    """Integers, float16/float64, lists and non-contiguous arrays are converted once, to the
    array of the model dtype: training on them equals training on that array."""
    X, y = data
    wide = np.repeat(X, 2, axis=1)  # every other column is X: wide[:, ::2] is a strided view
    variants = {
        "float16": X.astype(np.float16),
        "float64": X.astype(np.float64),
        "fortran": np.asfortranarray(X),
        "int64": (X * 10).astype(np.int64),
        "strided": wide[:, ::2],
        "list": X.tolist(),
    }
    assert not variants["strided"].flags.c_contiguous
    assert not variants["fortran"].flags.c_contiguous
    for name, variant in variants.items():
        expected = np.ascontiguousarray(variant, dtype=np.float32)
        converted = check_X(variant, 4, np.dtype(np.float32))
        assert converted.flags.c_contiguous and converted.dtype == np.float32, name
        np.testing.assert_array_equal(converted, expected, err_msg=name)
        for a, b in zip(trained_from(variant, y), trained_from(expected, y), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)
    np.testing.assert_array_equal(check_X(wide[:, ::2], 4, np.dtype(np.float32)), X)
    for a, b in zip(trained_from(X, y.tolist()), trained_from(X, y), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("value", [True, False, np.bool_(True), np.bool_(False)])
def test_check_bool_accepts_bools(value):
    from fastnn._validation import check_bool

    assert check_bool("shuffle", value) is bool(value)


@pytest.mark.parametrize("value", ["no", "False", 0, 1, None, 1.0, [True]])
def test_check_bool_refuses_everything_else(value):
    from fastnn._validation import check_bool

    with pytest.raises(TypeError, match=r"shuffle must be True or False, got"):
        check_bool("shuffle", value)


def test_finite_values_beyond_float32_are_not_called_infinite(model, data):
    X = data[0].astype(np.float64)
    X[2, 1], X[5, 3] = 1e39, -3e40
    with pytest.raises(ValueError, match=r"2 value\(s\) out of float32 range .* 3e\+40"):
        model.fit(X, data[1])
    X[7, 0] = np.inf  # a true infinity is still called one
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        model.fit(X, data[1])
    model64 = fastnn.Sequential([fastnn.Dense(4, 3)], seed=0, dtype="float64")
    X[7, 0] = 0.0
    assert np.isfinite(model64.predict_proba(X)).all()  # float64 holds them
