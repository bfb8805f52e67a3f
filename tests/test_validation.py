"""Bad input gets a clear exception that names the problem."""

from __future__ import annotations

import numpy as np
import pytest

import fastnn


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


@pytest.mark.parametrize("lr", [0, -0.1, float("nan"), float("inf")])
def test_bad_learning_rate(lr):
    with pytest.raises(ValueError, match="lr"):
        fastnn.SGD(lr)
    with pytest.raises(ValueError, match="lr"):
        fastnn.Adam(lr)


def test_bad_layer_arguments():
    with pytest.raises(ValueError, match="unknown activation 'swish'.*relu"):
        fastnn.Dense(3, 4, "swish")
    with pytest.raises(ValueError, match="unknown init 'lecun'.*xavier"):
        fastnn.Dense(3, 4, init="lecun")
    with pytest.raises(ValueError, match="in_features"):
        fastnn.Dense(0, 4)
    with pytest.raises(ValueError, match="layer 1 expects 5 inputs but layer 0 has 4"):
        fastnn.Sequential([fastnn.Dense(3, 4), fastnn.Dense(5, 2)])
    with pytest.raises(TypeError, match="float32"):
        fastnn.Sequential([fastnn.Dense(3, 4)], dtype="int32")
    with pytest.raises(ValueError, match="at least one layer"):
        fastnn.Sequential([])


def test_loss_needs_logits_not_relu(data):
    model = fastnn.Sequential([fastnn.Dense(4, 3, "relu")])
    with pytest.raises(ValueError, match="logits"):
        model.fit(*data)


def test_inputs_are_converted(model, data):
    X, y = data
    for variant in (X.astype(np.float16), X.astype(np.float64), np.asfortranarray(X),
                    (X * 10).astype(np.int64), X[:, ::1][::1]):  # fmt: skip
        model.fit(variant, y, epochs=1)
    model.fit(X.tolist(), y.tolist())


def test_set_weights_checks_shapes(model):
    weights = model.get_weights()
    weights[0] = weights[0][:2]
    with pytest.raises(ValueError, match="shape"):
        model.set_weights(weights)


def test_backend_names(monkeypatch):
    monkeypatch.setattr(fastnn.backends, "_current", fastnn.backends._current)  # restored after
    with pytest.raises(ValueError, match="unknown backend"):
        fastnn.set_backend("gpu")
    assert "numpy" in fastnn.available_backends()
    fastnn.set_backend("numpy")
    assert fastnn.get_backend() == "numpy"
    status = fastnn.backend_status()
    assert status["numpy"] == "ok" and set(status) == {"numpy", "numba", "cython"}


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
