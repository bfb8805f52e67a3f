"""Callbacks on fit: EarlyStopping, ModelCheckpoint, ProgressBar; divergence.

The learning-rate schedules (callbacks too) are in ``test_schedules.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastnn
from fastnn.datasets import make_blobs


def blobs(n: int = 400, d: int = 10, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    return make_blobs(n, d, k, spread=2.0, seed=seed)


def small_model(seed: int = 0) -> fastnn.Sequential:
    return fastnn.Sequential([fastnn.Dense(10, 16, "relu"), fastnn.Dense(16, 3)], seed=seed)


class WeightsAtEpochBegin(fastnn.Callback):
    def on_train_begin(self) -> None:
        self.weights = []

    def on_epoch_begin(self, epoch: int) -> None:
        self.weights.append(self.model.get_weights())


# -- EarlyStopping -------------------------------------------------------------------------------
def test_early_stopping_stops_after_patience_and_restores_the_best_weights():
    X, y = blobs()
    # "max" on a decreasing loss: the first epoch stays the best, so it stops after 1 + patience.
    stop = fastnn.EarlyStopping(monitor="loss", patience=2, mode="max")
    seen = WeightsAtEpochBegin()
    model = small_model()
    history = model.fit(X, y, optimizer=fastnn.SGD(0.05), epochs=10, callbacks=[seen, stop], seed=0)
    assert history.epochs == 3 and stop.stopped_epoch == 2 and stop.best_epoch == 0
    assert history.loss[0] > history.loss[1] > history.loss[2]
    assert stop.best == history.loss[0]
    for restored, after_first in zip(model.get_weights(), seen.weights[1], strict=True):
        np.testing.assert_array_equal(restored, after_first)


def test_early_stopping_on_validation_keeps_going_while_it_improves():
    X, y = blobs()
    stop = fastnn.EarlyStopping(patience=0, restore_best=False)  # val_loss, minimised
    history = small_model().fit(
        X[:300],
        y[:300],
        optimizer=fastnn.SGD(0.01),
        epochs=4,
        validation_data=(X[300:], y[300:]),
        callbacks=[stop],
    )
    assert history.val_loss == sorted(history.val_loss, reverse=True)  # kept improving
    assert history.epochs == 4 and stop.stopped_epoch is None


def test_early_stopping_names_a_missing_metric():
    X, y = blobs()
    with pytest.raises(KeyError, match="val_loss.*validation_data"):
        small_model().fit(X, y, epochs=2, callbacks=[fastnn.EarlyStopping()])


def test_callback_arguments_are_checked():
    with pytest.raises(ValueError, match="mode"):
        fastnn.EarlyStopping(mode="up")
    with pytest.raises(ValueError, match="patience"):
        fastnn.EarlyStopping(patience=-1)


# -- ModelCheckpoint -----------------------------------------------------------------------------
def test_checkpoint_every_epoch_with_a_path_pattern(tmp_path):
    X, y = blobs()
    ckpt = fastnn.ModelCheckpoint(tmp_path / "ck" / "m-{epoch:02d}-{loss:.3f}.npz")
    model = small_model()
    history = model.fit(X, y, optimizer=fastnn.Adam(1e-2), epochs=3, callbacks=[ckpt])
    names = [p.split("/")[-1] for p in ckpt.saved]
    assert names == [f"m-{e + 1:02d}-{loss:.3f}.npz" for e, loss in enumerate(history.loss)]
    last = fastnn.load(ckpt.saved[-1])
    np.testing.assert_array_equal(last.predict_proba(X), model.predict_proba(X))
    # The live optimizer state is saved, so the checkpoint resumes where training was.
    assert last.optimizer.step == model.optimizer.step == 3 * history.iterations_per_epoch


def test_checkpoint_save_best_only_keeps_the_best_epoch(tmp_path):
    X, y = blobs()
    path = tmp_path / "best.npz"
    # Maximising the (decreasing) training loss: only epoch 1 is ever "best".
    ckpt = fastnn.ModelCheckpoint(path, save_best_only=True, monitor="loss", mode="max")
    seen = WeightsAtEpochBegin()
    small_model().fit(X, y, optimizer=fastnn.SGD(0.05), epochs=3, callbacks=[seen, ckpt])
    assert ckpt.saved == [str(path)]
    for saved, after_first in zip(fastnn.load(path).get_weights(), seen.weights[1], strict=True):
        np.testing.assert_array_equal(saved, after_first)


# -- ProgressBar / verbose -----------------------------------------------------------------------
def test_verbose_prints_one_summary_line_per_epoch(capsys):
    X, y = blobs()
    small_model().fit(X[:300], y[:300], epochs=2, verbose=1, validation_data=(X[300:], y[300:]))
    out = capsys.readouterr().out.splitlines()
    assert [line.split(" - ")[0] for line in out] == ["epoch 1/2", "epoch 2/2"]
    assert all("accuracy" in line and "val_loss" in line for line in out)


# -- divergence ------------------------------------------------------------------------------------
def test_divergence_raises_and_keeps_the_last_finite_weights():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 10)) * 10
    t = rng.standard_normal((64, 3)) * 100
    seen = WeightsAtEpochBegin()
    model = small_model()
    with pytest.raises(fastnn.TrainingDivergedError) as info:
        model.fit(
            X, t, loss="mse", optimizer=fastnn.SGD(0.05), batch_size=16, epochs=50, callbacks=[seen]
        )
    err = info.value
    assert err.epoch == len(seen.weights) and err.iteration >= 1 and not math.isfinite(err.loss)
    assert f"epoch {err.epoch}, iteration {err.iteration}" in str(err)
    for kept, before in zip(model.get_weights(), seen.weights[-1], strict=True):
        assert np.isfinite(kept).all()
        np.testing.assert_array_equal(kept, before)
    # Nothing is lost: training can go on from there with a sane learning rate.
    history = model.fit(X, t, loss="mse", optimizer=fastnn.SGD(1e-5), batch_size=16, epochs=1)
    assert math.isfinite(history.loss[0])
