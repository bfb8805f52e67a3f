"""save/load: one .npz that round-trips exactly, resumes training, and rejects bad files."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

import fastnn
from fastnn import io as fio
from fastnn.datasets import make_blobs
from fastnn.io import ModelFileError

DATA = Path(__file__).parent / "data"


def blobs(n: int = 300, d: int = 8, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    return make_blobs(n, d, k, spread=2.0, seed=seed)


def small_model(dtype: str = "float32", act: str = "relu") -> fastnn.Sequential:
    layers = [
        fastnn.Dense(8, 16, act),
        fastnn.Dense(16, 12, "leaky_relu", negative_slope=0.1),
        fastnn.Dense(12, 3),
    ]
    return fastnn.Sequential(layers, seed=3, dtype=dtype)


@pytest.fixture
def saved(tmp_path):
    X, y = blobs()
    model = small_model()
    model.fit(X, y, optimizer=fastnn.Adam(1e-2), batch_size=32, epochs=2, backend="numpy")
    path = tmp_path / "model.npz"
    model.save(path)
    return model, path, X


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_predicts_identically(tmp_path, dtype):
    X, y = blobs()
    model = small_model(dtype)
    model.fit(X, y, optimizer=fastnn.SGD(0.05, momentum=0.9), batch_size=16, epochs=2)
    model.save(tmp_path / "m.npz")
    loaded = fastnn.load(tmp_path / "m.npz")
    assert loaded.dtype == model.dtype
    assert [lay.config() for lay in loaded.layers] == [lay.config() for lay in model.layers]
    for a, b in zip(loaded.get_weights(), model.get_weights(), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.loss.name == "cross_entropy"
    assert loaded.evaluate(X, y) == model.evaluate(X, y)


def test_regression_loss_is_restored_so_predict_returns_outputs(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 8))
    t = X[:, :3] * 0.5
    model = small_model()
    model.fit(X, t, loss="mse", optimizer=fastnn.SGD(0.01), epochs=1)
    model.save(tmp_path / "r.npz")
    loaded = fastnn.load(tmp_path / "r.npz")
    assert loaded.loss.name == "mse" and not loaded.is_classifier()
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.predict(X).shape == (100, 3)


def test_untrained_model_round_trips_without_loss_or_optimizer(tmp_path):
    model = small_model("float64", act="tanh")
    model.save(tmp_path / "u.npz")
    loaded = fastnn.load(tmp_path / "u.npz")
    assert loaded.loss is None and loaded.optimizer is None
    X, _ = blobs()
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


@pytest.mark.parametrize(
    "make_opt", [lambda: fastnn.Adam(1e-2), lambda: fastnn.SGD(0.05, momentum=0.9, nesterov=True)]
)
def test_saved_optimizer_state_resumes_training_exactly(tmp_path, make_opt):
    X, y = blobs()
    kwargs = {"batch_size": 32, "shuffle": False, "backend": "numpy"}
    straight = small_model()
    straight.fit(X, y, optimizer=make_opt(), epochs=2, **kwargs)

    first = small_model()
    first.fit(X, y, optimizer=make_opt(), epochs=1, **kwargs)
    first.save(tmp_path / "half.npz")
    resumed = fastnn.load(tmp_path / "half.npz")
    assert resumed.optimizer.step == first.optimizer.step == 10
    resumed.fit(X, y, optimizer=resumed.optimizer, epochs=1, **kwargs)
    for a, b in zip(resumed.get_weights(), straight.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_without_optimizer_state(saved, tmp_path):
    model, _, X = saved
    model.save(tmp_path / "light.npz", include_optimizer=False)
    loaded = fastnn.load(tmp_path / "light.npz")
    assert loaded.optimizer is None
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert os.path.getsize(tmp_path / "light.npz") < os.path.getsize(saved[1])


def test_save_replaces_atomically_and_cleans_up_on_failure(saved, monkeypatch):
    model, path, _ = saved
    before = path.read_bytes()

    def broken_savez(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == before  # the old file is intact
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.npz"]  # no temporary left


# -- format version 1 (the previous release) -----------------------------------------------------
def test_a_version_1_file_loads_and_predicts_the_same():
    """tests/data/model_v1.npz was written by the previous release; model_v1_expected.npz
    holds the inputs X, the probabilities it predicted and its optimizer step."""
    expected = np.load(DATA / "model_v1_expected.npz")
    with np.load(DATA / "model_v1.npz") as raw:
        assert json.loads(str(raw[fio.META_KEY]))["format_version"] == 1
    model = fastnn.load(DATA / "model_v1.npz")
    assert [layer.kind for layer in model.layers] == ["dense"] * 3
    assert model.input_shape == (6,) and model.dtype == np.float32
    assert model.layers[1].activation == "leaky_relu" and model.layers[1].act_alpha == 0.05
    proba = model.predict_proba(expected["X"])
    np.testing.assert_allclose(proba, expected["proba"], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(model.predict(expected["X"]), expected["proba"].argmax(axis=1))
    assert model.loss.name == "cross_entropy"
    assert model.optimizer.step == int(expected["step"])


def test_a_version_1_optimizer_state_resumes_in_its_order():
    """v1 stores [v_W0, v_W1, v_W2, v_b0, v_b1, v_b2, (Adam's second moments)]: a full-batch
    momentum step from the loaded model must use each velocity for its own parameter."""
    model = fastnn.load(DATA / "model_v1.npz")
    opt = model.optimizer
    assert opt.momentum == 0.9 and not opt.nesterov and len(opt.state) == 12
    velocity = [a.astype(np.float64) for a in opt.state[:6]]  # state1: W0, W1, W2, b0, b1, b2
    X = np.load(DATA / "model_v1_expected.npz")["X"].astype(np.float32)
    y = np.arange(len(X)) % 3
    loss = fastnn.losses.CrossEntropy()
    loss.forward(model.forward(X), y)
    model.backward(loss.backward())
    grads = model.gradients()  # W0, b0, W1, b1, W2, b2
    by_v1_order = [grads[0], grads[2], grads[4], grads[1], grads[3], grads[5]]
    model.fit(X, y, optimizer=opt, batch_size=None, epochs=1, shuffle=False, backend="numpy")
    assert opt.step == int(np.load(DATA / "model_v1_expected.npz")["step"]) + 1
    for v_new, v_old, g in zip(opt.state[:6], velocity, by_v1_order, strict=True):
        np.testing.assert_allclose(v_new, 0.9 * v_old + g, rtol=1e-5, atol=1e-6)


def test_a_version_1_file_saves_as_the_current_version(tmp_path):
    model = fastnn.load(DATA / "model_v1.npz")
    model.save(tmp_path / "v2.npz")
    with np.load(tmp_path / "v2.npz") as raw:
        meta = json.loads(str(raw[fio.META_KEY]))
    assert meta["format_version"] == fio.FORMAT_VERSION
    assert [layer["kind"] for layer in meta["layers"]] == ["dense"] * 3
    assert meta["input_shape"] == [6]
    again = fastnn.load(tmp_path / "v2.npz")
    X = np.load(DATA / "model_v1_expected.npz")["X"]
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))
    for a, b in zip(again.optimizer.state, model.optimizer.state, strict=True):
        np.testing.assert_array_equal(a, b)


# -- files that must be rejected ----------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastnn.load(tmp_path / "nothing.npz")


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.999])
def test_truncated_file_is_rejected(saved, tmp_path, cut):
    _, path, _ = saved
    data = path.read_bytes()
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ModelFileError):
        fastnn.load(bad)


def test_a_flipped_byte_is_rejected_or_harmless(saved, tmp_path):
    """Zip local headers repeat what the central directory says, so a few flips change nothing;
    every other flip must be an error. Never a silently different model."""
    model, path, _ = saved
    data = path.read_bytes()
    rejected = 0
    for position in range(0, len(data), max(1, len(data) // 300)):
        corrupted = bytearray(data)
        corrupted[position] ^= 0xFF
        bad = tmp_path / "flipped.npz"
        bad.write_bytes(bytes(corrupted))
        try:
            loaded = fastnn.load(bad)
        except ModelFileError:
            rejected += 1
            continue
        for a, b in zip(loaded.get_weights(), model.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(loaded.optimizer.state, model.optimizer.state, strict=True):
            np.testing.assert_array_equal(a, b)
        assert loaded.optimizer.step == model.optimizer.step
    assert rejected > 250


class _Exploit:
    """Unpickling this would create a file: proof that code ran."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    exploit = _Exploit()
    exploit.marker = str(marker)
    raw = tmp_path / "raw.npz"
    raw.write_bytes(pickle.dumps(exploit))
    inside = tmp_path / "object.npz"
    np.savez(inside, __fastnn__=np.array("{}"), W0=np.array([exploit], dtype=object))
    for path in (raw, inside):
        with pytest.raises(ModelFileError, match="pickle|not a fastnn|JSON"):
            fastnn.load(path)
    assert not marker.exists()


def _rewrite(path, target, change):
    """Copy the .npz at ``path`` to ``target`` with ``change(meta, arrays)`` applied."""
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays.pop(fio.META_KEY)))
    change(meta, arrays)
    np.savez(target, **{fio.META_KEY: np.array(json.dumps(meta))}, **arrays)
    return target


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda m, a: a.__setitem__("W0", a["W0"] + 1e-3), id="weights-edited"),
        pytest.param(lambda m, a: a.__setitem__("W0", a["W0"][:4]), id="weights-reshaped"),
        pytest.param(lambda m, a: a.__setitem__("W0", a["W0"].astype(np.int64)), id="int-weights"),
        pytest.param(lambda m, a: a.pop("b1"), id="array-missing"),
        pytest.param(lambda m, a: m["layers"][0].update(in_features=10**9), id="huge-layer"),
        pytest.param(lambda m, a: m["layers"][1].update(activation="os.system"), id="bad-act"),
        pytest.param(lambda m, a: m["layers"][0].update(evil=1), id="unknown-key"),
        pytest.param(lambda m, a: m.update(format_version=99), id="future-version"),
        pytest.param(lambda m, a: m.update(format="something else"), id="other-format"),
        pytest.param(lambda m, a: m.update(loss="__import__"), id="bad-loss"),
        pytest.param(lambda m, a: m["optimizer"].update(type="Evil"), id="bad-optimizer"),
        pytest.param(lambda m, a: m["optimizer"].update(lr=float("nan")), id="nan-lr"),
        pytest.param(lambda m, a: m.update(dtype="object"), id="bad-dtype"),
        pytest.param(lambda m, a: m["layers"][0].update(kind="lstm"), id="unknown-kind"),
        pytest.param(lambda m, a: m.update(input_shape=[0]), id="bad-input-shape"),
        pytest.param(lambda m, a: m.update(input_shape="8"), id="input-shape-not-a-list"),
        pytest.param(lambda m, a: m["layers"].pop(), id="layer-missing"),
    ],
)
def test_tampered_files_are_rejected(saved, tmp_path, change):
    _, path, _ = saved
    bad = _rewrite(path, tmp_path / "tampered.npz", change)
    with pytest.raises(ModelFileError):
        fastnn.load(bad)


def test_other_files_are_rejected_with_a_clear_message(tmp_path):
    np.save(tmp_path / "array.npy", np.zeros(3))
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    (tmp_path / "text.npz").write_text("hello")
    with zipfile.ZipFile(tmp_path / "badjson.npz", "w") as z:
        with z.open(f"{fio.META_KEY}.npy", "w") as f:
            np.lib.format.write_array(f, np.array("{not json"))
    expected = {
        "array.npy": ".npy",
        "plain.npz": "not a fastnn model",
        "text.npz": "not a zip archive",
        "badjson.npz": "JSON",
    }
    for name, words in expected.items():
        with pytest.raises(ModelFileError, match=words):
            fastnn.load(tmp_path / name)
