"""fit(diagnostics=True): per-layer statistics, and warnings that name the layer and the remedy."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

import fastnn
from fastnn.datasets import make_blobs
from fastnn.diagnostics import (
    DeadUnitsWarning,
    ExplodingGradientWarning,
    GradientWarning,
    VanishingGradientWarning,
    format_epoch,
)
from fastnn.losses import CrossEntropy


def blobs(n: int = 600, d: int = 20, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    return make_blobs(n, d, k, spread=2.0, seed=seed)


def mlp(d: int, hidden: list[int], k: int, act: str, init: str = "auto", dtype="float32"):
    sizes = [d, *hidden]
    pairs = zip(sizes[:-1], sizes[1:], strict=True)
    layers = [fastnn.Dense(a, b, act, init=init) for a, b in pairs]
    return fastnn.Sequential([*layers, fastnn.Dense(sizes[-1], k)], seed=0, dtype=dtype)


def fit_recording(model, X, y, **kwargs):
    """fit with diagnostics; returns (history, list of caught GradientWarning)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(X, y, diagnostics=True, backend="numpy", **kwargs)
    return history, [w for w in caught if issubclass(w.category, GradientWarning)]


def test_healthy_relu_network_is_quiet_and_records_every_layer():
    X, y = blobs()
    model = mlp(20, [32, 32], 3, "relu")
    history, caught = fit_recording(
        model, X, y, optimizer=fastnn.SGD(0.05, momentum=0.9), batch_size=32, epochs=3
    )
    assert caught == []
    assert history.accuracy[-1] > 0.95
    assert len(history.diagnostics) == 3
    for epoch, record in enumerate(history.diagnostics, start=1):
        assert record["epoch"] == epoch and record["warnings"] == []
        assert [s["layer"] for s in record["layers"]] == [0, 1, 2]
        for s in record["layers"]:
            assert s["grad_norm"] > 0 and s["weight_norm"] > 0 and s["update_ratio"] > 0
        assert record["layers"][0]["dead_fraction"] is not None
        assert record["layers"][2]["dead_fraction"] is None  # output layer: not a ReLU
    json.dumps(history.to_dict())  # serializable for --json
    assert "update/weight" in format_epoch(history.diagnostics[0])


def test_deep_sigmoid_with_tiny_weights_warns_vanishing_gradients():
    X, y = blobs()
    model = mlp(20, [32] * 5, 3, "sigmoid", init="normal")
    history, caught = fit_recording(model, X, y, optimizer=fastnn.SGD(0.1), batch_size=32)
    vanishing = [w for w in caught if w.category is VanishingGradientWarning]
    assert vanishing, [str(w.message) for w in caught]
    message = str(vanishing[0].message)
    assert message.startswith("layer 0 (sigmoid)")
    assert "ReLU" in message and "Xavier" in message  # the remedy is named
    rms = [s["grad_rms"] for s in history.diagnostics[0]["layers"]]
    assert rms[0] < rms[-1] * 1e-3  # shrinks toward the input
    assert any("vanish" in m for m in history.diagnostics[0]["warnings"])


def test_dead_relu_units_are_counted_and_reported():
    X, y = blobs()
    model = mlp(20, [8], 3, "relu")
    weights = model.get_weights()
    weights[1][:6] = -1e3  # six of the eight hidden units can never be active
    weights[1][6:] = 1e3  # two always are
    model.set_weights(weights)
    history, caught = fit_recording(model, X, y, optimizer=fastnn.SGD(0.01), batch_size=50)
    assert history.diagnostics[0]["layers"][0]["dead_fraction"] == pytest.approx(0.75)
    dead = [w for w in caught if w.category is DeadUnitsWarning]
    assert len(dead) == 1  # once per layer and kind, not every epoch
    assert "75%" in str(dead[0].message) and "learning rate" in str(dead[0].message)


def test_too_high_learning_rate_warns_exploding_then_dead_units():
    X, y = blobs()
    model = mlp(20, [32, 32], 3, "relu")
    history, caught = fit_recording(
        model, X, y, optimizer=fastnn.SGD(1.0, momentum=0.9), batch_size=32, epochs=3
    )
    kinds = {w.category for w in caught}
    assert ExplodingGradientWarning in kinds and DeadUnitsWarning in kinds
    exploding = next(str(w.message) for w in caught if w.category is ExplodingGradientWarning)
    assert "clip_grad_norm" in exploding and "learning rate" in exploding


def test_statistics_match_a_hand_computed_full_batch_step():
    """Full batch, plain SGD: epoch 1 sees the initial gradient, epoch 2 measures its step."""
    X, y = blobs(n=200, d=6)
    model = mlp(6, [5], 3, "tanh", dtype="float64")
    # The gradient at the initial weights, through the explicit forward/backward path.
    reference = mlp(6, [5], 3, "tanh", dtype="float64")
    loss = CrossEntropy()
    loss.forward(reference.forward(X), y)
    reference.backward(loss.backward())
    W0 = [layer.W.copy() for layer in reference.layers]
    lr = 0.3
    history, _ = fit_recording(
        model, X, y, optimizer=fastnn.SGD(lr), batch_size=None, epochs=2, shuffle=False
    )
    first, second = history.diagnostics
    for i, layer in enumerate(reference.layers):
        grad_norm = np.linalg.norm(layer.dW)
        assert first["layers"][i]["grad_norm"] == pytest.approx(grad_norm, rel=1e-10)
        assert first["layers"][i]["grad_rms"] == pytest.approx(grad_norm / math.sqrt(layer.W.size))
        assert first["layers"][i]["update_ratio"] is None  # no step measured yet
        expected = lr * grad_norm / np.linalg.norm(W0[i])
        assert second["layers"][i]["update_ratio"] == pytest.approx(expected, rel=1e-10)
        assert second["layers"][i]["weight_norm"] == pytest.approx(
            np.linalg.norm(model.layers[i].W), rel=1e-12
        )


@pytest.mark.parametrize("backend", [b for b in fastnn.available_backends() if b != "numpy"])
def test_every_compiled_backend_gives_the_reference_statistics(backend):
    X, y = blobs(n=300)
    records = {}
    for name in ("numpy", backend):
        model = mlp(20, [16, 16], 3, "relu", dtype="float64")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GradientWarning)
            history = model.fit(
                X,
                y,
                optimizer=fastnn.Adam(1e-2),
                batch_size=64,
                epochs=2,
                diagnostics=True,
                backend=name,
                seed=1,
            )
        records[name] = history.diagnostics
    for ref, got in zip(records["numpy"], records[backend], strict=True):
        for a, b in zip(ref["layers"], got["layers"], strict=True):
            for key in ("grad_norm", "weight_norm", "update_ratio", "dead_fraction"):
                if a[key] is None:  # e.g. dead_fraction of a layer that is not ReLU
                    assert b[key] is None, (key, a["layer"])
                else:
                    assert b[key] == pytest.approx(a[key], rel=1e-6), (key, a["layer"])
