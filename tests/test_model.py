"""``Sequential`` (``fastnn.model``): structure, building, weights, the teaching path, inference.

Training itself (``fit``) is in ``test_training.py``; files in ``test_io.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import model as model_module
from fastnn.datasets import make_blobs


def mlp(dtype="float32", out=None, seed=0):
    return fastnn.Sequential([fastnn.Dense(4, 5, "relu"), fastnn.Dense(5, 3, out)], seed=seed,
                             dtype=dtype)  # fmt: skip


# Structure and building ----------------------------------------------------------------------
def test_bad_sequential_arguments():
    with pytest.raises(ValueError, match="at least one layer"):
        fastnn.Sequential([])
    with pytest.raises(TypeError, match="layer 1 is str"):
        fastnn.Sequential([fastnn.Dense(3, 4), "relu"])
    with pytest.raises(TypeError, match="float32"):
        fastnn.Sequential([fastnn.Dense(3, 4)], dtype="int32")


def test_layer_mismatch_names_the_layer_and_both_shapes():
    with pytest.raises(
        ValueError, match=r"layer 1: Dense\(5, .*\) expects inputs of shape \(n, 5\), got \(n, 4\)"
    ):
        fastnn.Sequential([fastnn.Dense(3, 4), fastnn.Dense(5, 2)])
    with pytest.raises(ValueError, match=r"layer 0: .*\(n, 3\), got \(n, 7\)"):
        fastnn.Sequential([fastnn.Dense(3, 4)], input_shape=(7,))


def test_building_fixes_shapes_and_draws_seeded_weights():
    model = mlp()
    assert model.input_shape == (4,) and model.output_shape == (3,)
    assert model.n_features == 4 and model.n_outputs == 3
    assert [p.shape for p in model.parameters()] == [(4, 5), (5,), (5, 3), (3,)]
    assert all(p.dtype == np.float32 for p in model.parameters())
    for a, b in zip(mlp().get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # the same seed, the same weights
    assert not np.array_equal(mlp(seed=1).parameters()[0], model.parameters()[0])
    assert mlp(dtype="float64").parameters()[0].dtype == np.float64


def test_a_first_layer_without_a_declared_shape_builds_at_the_first_data(scale_layer):
    model = fastnn.Sequential([scale_layer(2.0), fastnn.Dense(4, 3)], seed=0, dtype="float64")
    assert model.input_shape is None
    with pytest.raises(RuntimeError, match="not built"):
        model.summary()
    X = np.random.default_rng(0).standard_normal((6, 4))
    out = model.forward(X)
    assert model.input_shape == (4,) and out.shape == (6, 3)
    W, b = model.layers[1].W, model.layers[1].b
    np.testing.assert_allclose(model.predict_proba(X), (2.0 * X) @ W + b, rtol=1e-12)


def test_parameters_are_the_arrays_get_weights_are_copies():
    model = mlp()
    params, copies = model.parameters(), model.get_weights()
    assert params[0] is model.layers[0].W and params[3] is model.layers[1].b
    copies[0][...] = 0
    assert model.layers[0].W.any()


def test_set_weights_checks_count_shapes_and_values():
    model = mlp()
    weights = model.get_weights()
    with pytest.raises(ValueError, match="expected 4 arrays"):
        model.set_weights(weights[:3])
    bad = [w.copy() for w in weights]
    bad[0] = bad[0][:2]
    with pytest.raises(ValueError, match="shape"):
        model.set_weights(bad)
    bad = [w.copy() for w in weights]
    bad[2][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.set_weights(bad)
    np.testing.assert_array_equal(model.parameters()[0], weights[0])  # refused: unchanged
    new = [w + 1 for w in weights]
    before = model.parameters()[0]
    model.set_weights(new)
    assert model.parameters()[0] is before  # copied in place
    np.testing.assert_array_equal(before, new[0])


def test_summary_lists_layers_shapes_and_counts():
    text = fastnn.Sequential([fastnn.Dense(4, 5, "gelu"), fastnn.Dense(5, 3)], seed=0).summary()
    lines = text.splitlines()
    assert lines[1].startswith("0: Dense(gelu)") and "(None, 5)" in lines[1]
    assert lines[1].rstrip().endswith("25") and lines[2].rstrip().endswith("18")
    assert lines[-1] == "total parameters: 43  (dtype float32)"
    assert "Dense(4, 5, activation='gelu')" in repr(fastnn.Sequential([fastnn.Dense(4, 5, "gelu")]))


# The teaching path ---------------------------------------------------------------------------
def test_forward_and_backward_by_hand():
    model = mlp(dtype="float64", out="softmax")
    X = np.random.default_rng(0).standard_normal((7, 4))
    out = model.forward(X)
    W0, b0, W1, b1 = model.parameters()
    h = np.maximum(X @ W0 + b0, 0)
    z = h @ W1 + b1
    expected = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out, expected, rtol=1e-12)  # the declared softmax is applied
    grad_x = model.backward(np.ones_like(out))
    assert grad_x.shape == X.shape
    assert [g.shape for g in model.gradients()] == [p.shape for p in model.parameters()]


# Inference -------------------------------------------------------------------------------------
def test_predict_in_chunks_equals_one_pass(monkeypatch):
    model = mlp(dtype="float64")
    X = np.random.default_rng(1).standard_normal((23, 4))
    whole = model.predict_proba(X)
    monkeypatch.setattr(model_module, "PREDICT_CHUNK", 5)
    np.testing.assert_allclose(model.predict_proba(X), whole, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(model.predict(X), np.argmax(whole, axis=1))


def test_outputs_seen_by_a_fused_loss_and_by_predict():
    X, y = make_blobs(120, 4, 3, spread=3.0, seed=0)
    model = mlp(out="softmax", dtype="float64")
    model.fit(X, y, epochs=3, optimizer=fastnn.SGD(0.1), backend="numpy")
    logits, proba = model.decision_function(X), model.predict_proba(X)
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(proba, softmax / softmax.sum(axis=1, keepdims=True), rtol=1e-10)
    assert not np.allclose(logits.sum(axis=1), 1.0)  # the softmax is not applied twice
    assert model.is_classifier()
    np.testing.assert_array_equal(model.predict(X), np.argmax(proba, axis=1))


def test_evaluate_matches_the_loss_of_the_outputs():
    X, y = make_blobs(90, 4, 3, spread=3.0, seed=1)
    model = mlp(dtype="float64")
    model.fit(X, y, epochs=2, backend="numpy")
    scores = model.evaluate(X, y)
    logits = model.decision_function(X)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    assert scores["loss"] == pytest.approx(-logp[np.arange(90), y].mean(), rel=1e-10)
    assert scores["accuracy"] == pytest.approx(np.mean(np.argmax(logits, axis=1) == y))
    mse = model.evaluate(X, np.eye(3)[y], loss="mse")
    assert set(mse) == {"loss"}  # regression targets: no accuracy
    with pytest.raises(ValueError, match="90 samples but y has 89"):
        model.evaluate(X, y[:89])


def test_mse_on_labels_is_a_classifier_and_on_targets_a_regressor():
    X, y = make_blobs(60, 4, 3, spread=3.0, seed=2)
    model = mlp()
    model.fit(X, y, loss="mse", epochs=1, backend="numpy")
    assert model.is_classifier() and model.predict(X).shape == (60,)
    model.fit(X, np.eye(3)[y], loss="mse", epochs=1, backend="numpy")
    assert not model.is_classifier() and model.predict(X).shape == (60, 3)


def test_load_is_one_function_everywhere(tmp_path):
    model = mlp()
    model.save(tmp_path / "m.npz")
    assert fastnn.load is model_module.load
    for loader in (fastnn.load, fastnn.Sequential.load):
        loaded = loader(tmp_path / "m.npz")
        assert isinstance(loaded, fastnn.Sequential)
        np.testing.assert_array_equal(loaded.parameters()[0], model.parameters()[0])
