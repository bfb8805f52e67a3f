"""Layers (``fastnn.layers``): the protocol, the registry, and each kind through it.

The registry-wide tests loop over ``fastnn.layers.LAYERS`` with the example constructor
arguments of ``EXAMPLES``; a registered kind without an example fails loudly, so a new layer
kind is noticed and gets its example (and with it config round trip, build, shapes, the
teaching-path forward/backward and save/load) here. Those run on the reference backend: every
backend with every kind is ``test_training.py::test_every_backend_trains_every_layer_kind...``.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest

import fastnn
from fastnn import _codes as C
from fastnn import io as fio
from fastnn.layers import ACTIVATIONS, LAYERS, Dense, Layer, layer_from_config, register_layer

# kind -> list of (constructor kwargs, input shape of one sample, expected output shape)
EXAMPLES = {
    "dense": [
        *[({"in_features": 3, "out_features": 4, "activation": a}, (3,), (4,))
          for a in ACTIVATIONS],
        ({"in_features": 3, "out_features": 2, "activation": "elu", "alpha": 0.5,
          "init": "xavier"}, (3,), (2,)),
        ({"in_features": 5, "out_features": 1, "activation": "leaky_relu",
          "negative_slope": 0.2, "init": "normal"}, (5,), (1,)),
    ],
    "conv2d": [
        ({"in_channels": 2, "out_channels": 3, "kernel_size": 3, "padding": 1,
          "activation": "relu"}, (2, 5, 5), (3, 5, 5)),
        ({"in_channels": 1, "out_channels": 2, "kernel_size": 3, "stride": 2,
          "activation": "gelu"}, (1, 7, 7), (2, 3, 3)),
    ],
    "maxpool2d": [({"kernel_size": 2}, (2, 4, 4), (2, 2, 2))],
    "dropout": [({"p": 0.25}, (5,), (5,))],
    "flatten": [({}, (2, 3, 3), (18,))],
}  # fmt: skip


def registered_examples():
    cases = []
    for kind in sorted(LAYERS):
        for i, (kwargs, shape_in, shape_out) in enumerate(EXAMPLES.get(kind, [])):
            cases.append(pytest.param(kind, kwargs, shape_in, shape_out, id=f"{kind}-{i}"))
    return cases


CASES = registered_examples()


def built(kind, kwargs, shape_in, seed=0, dtype=np.float64):
    layer = LAYERS[kind](**kwargs)
    layer.build(shape_in, np.random.default_rng(seed), dtype)
    return layer


# The registry --------------------------------------------------------------------------------
def test_every_registered_kind_has_an_example():
    missing = sorted(set(LAYERS) - set(EXAMPLES))
    assert not missing, (
        f"layer kinds {missing} are registered but have no example in tests/test_layers.py "
        "EXAMPLES: add their constructor arguments and shapes there"
    )
    assert all(EXAMPLES[kind] for kind in LAYERS)


def test_registry_maps_each_kind_to_its_layer_class():
    assert "dense" in LAYERS and LAYERS["dense"] is Dense
    for kind, cls in LAYERS.items():
        assert issubclass(cls, Layer) and cls.kind == kind
    for name in fastnn.layers.__all__:
        assert hasattr(fastnn.layers, name), name


@pytest.mark.parametrize(("kind", "kwargs", "shape_in", "shape_out"), CASES)
def test_config_round_trips_through_json_and_the_registry(kind, kwargs, shape_in, shape_out):
    layer = LAYERS[kind](**kwargs)
    cfg = layer.config()
    text = json.dumps(cfg)  # JSON-able: this is what save writes
    again = layer_from_config(kind, json.loads(text))
    assert type(again) is type(layer)
    assert json.dumps(again.config()) == text
    assert repr(again) == repr(layer) and again.describe() == layer.describe()
    a, b = built(kind, kwargs, shape_in, seed=5), again
    b.build(shape_in, np.random.default_rng(5), np.float64)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):  # same init from the config
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize(("kind", "kwargs", "shape_in", "shape_out"), CASES)
def test_build_reports_the_output_shape_and_allocates_parameters(kind, kwargs, shape_in,
                                                                  shape_out):  # fmt: skip
    layer = LAYERS[kind](**kwargs)
    assert not layer.built and layer.input_shape is None
    if layer.param_names:
        with pytest.raises(RuntimeError, match="not built"):
            layer.parameters()
    out = layer.build(shape_in, np.random.default_rng(0), np.float32)
    assert out == layer.output_shape == shape_out and layer.input_shape == shape_in
    assert layer.built
    params = layer.parameters()
    assert len(params) == len(layer.param_names)
    assert all(p.dtype == np.float32 and p.flags.c_contiguous for p in params)
    assert all(p is getattr(layer, name) for p, name in zip(params, layer.param_names, strict=True))
    assert layer.n_params() == sum(p.size for p in params)


@pytest.mark.parametrize(("kind", "kwargs", "shape_in", "shape_out"), CASES)
def test_teaching_path_forward_and_backward_shapes(reference_backend, kind, kwargs, shape_in,
                                                    shape_out):  # fmt: skip
    layer = built(kind, kwargs, shape_in)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, *shape_in))
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.zeros((3, *shape_out)))
    out = layer.forward(x)
    assert out.shape == (3, *shape_out) and np.isfinite(out).all()
    with pytest.raises(ValueError, match="grad has shape"):
        layer.backward(np.zeros((4, *shape_out)))
    grad_x = layer.backward(rng.standard_normal(out.shape))
    assert grad_x.shape == x.shape and np.isfinite(grad_x).all()
    for p, g in zip(layer.parameters(), layer.gradients(), strict=True):
        assert g.shape == p.shape
    assert layer.backward(rng.standard_normal(out.shape), need_input_grad=False) is None
    with pytest.raises(ValueError, match="expects inputs of shape"):
        layer.forward(rng.standard_normal((3, *shape_in[:-1], shape_in[-1] + 1)))


@pytest.mark.parametrize(("kind", "kwargs", "shape_in", "shape_out"), CASES)
def test_every_kind_survives_save_and_load(reference_backend, tmp_path, kind, kwargs, shape_in,
                                           shape_out):  # fmt: skip
    model = fastnn.Sequential([LAYERS[kind](**kwargs)], seed=3, dtype="float64",
                              input_shape=shape_in)  # fmt: skip
    X = np.random.default_rng(2).standard_normal((4, *shape_in))
    model.save(tmp_path / "one.npz")
    loaded = fastnn.load(tmp_path / "one.npz")
    assert loaded.layers[0].kind == kind and loaded.input_shape == shape_in
    assert loaded.layers[0].config() == model.layers[0].config()
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


@pytest.mark.parametrize(("kind", "kwargs", "shape_in", "shape_out"), CASES)
def test_a_file_whose_weights_do_not_fit_their_layer_is_refused(tmp_path, kind, kwargs, shape_in,
                                                                 shape_out):  # fmt: skip
    """Checksums recomputed (a buggy writer, or an edit that updates them): the parameter
    shapes must still be checked against the layer record, as a ModelFileError."""
    layer = LAYERS[kind](**kwargs)
    if not layer.param_names:
        pytest.skip(f"{kind} has no parameters")
    model = fastnn.Sequential([layer], seed=0, input_shape=shape_in)
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays.pop(fio.META_KEY)))
    name = f"{layer.param_names[0]}0"
    wrong = np.zeros((*arrays[name].shape[:-1], arrays[name].shape[-1] + 1), arrays[name].dtype)
    arrays[name] = wrong
    meta["arrays"][name] = {"shape": list(wrong.shape), "dtype": str(wrong.dtype),
                            "sha256": hashlib.sha256(wrong.tobytes()).hexdigest()}  # fmt: skip
    np.savez(tmp_path / "t.npz", **{fio.META_KEY: np.array(json.dumps(meta))}, **arrays)
    with pytest.raises(fio.ModelFileError):
        fastnn.load(tmp_path / "t.npz")


def test_unknown_kind_and_unnamed_layers_are_refused():
    with pytest.raises(ValueError, match="unknown layer kind 'lstm'.*dense"):
        layer_from_config("lstm", {})

    class Nameless(Layer):
        pass

    with pytest.raises(ValueError, match="kind"):
        register_layer(Nameless)
    assert "" not in LAYERS
    with pytest.raises(TypeError):
        layer_from_config("dense", {"in_features": 3, "out_features": 2, "evil": 1})


def test_the_base_class_leaves_shapes_and_kernels_to_each_kind():
    layer = Layer()
    assert layer.param_names == () and layer.act_code == C.IDENTITY and layer.config() == {}
    with pytest.raises(NotImplementedError):
        layer.compute_output_shape((3,))
    with pytest.raises(RuntimeError, match="not built"):
        layer.forward(np.zeros((1, 3)))


# Dense ---------------------------------------------------------------------------------------
def test_dense_activation_parameter_and_z_buffer():
    for name in ACTIVATIONS:
        layer = Dense(3, 4, name, negative_slope=0.2, alpha=0.7)
        code = C.ACTIVATION_CODES[name]
        assert layer.act_code == code
        expected = {"leaky_relu": 0.2, "elu": 0.7}.get(name, 0.0)
        assert layer.act_alpha == expected
        assert (code in C.TAKES_ALPHA) == (name in ("leaky_relu", "elu"))
        layer.initialize(np.random.default_rng(0), np.float32)
        buffers = layer.buffer_shapes(6, code)
        assert buffers == ({"z": (6, 4)} if code in C.NEEDS_PREACTIVATION else {})
    assert Dense(3, 4).activation == "identity" and Dense(3, 4, "ReLU").activation == "relu"
    assert "alpha" not in Dense(3, 4, "relu").config()  # v1 files stay as they were


@pytest.mark.parametrize(
    ("init", "activation", "check"),
    [
        ("he", "tanh", lambda W, d, k: abs(W.std() / math.sqrt(2 / d) - 1) < 0.05),
        ("xavier", "relu", lambda W, d, k: abs(W).max() <= math.sqrt(6 / (d + k))
         and abs(W.std() / math.sqrt(2 / (d + k)) - 1) < 0.05),
        ("normal", "relu", lambda W, d, k: abs(W.std() / 0.01 - 1) < 0.05),
        ("auto", "gelu", lambda W, d, k: abs(W.std() / math.sqrt(2 / d) - 1) < 0.05),
        ("auto", "sigmoid", lambda W, d, k: abs(W).max() <= math.sqrt(6 / (d + k))),
    ],
)  # fmt: skip
def test_dense_init_schemes(init, activation, check):
    d, k = 400, 100
    layer = Dense(d, k, activation, init=init)
    layer.initialize(np.random.default_rng(0), np.float64)
    assert check(layer.W, d, k)
    np.testing.assert_array_equal(layer.b, np.zeros(k))


def test_dense_forward_is_the_formula():
    layer = Dense(3, 2, "elu", alpha=0.5)
    layer.initialize(np.random.default_rng(0), np.float64)
    x = np.random.default_rng(1).standard_normal((5, 3)) * 3
    z = x @ layer.W + layer.b
    np.testing.assert_allclose(layer.forward(x), np.where(z > 0, z, 0.5 * np.expm1(z)))


def test_dense_bad_arguments():
    with pytest.raises(ValueError, match="unknown activation 'swish'.*relu"):
        Dense(3, 4, "swish")
    with pytest.raises(ValueError, match="unknown init 'lecun'.*xavier"):
        Dense(3, 4, init="lecun")
    with pytest.raises(ValueError, match="in_features"):
        Dense(0, 4)
    with pytest.raises(TypeError, match="out_features"):
        Dense(3, 2.5)
    with pytest.raises(ValueError, match="negative_slope"):
        Dense(3, 4, "leaky_relu", negative_slope=-0.1)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="alpha"):
            Dense(3, 4, "elu", alpha=bad)
    layer = Dense(3, 4)
    with pytest.raises(ValueError, match=r"expects inputs of shape \(n, 3\), got \(n, 5\)"):
        layer.build((5,), np.random.default_rng(0), np.float32)
    with pytest.raises(ValueError, match="Flatten"):
        layer.build((1, 3), np.random.default_rng(0), np.float32)
    assert not layer.built  # a refused build leaves the layer unbuilt
