"""fastnn.interop: to_torch / from_torch round trips, outputs, one SGD step, clear errors."""

from __future__ import annotations

import sys
from collections import OrderedDict

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch interop needs torch (not in the test extra)")

from naive_activations import ALPHA, NEGATIVE_SLOPE, REFERENCE  # noqa: E402  (tests/)

import fastnn  # noqa: E402
from fastnn import _codes  # noqa: E402
from fastnn.datasets import make_blobs  # noqa: E402
from fastnn.export import torch as torch_export  # noqa: E402
from fastnn.interop import TORCH_ACTIVATIONS, from_torch, to_torch  # noqa: E402

nn = torch.nn
ACTIVATIONS = list(_codes.ACTIVATION_CODES)  # new activations are tested without new code
PARAMS = {"leaky_relu": {"negative_slope": NEGATIVE_SLOPE}, "elu": {"alpha": ALPHA}}


def make_model(acts, n_in=6, width=9, n_out=4, seed=0, dtype="float32"):
    """A Sequential whose layers use ``acts``, with random non-zero biases."""
    sizes = [n_in] + [width] * (len(acts) - 1) + [n_out]
    layers = [fastnn.Dense(i, o, a, **PARAMS.get(a, {}))
              for i, o, a in zip(sizes[:-1], sizes[1:], acts, strict=True)]  # fmt: skip
    model = fastnn.Sequential(layers, seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 1)
    model.set_weights([w if w.ndim == 2 else rng.standard_normal(w.shape) * 0.5
                       for w in model.get_weights()])  # fmt: skip
    return model


def inputs(n=17, d=6, seed=2, dtype=np.float32):
    return (np.random.default_rng(seed).standard_normal((n, d)) * 2).astype(dtype)


def torch_out(module, X):
    with torch.inference_mode():
        return module(torch.from_numpy(X)).numpy()


def assert_matches(got, want, rtol=1e-5):
    """Equal to ``rtol`` relative to the outputs' scale (entries near 0 have no relative error)."""
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    scale = max(float(np.abs(want).max()), 1e-30)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


# -- round trips -----------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_round_trip_keeps_layers_weights_and_outputs(act, depth):
    model = make_model([act] * depth)
    X = inputs()
    module = to_torch(model)
    assert sum(isinstance(m, nn.Linear) for m in module) == depth
    assert module[0].weight.dtype == torch.float32
    assert_matches(torch_out(module, X), model.predict_proba(X))
    back = from_torch(module)
    assert [layer.config() for layer in back.layers] == [layer.config() for layer in model.layers]
    for a, b in zip(back.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert_matches(back.predict_proba(X), model.predict_proba(X))


@pytest.mark.parametrize("act", list(TORCH_ACTIVATIONS))
def test_every_torch_activation_matches_its_formula(act):
    assert act in REFERENCE, f"add the formula of {act!r} to tests/naive_activations.py"
    model = make_model(["identity", "identity"], dtype="float64")
    hidden = model.layers[0]
    # Set after construction: also covers activations the installed fastnn does not have yet.
    hidden.activation, hidden.negative_slope, hidden.alpha = act, NEGATIVE_SLOPE, ALPHA
    X = inputs(dtype=np.float64)
    W0, b0, W1, b1 = model.get_weights()
    want = REFERENCE[act](X @ W0 + b0) @ W1 + b1
    assert_matches(torch_out(to_torch(model), X), want, rtol=1e-10)


def test_output_kinds_follow_the_loss():
    X, y = make_blobs(90, 6, 4, seed=0, dtype="float32")
    model = make_model(["relu", "softmax"])
    model.fit(X, y, loss="cross_entropy", epochs=1, backend="numpy")
    declared, logits, proba = (to_torch(model, output=o) for o in (None, "logits", "probabilities"))
    assert isinstance(declared[-1], nn.Softmax) and isinstance(logits[-1], nn.Linear)
    assert_matches(torch_out(logits, X), model.decision_function(X))
    assert_matches(torch_out(proba, X), model.predict_proba(X))
    with pytest.raises(ValueError, match="output must be None or one of"):
        to_torch(model, output="proba")


def test_float64_model_gives_float64_module():
    model = make_model(["tanh", None], dtype="float64")
    X = inputs(dtype=np.float64)
    module = to_torch(model)
    assert module[0].weight.dtype == torch.float64
    assert_matches(torch_out(module, X), model.predict_proba(X), rtol=1e-12)


def test_from_torch_reads_a_module_built_in_torch():
    torch.manual_seed(0)
    module = nn.Sequential(OrderedDict([
        ("fc1", nn.Linear(6, 8)), ("act1", nn.LeakyReLU(0.3)), ("skip", nn.Identity()),
        ("fc2", nn.Linear(8, 5, bias=False)), ("fc3", nn.Linear(5, 3)), ("out", nn.Softmax(dim=1)),
    ]))  # fmt: skip
    model = from_torch(module, dtype="float64")
    assert [layer.activation for layer in model.layers] == ["leaky_relu", "identity", "softmax"]
    assert model.layers[0].negative_slope == pytest.approx(0.3)
    assert model.dtype == np.float64 and not model.layers[1].b.any()
    X = inputs()
    assert_matches(model.predict_proba(X), torch_out(module, X))


# -- one SGD step ----------------------------------------------------------------------------
TORCH_LOSSES = {
    "cross_entropy": lambda: nn.CrossEntropyLoss(),
    "binary_cross_entropy": lambda: nn.BCEWithLogitsLoss(),
    "mse": lambda: nn.MSELoss(),
}


@pytest.mark.parametrize("loss", list(TORCH_LOSSES))
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_one_sgd_step_matches_torch(act, loss):
    X, labels = make_blobs(40, 6, 3, seed=3, dtype="float64")
    y = labels if loss == "cross_entropy" else np.eye(3)[labels]
    lr = 0.5
    model = make_model([act, act, None], n_out=3, dtype="float64")
    module = to_torch(model, output="logits")
    before = model.get_weights()
    model.fit(X, y, loss=loss, optimizer=fastnn.SGD(lr), epochs=1, batch_size=len(X),
              shuffle=False, backend="numpy")  # fmt: skip

    opt = torch.optim.SGD(module.parameters(), lr=lr)
    target = torch.from_numpy(y) if loss != "cross_entropy" else torch.from_numpy(labels)
    opt.zero_grad()
    TORCH_LOSSES[loss]()(module(torch.from_numpy(X)), target).backward()
    opt.step()

    after = model.get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(after, before, strict=True))
    stepped = from_torch(module, dtype="float64").get_weights()
    for i, (ours, theirs) in enumerate(zip(after, stepped, strict=True)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12, err_msg=f"array {i}")
    assert_matches(torch_out(module, X), model.decision_function(X), rtol=1e-9)


# -- scikit-learn estimators -----------------------------------------------------------------
def test_sklearn_estimator_converts_the_network_it_holds():
    pytest.importorskip("sklearn", minversion="1.6", reason="fastnn.sklearn needs scikit-learn")
    from fastnn.sklearn import MLPClassifier

    X, y = make_blobs(150, 6, 3, seed=1, dtype="float32")
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X, y)
    module = to_torch(clf, output="probabilities")
    np.testing.assert_allclose(torch_out(module, X), clf.predict_proba(X), rtol=1e-5, atol=1e-6)


# -- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("module", "error", "message"),
    [
        (nn.Sequential(nn.Linear(3, 4), nn.Dropout()), NotImplementedError,
         r"module 1 is a Dropout, which from_torch does not support"),
        (nn.Sequential(OrderedDict([("fc", nn.Linear(3, 4)), ("conv", nn.Conv1d(1, 1, 1))])),
         NotImplementedError, r"module 1 \('conv'\) is a Conv1d"),
        (nn.Sequential(nn.ReLU(), nn.Linear(3, 4)), ValueError, "comes before any Linear"),
        (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Tanh()), ValueError,
         "module 2 \\(Tanh\\) follows another activation"),
        (nn.Sequential(nn.Linear(3, 4), nn.Softmax(dim=0)), ValueError,
         "settings fastnn cannot reproduce"),
        (nn.Sequential(nn.Identity()), ValueError, "no Linear layer"),
        (nn.Linear(3, 4), TypeError, "reads a torch.nn.Sequential, got Linear"),
    ],
)  # fmt: skip
def test_from_torch_rejects_what_it_cannot_read(module, error, message):
    with pytest.raises(error, match=message):
        from_torch(module)


def test_from_torch_names_an_activation_this_fastnn_lacks(monkeypatch):
    monkeypatch.delitem(_codes.ACTIVATION_CODES, "tanh")
    with pytest.raises(NotImplementedError, match="'tanh', which this fastnn does not have"):
        from_torch(nn.Sequential(nn.Linear(3, 4), nn.Tanh()))


def test_to_torch_names_what_it_cannot_convert(monkeypatch):
    class Conv2D(fastnn.Dense):  # a layer kind the converter does not know
        pass

    with pytest.raises(NotImplementedError, match="layer 1 is a Conv2D"):
        to_torch(fastnn.Sequential([fastnn.Dense(4, 5), Conv2D(5, 2)], seed=0))
    monkeypatch.delitem(torch_export.TORCH_ACTIVATIONS, "tanh")
    with pytest.raises(NotImplementedError, match="activation 'tanh' of layer 0"):
        to_torch(make_model(["tanh", None]))
    with pytest.raises(TypeError, match="expected a fastnn.Sequential"):
        to_torch(nn.Linear(3, 4))
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    with pytest.raises(ImportError, match="PyTorch interop needs torch"):
        to_torch(make_model(["relu", None]))
