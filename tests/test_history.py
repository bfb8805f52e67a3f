"""``History`` (``fastnn.history``): counts, the per-epoch series, JSON export and the plot."""

from __future__ import annotations

import json

import numpy as np
import pytest

import fastnn
from fastnn.history import History


@pytest.mark.parametrize(
    ("n", "batch", "per_epoch"), [(300, 1, 300), (300, 32, 10), (300, 300, 1), (7, 2, 4), (5, 0, 0)]
)
def test_iterations_per_epoch_is_the_ceiling(n, batch, per_epoch):
    assert History(batch_size=batch, n_samples=n).iterations_per_epoch == per_epoch


def test_history_dict_holds_only_the_series_with_values():
    h = History(batch_size=10, n_samples=25)
    assert h.history == {}
    h.loss += [1.0, 0.5]
    h.lr += [0.1, 0.1]
    h.epochs, h.iterations = 2, 6
    assert h.history == {"loss": [1.0, 0.5], "lr": [0.1, 0.1]}
    h.history["loss"].append(9.0)  # a copy: the record is not changed through it
    assert h.loss == [1.0, 0.5]
    d = h.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert (d["epochs"], d["iterations"], d["iterations_per_epoch"]) == (2, 6, 3)
    assert d["batch_size"] == 10 and d["n_samples"] == 25 and d["diagnostics"] == []


def test_fit_fills_every_series_once_per_epoch():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 3)), rng.integers(0, 2, 40)
    model = fastnn.Sequential([fastnn.Dense(3, 2)], seed=0)
    h = model.fit(X[:30], y[:30], epochs=3, batch_size=8, validation_data=(X[30:], y[30:]),
                  backend="numpy")  # fmt: skip
    for series in (h.loss, h.accuracy, h.val_loss, h.val_accuracy, h.seconds, h.eval_seconds,
                   h.lr):  # fmt: skip
        assert len(series) == 3
    assert h.iterations == 3 * 4 and h.epochs == 3
    assert all(s >= 0 for s in h.seconds + h.eval_seconds)


def test_history_plot_for_regression_and_empty_history(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 3))
    model = fastnn.Sequential([fastnn.Dense(3, 2)], seed=0)
    history = model.fit(X, X[:, :2], loss="mse", epochs=2, backend="numpy")
    assert history.accuracy == []  # regression: the loss panel only
    history.plot(tmp_path / "loss.png")
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="no epoch"):
        fastnn.History().plot(tmp_path / "empty.png")
