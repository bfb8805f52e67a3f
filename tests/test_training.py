"""fit: gradient descent modes, iteration/epoch counting, optimizers, stability, divergence."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

import fastnn
from fastnn.backends import numpy as reference
from fastnn.datasets import make_blobs
from fastnn.layers import ACTIVATIONS


def blobs(n=300, d=6, k=3, seed=0):
    return make_blobs(n, d, k, spread=3.0, seed=seed, dtype="float32")


def mlp(d=6, k=3, hidden=(16,), act="relu", seed=0, dtype="float32", out=None):
    sizes = (d, *hidden, k)
    layers = [fastnn.Dense(a, b, act) for a, b in zip(sizes[:-2], sizes[1:-1], strict=True)]
    layers.append(fastnn.Dense(sizes[-2], k, out))
    return fastnn.Sequential(layers, seed=seed, dtype=dtype)


@pytest.mark.parametrize(("batch_size", "per_epoch"), [(1, 300), (32, 10), (128, 3), (None, 1)])
def test_modes_count_iterations_and_epochs(batch_size, per_epoch):
    X, y = blobs()
    history = mlp().fit(X, y, batch_size=batch_size, epochs=3, optimizer=fastnn.SGD(0.05))
    assert history.iterations_per_epoch == per_epoch == math.ceil(300 / (batch_size or 300))
    assert history.iterations == 3 * per_epoch
    assert history.epochs == 3 and len(history.loss) == 3


@pytest.mark.parametrize("batch_size", [1, 16, None])
def test_every_mode_learns(batch_size):
    X, y = blobs()
    lr = 0.5 if batch_size is None else 0.05
    history = mlp().fit(X, y, batch_size=batch_size, epochs=15, optimizer=fastnn.SGD(lr))
    assert history.loss[-1] < 0.5 * history.loss[0]
    assert history.accuracy[-1] > 0.9


def test_batch_larger_than_data_is_full_batch():
    X, y = blobs(n=50)
    assert mlp().fit(X, y, batch_size=1000).iterations_per_epoch == 1


@pytest.mark.parametrize(
    "optimizer",
    [
        fastnn.SGD(0.05),
        fastnn.SGD(0.02, momentum=0.9),
        fastnn.SGD(0.02, momentum=0.9, nesterov=True),
        fastnn.Adam(0.01),
        fastnn.Adam(0.01, weight_decay=1e-4),
        "sgd",
        "momentum",
        "adam",
    ],
)
def test_every_optimizer_trains(optimizer):
    X, y = blobs()
    history = mlp().fit(X, y, epochs=8, batch_size=8, optimizer=optimizer)
    assert history.loss[-1] < history.loss[0]
    assert history.accuracy[-1] > 0.9


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_every_hidden_activation_trains(act):
    X, y = blobs()
    history = mlp(act=act, hidden=(16, 8)).fit(X, y, epochs=15, optimizer=fastnn.SGD(0.1))
    assert history.loss[-1] < history.loss[0]


@pytest.mark.parametrize("loss", ["cross_entropy", "mse", "kl_divergence"])
def test_every_loss_trains_a_classifier(loss):
    X, y = blobs()
    model = mlp()
    model.fit(X, y, loss=loss, epochs=20, optimizer=fastnn.SGD(0.03))
    assert np.mean(model.predict(X) == y) > 0.9


def test_binary_cross_entropy_with_one_output():
    X, y = blobs(k=2)
    model = mlp(k=1, out="sigmoid")
    model.fit(X, y, loss="binary_cross_entropy", epochs=10, optimizer=fastnn.SGD(0.1))
    proba = model.predict_proba(X)
    assert proba.shape == (300, 1) and (proba >= 0).all() and (proba <= 1).all()
    assert np.mean(model.predict(X) == y) > 0.9


def test_regression_with_mse_returns_outputs():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    Y = np.c_[X @ [1.0, -2.0, 0.5], X[:, 0] * 0.3]
    model = mlp(d=3, k=2, act="tanh")
    history = model.fit(X, Y, loss="mse", epochs=30, optimizer=fastnn.SGD(0.05))
    assert history.loss[-1] < 0.1 * history.loss[0]
    assert model.predict(X).shape == (200, 2)
    assert history.accuracy == []


def test_softmax_output_layer_is_fused_not_doubled():
    """A softmax last layer (Keras habit) trains exactly like logits + cross-entropy."""
    X, y = blobs()
    a, b = mlp(out="softmax", seed=3), mlp(out=None, seed=3)
    ha = a.fit(X, y, epochs=2, seed=1)
    hb = b.fit(X, y, epochs=2, seed=1)
    np.testing.assert_allclose(ha.loss, hb.loss, rtol=1e-6)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-6)
    np.testing.assert_allclose(a.predict_proba(X).sum(axis=1), 1.0, rtol=1e-5)


def test_same_seed_same_result_and_shuffle_off():
    X, y = blobs()
    h1 = mlp(seed=4).fit(X, y, epochs=2, seed=9)
    h2 = mlp(seed=4).fit(X, y, epochs=2, seed=9)
    assert h1.loss == h2.loss
    h3 = mlp(seed=4).fit(X, y, epochs=2, shuffle=False)
    h4 = mlp(seed=4).fit(X, y, epochs=2, shuffle=False)
    assert h3.loss == h4.loss


def test_validation_data_and_history_dict():
    X, y = blobs()
    history = mlp().fit(X[:200], y[:200], epochs=3, validation_data=(X[200:], y[200:]))
    assert len(history.val_loss) == len(history.val_accuracy) == 3
    d = history.to_dict()
    assert d["iterations"] == 3 * 7 and d["iterations_per_epoch"] == 7
    assert set(history.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_zero_epochs_trains_nothing():
    X, y = blobs()
    model = mlp()
    before = model.get_weights()
    history = model.fit(X, y, epochs=0)
    assert history.iterations == 0
    for p, q in zip(before, model.parameters(), strict=True):
        np.testing.assert_array_equal(p, q)


def test_divergence_raises_and_keeps_last_finite_weights():
    X, y = blobs()
    X = X * 1e3
    model = mlp(act="relu")
    with pytest.raises(fastnn.TrainingDivergedError) as info:
        model.fit(X, y, epochs=50, loss="mse", optimizer=fastnn.SGD(10.0))
    err = info.value
    assert err.epoch >= 1 and err.iteration >= 1 and not math.isfinite(err.loss)
    assert all(np.isfinite(p).all() for p in model.parameters())


def test_gradient_clipping_bounds_each_step():
    X, y = blobs()
    model = mlp()
    before = [p.copy() for p in model.parameters()]
    model.fit(X, y, epochs=1, batch_size=300, optimizer=fastnn.SGD(1.0), clip_grad_norm=1e-3)
    step = math.sqrt(sum(float(np.sum((p - q) ** 2)) for p, q in
                         zip(model.parameters(), before, strict=True)))  # fmt: skip
    assert step <= 1e-3 * 1.001


def test_float64_model():
    X, y = blobs()
    model = mlp(dtype="float64")
    model.fit(X, y, epochs=2)
    assert model.parameters()[0].dtype == np.float64


def test_callbacks_are_called_and_can_stop():
    X, y = blobs()
    seen = []

    class Stop(fastnn.Callback):
        def on_epoch_end(self, epoch, logs):
            seen.append((epoch, sorted(logs)))
            if epoch == 1:
                self.model.stop_training = True

    history = mlp().fit(X, y, epochs=10, callbacks=[Stop()])
    assert history.epochs == 2 and seen[0][1] == ["accuracy", "loss", "seconds"]


def test_verbose_prints_progress_and_summary(capsys):
    X, y = blobs()
    mlp().fit(X, y, epochs=2, verbose=1)
    out = capsys.readouterr().out
    assert "epoch 1/2" in out and "epoch 2/2" in out and "loss" in out


def test_progress_slices_give_the_same_weights():
    """Cutting an epoch into slices for the progress bar must not change the training."""
    X, y = blobs()
    a, b = mlp(seed=2), mlp(seed=2)
    a.fit(X, y, epochs=2, seed=5, batch_size=7)
    b.fit(X, y, epochs=2, seed=5, batch_size=7, callbacks=[fastnn.ProgressBar(file=io.StringIO())])
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_array_equal(p, q)


def test_progress_reports_running_loss_and_accuracy():
    X, y = blobs()
    seen = []

    class Watch(fastnn.Callback):
        wants_progress = True

        def on_progress(self, epoch, iterations, samples, mean_loss, accuracy=None):
            seen.append((iterations, samples, mean_loss, accuracy))

    bar = io.StringIO()
    mlp().fit(X, y, epochs=3, batch_size=8, callbacks=[Watch(), fastnn.ProgressBar(file=bar)])
    assert seen[-1][:2] == (38, 300)  # ceil(300 / 8) iterations, all samples
    assert all(0.0 <= acc <= 1.0 for *_, acc in seen)
    assert seen[-1][3] > 0.9  # the running accuracy of a learnt problem
    assert "acc=" in bar.getvalue() and "loss=" in bar.getvalue()


def test_a_layer_kind_outside_fused_layers_trains_on_the_per_batch_path(scale_layer, monkeypatch):
    """The fused epoch runs only the kinds in the backend's FUSED_LAYERS; any other model
    trains through the eager loop on the same kernels (and the fused one is never called)."""
    X, y = blobs()

    def no_fused_epoch(*args):
        raise AssertionError("train_epoch was called for a model it does not support")

    monkeypatch.setattr(reference, "train_epoch", no_fused_epoch)
    model = fastnn.Sequential([fastnn.Dense(6, 16, "relu"), scale_layer(0.5), fastnn.Dense(16, 3)],
                              seed=0)  # fmt: skip
    history = model.fit(X, y, epochs=10, optimizer=fastnn.SGD(0.1), backend="numpy")
    assert history.loss[-1] < 0.5 * history.loss[0] and history.accuracy[-1] > 0.9
    assert "Scale(0.5)" in model.summary()
    with pytest.raises(AssertionError, match="does not support"):
        mlp().fit(X, y, epochs=1, backend="numpy")  # a dense stack takes the fused path


def every_kind():
    """A small model holding one layer of every registered kind."""
    return [fastnn.Conv2D(1, 2, 3, padding=1, activation="relu"), fastnn.MaxPool2D(2),
            fastnn.Dropout(0.25), fastnn.Flatten(), fastnn.Dense(18, 3)]  # fmt: skip


@pytest.mark.parametrize("backend", fastnn.available_backends())
def test_every_backend_trains_every_layer_kind_like_the_reference(request, backend):
    """A model using every registered layer kind trains on every backend that loads, to the
    reference's weights (layers a backend does not fuse run through its kernels, per batch)."""
    from fastnn.layers import LAYERS

    assert {layer.kind for layer in every_kind()} == set(LAYERS), "add the new kind here"
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((24, 1, 6, 6)), rng.integers(0, 3, 24)
    weights = {}
    for name in ("numpy", backend):
        model = fastnn.Sequential(every_kind(), seed=1, dtype="float64", input_shape=(1, 6, 6))
        model.fit(X, y, epochs=2, batch_size=8, seed=2, optimizer=fastnn.SGD(0.1), backend=name)
        weights[name] = model.get_weights()
        assert np.isfinite(model.predict_proba(X)).all()
    for got, want in zip(weights[backend], weights["numpy"], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
