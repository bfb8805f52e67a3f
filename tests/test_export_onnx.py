"""fastnn.export.to_onnx and ``fastnn export``: onnxruntime runs the file, outputs match fastnn.

Every activation of the registry, both output kinds, several depths and each loss's output rule
are checked against ``decision_function`` / ``predict_proba`` to 1e-5 relative.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="ONNX export needs onnx: pip install 'fastnn[onnx]'")
ort = pytest.importorskip(
    "onnxruntime", reason="running exported files needs onnxruntime: pip install 'fastnn[onnx]'"
)

from naive_activations import ALPHA, NEGATIVE_SLOPE, REFERENCE  # noqa: E402  (tests/)

import fastnn  # noqa: E402
from fastnn import _codes, cli, cli_export  # noqa: E402
from fastnn.datasets import make_blobs  # noqa: E402
from fastnn.export import onnx as onnx_export  # noqa: E402
from fastnn.export import to_onnx  # noqa: E402

ACTIVATIONS = list(_codes.ACTIVATION_CODES)  # new activations are tested without new code
# Non-default parameters, so the test sees that they reach the graph.
PARAMS = {"leaky_relu": {"negative_slope": NEGATIVE_SLOPE}, "elu": {"alpha": ALPHA}}
GELU_OPSET = 20  # the opset with the Gelu operator: the other code path of gelu / gelu_tanh


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


def inputs(n=17, d=6, seed=2):
    return (np.random.default_rng(seed).standard_normal((n, d)) * 2).astype(np.float32)


def run(path, X):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": X})[0]


def assert_matches(got, want):
    """Equal to 1e-5 relative to the outputs' scale (entries near 0 have no relative error)."""
    want = np.asarray(want, dtype=np.float64)
    assert got.dtype == np.float32 and got.shape == want.shape
    scale = max(float(np.abs(want).max()), 1e-30)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale)


def expected(model, X, output):
    return model.decision_function(X) if output == "logits" else model.predict_proba(X)


@pytest.mark.parametrize("output", onnx_export.OUTPUT_KINDS)
@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_every_activation_matches_onnxruntime(tmp_path, act, depth, output):
    model = make_model([act] * depth)
    X = inputs()
    path = to_onnx(model, tmp_path / "m.onnx", output=output)
    assert_matches(run(path, X), expected(model, X, output))


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_every_activation_at_the_gelu_opset(tmp_path, act):
    model = make_model([act, act])
    X = inputs()
    path = to_onnx(model, tmp_path / "m.onnx", output="probabilities", opset=GELU_OPSET)
    assert onnx.load(path).opset_import[0].version == GELU_OPSET
    assert_matches(run(path, X), model.predict_proba(X))


@pytest.mark.parametrize("opset", [17, GELU_OPSET])
@pytest.mark.parametrize("act", list(onnx_export.ACTIVATION_EMITTERS))
def test_every_emitter_matches_its_formula(tmp_path, act, opset):
    assert act in REFERENCE, f"add the formula of {act!r} to REFERENCE"
    model = make_model(["identity", "identity"])
    hidden = model.layers[0]
    # Set after construction: also covers activations the installed fastnn does not have yet.
    hidden.activation, hidden.negative_slope, hidden.alpha = act, NEGATIVE_SLOPE, ALPHA
    X = inputs()
    W0, b0, W1, b1 = (w.astype(np.float64) for w in model.get_weights())
    want = REFERENCE[act](X @ W0 + b0) @ W1 + b1
    assert_matches(run(to_onnx(model, tmp_path / "m.onnx", opset=opset), X), want)


@pytest.mark.parametrize(
    ("loss", "last", "n_out", "fused"),
    [
        ("cross_entropy", None, 3, "softmax"),
        ("cross_entropy", "softmax", 3, "softmax"),
        ("kl_divergence", None, 3, "softmax"),
        ("binary_cross_entropy", None, 1, "sigmoid"),
        ("binary_cross_entropy", "sigmoid", 3, "sigmoid"),
        ("mse", None, 3, None),
        ("mse", "tanh", 3, "tanh"),
    ],
)
def test_outputs_follow_the_loss(tmp_path, loss, last, n_out, fused):
    X, labels = make_blobs(120, 6, 3, seed=0, dtype="float32")
    y = labels if loss in ("cross_entropy", "kl_divergence") else np.eye(3)[labels][:, :n_out]
    model = make_model(["relu", last], n_out=n_out)
    model.fit(X, y, loss=loss, epochs=1, batch_size=32, backend="numpy")
    for output in onnx_export.OUTPUT_KINDS:
        got = run(to_onnx(model, tmp_path / f"{output}.onnx", output=output), X)
        assert_matches(got, expected(model, X, output))
    ops = [n.op_type for n in onnx.load(tmp_path / "probabilities.onnx").graph.node]
    logit_ops = [n.op_type for n in onnx.load(tmp_path / "logits.onnx").graph.node]
    if fused in ("softmax", "sigmoid") and loss != "mse":
        # The fused activation is applied for probabilities only.
        assert ops[-1] == fused.capitalize() and logit_ops[-1] == "Gemm"
    else:
        assert ops == logit_ops


def test_graph_has_a_dynamic_batch_float32_and_metadata(tmp_path):
    model = make_model(["relu", "softmax"])
    path = to_onnx(model, tmp_path / "m.onnx", output="probabilities")
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert (inp.name, out.name) == ("input", "probabilities")
    for value, width in ((inp, 6), (out, 4)):
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        batch, features = value.type.tensor_type.shape.dim
        assert batch.dim_param == "batch" and features.dim_value == width
    assert proto.opset_import[0].version == onnx_export.DEFAULT_OPSET >= 17
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["fastnn.output"] == "probabilities"
    for n in (1, 1000):  # any batch size runs
        X = inputs(n)
        assert_matches(run(path, X), model.predict_proba(X))


def test_float64_model_exports_float32(tmp_path):
    model = make_model(["tanh", None], dtype="float64")
    X = inputs()
    assert_matches(run(to_onnx(model, tmp_path / "m.onnx"), X), model.decision_function(X))


def test_build_onnx_in_memory_and_replace_existing_file(tmp_path):
    model = make_model(["sigmoid", None])
    X = inputs()
    proto = onnx_export.build_onnx(model)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    assert_matches(session.run(None, {"input": X})[0], model.decision_function(X))
    target = tmp_path / "m.onnx"
    target.write_bytes(b"old")
    to_onnx(model, target)
    assert_matches(run(target, X), model.decision_function(X))
    assert os.listdir(tmp_path) == ["m.onnx"]


# -- scikit-learn estimators -----------------------------------------------------------------
def test_sklearn_estimators_export_the_network_they_hold(tmp_path):
    pytest.importorskip("sklearn", minversion="1.6", reason="fastnn.sklearn needs scikit-learn")
    from fastnn.sklearn import MLPClassifier, MLPRegressor

    X, y = make_blobs(150, 6, 3, seed=1, dtype="float32")
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, y)
    got = run(to_onnx(clf, tmp_path / "clf.onnx", output="probabilities"), X)
    np.testing.assert_allclose(got, clf.predict_proba(X), rtol=1e-5, atol=1e-6)
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    reg.fit(X, X[:, :2] @ np.ones((2, 2)))
    got = run(to_onnx(reg, tmp_path / "reg.onnx"), X)
    np.testing.assert_allclose(got, reg.predict(X), rtol=1e-5, atol=1e-5)
    reg.coefs_ = [c * 2 for c in reg.coefs_]  # assigned weights are exported, as predicted
    got = run(to_onnx(reg, tmp_path / "reg2.onnx"), X)
    np.testing.assert_allclose(got, reg.predict(X), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="not fitted"):
        to_onnx(MLPClassifier(), tmp_path / "unfitted.onnx")
    assert not (tmp_path / "unfitted.onnx").exists()


# -- bad input -------------------------------------------------------------------------------
def test_activation_without_emitter_names_it(tmp_path, monkeypatch):
    monkeypatch.delitem(onnx_export.ACTIVATION_EMITTERS, "tanh")
    with pytest.raises(NotImplementedError, match=r"activation 'tanh' of layer 1 \(Dense\)"):
        to_onnx(make_model(["relu", "tanh"]), tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


def test_layer_without_emitter_names_its_class(tmp_path):
    class Conv2D(fastnn.Dense):  # a layer kind the exporter does not know
        pass

    model = fastnn.Sequential([fastnn.Dense(4, 5, "relu"), Conv2D(5, 2)], seed=0)
    with pytest.raises(NotImplementedError, match="layer 1 is a Conv2D"):
        to_onnx(model, tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


def test_paths_that_cannot_be_written_leave_nothing(tmp_path):
    model = make_model(["relu", None])
    with pytest.raises(IsADirectoryError, match="is a directory"):
        to_onnx(model, tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        to_onnx(model, tmp_path / "missing" / "m.onnx")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        to_onnx(model, tmp_path / "file" / "m.onnx")
    assert os.listdir(tmp_path) == ["file"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes to read-only directories")  # fmt: skip
def test_read_only_directory_raises_permission_error(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(PermissionError, match="cannot write the ONNX file"):
        to_onnx(make_model(["relu", None]), locked / "m.onnx")
    assert os.listdir(locked) == []


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failure_while_writing_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch, failure):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"old")

    def fail(*args):
        raise failure

    monkeypatch.setattr("fastnn.export._atomic.os.fsync", fail)
    with pytest.raises(type(failure)):
        to_onnx(make_model(["relu", None]), target)
    assert os.listdir(tmp_path) == ["m.onnx"] and target.read_bytes() == b"old"


def test_bad_arguments(tmp_path, monkeypatch):
    model = make_model(["relu", None])
    with pytest.raises(ValueError, match="output must be one of logits, probabilities"):
        to_onnx(model, tmp_path / "m.onnx", output="proba")
    with pytest.raises(ValueError, match="opset must lie in 17"):
        to_onnx(model, tmp_path / "m.onnx", opset=13)
    with pytest.raises(TypeError, match="opset must be an integer"):
        to_onnx(model, tmp_path / "m.onnx", opset="17")
    with pytest.raises(TypeError, match="expected a fastnn.Sequential"):
        to_onnx("model.npz", tmp_path / "m.onnx")
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if onnx were not installed
    with pytest.raises(ImportError, match=r"fastnn\[onnx\]"):
        to_onnx(model, tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


# -- the command -----------------------------------------------------------------------------
def test_cli_export(tmp_path, capsys):
    model = make_model(["relu", None], n_out=3)
    X, y = make_blobs(60, 6, 3, seed=0, dtype="float32")
    model.fit(X, y, loss="cross_entropy", epochs=1, backend="numpy")
    model.save(tmp_path / "m.npz")
    code = cli.main(["export", str(tmp_path / "m.npz"), str(tmp_path / "m.onnx"),
                     "--output", "probabilities", "--opset", "18"])  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "opset 18, 2 layers, (batch, 6) -> probabilities (batch, 3)" in out.out
    assert_matches(run(tmp_path / "m.onnx", X), model.predict_proba(X))
    assert cli_export.main([str(tmp_path / "none.npz"), str(tmp_path / "x.onnx")]) == 2
    assert "no model file" in capsys.readouterr().err
    saved, fresh = str(tmp_path / "m.npz"), str(tmp_path / "x.onnx")
    assert cli_export.main([saved, str(tmp_path / "no" / "x.onnx")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert cli_export.main([saved, fresh, "--opset", "9"]) == 2
    assert "opset must lie in" in capsys.readouterr().err
    assert cli_export.main([saved, fresh, "--output", "z"]) == 2  # argparse's usage error
    assert sorted(os.listdir(tmp_path)) == ["m.npz", "m.onnx"]
    assert cli.main(["--help"]) == 0 and "export" in capsys.readouterr().out
