"""ONNX export: a fastnn network as an ONNX graph that onnxruntime (or any runtime) runs.

The graph has one input ``"input"``, float32 of shape ``(batch, n_features)`` with a dynamic
batch dimension, and one output, float32 ``(batch, n_outputs)``, named after what it holds:
``"logits"`` (what ``model.decision_function`` returns) or ``"probabilities"`` (what
``model.predict_proba`` returns, with the softmax or sigmoid the loss fuses in).

Design
------
A. Two registries, no if-chains. :data:`LAYER_EMITTERS` maps a layer class name to a function
   that appends the layer's nodes; :data:`ACTIVATION_EMITTERS` maps an activation name (the keys
   of ``fastnn._codes.ACTIVATION_CODES``) to the nodes computing it. Covering a new layer kind
   (``Conv2D``, ``MaxPool2D``, ``Flatten``, ``Dropout``: identity at inference) is one function
   and one entry in ``LAYER_EMITTERS``; a new activation is one entry in
   ``ACTIVATION_EMITTERS``. Anything without an entry raises ``NotImplementedError`` naming it.
B. Standard operators only, at the lowest opset that has them (17 by default): exact GELU is
   ``0.5 x (1 + erf(x / sqrt 2))`` from ``Erf``/``Mul``/``Add`` because the ``Gelu`` operator
   only arrived in opset 20, where it is used.
C. The whole model is built and checked (``onnx.checker.check_model`` with shape inference)
   in memory before anything touches the disk, then written atomically.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import write_atomic
from ._source import OUTPUT_KINDS, as_sequential, layer_activations

DEFAULT_OPSET = 17
MIN_OPSET = 17
INPUT_NAME = "input"
_GELU_OP_OPSET = 20  # first opset with the Gelu operator
_MAX_PROTO_BYTES = 2**31 - 1  # protobuf's limit for one message: beyond it ONNX needs external data


def _require_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise ImportError("ONNX export needs the onnx package: pip install 'fastnn[onnx]'") from exc
    return onnx


class _Graph:
    """The nodes and initializers of the graph being built, with unique value names."""

    def __init__(self, onnx: Any, opset: int) -> None:
        self.onnx = onnx
        self.opset = opset
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.where = ""  # "layer 2 (Dense)": for error messages
        self._count = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, hint: str, value: Any) -> str:
        """A float32 initializer holding ``value``; returns its name."""
        name = self._name(hint)
        array = np.ascontiguousarray(value, dtype=np.float32)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: list[str], **attrs: Any) -> str:
        """Append one ``op`` node; returns the name of its (single) output."""
        out = self._name(op.lower())
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], **attrs))
        return out

    def activation(self, x: str, name: str, layer: Any) -> str:
        """Nodes applying activation ``name`` to ``x``, with ``layer``'s parameters."""
        emit = ACTIVATION_EMITTERS.get(name)
        if emit is None:
            raise NotImplementedError(
                f"activation {name!r} of {self.where} cannot be expressed in ONNX by "
                f"fastnn.export yet (it knows {', '.join(ACTIVATION_EMITTERS)}); add an entry "
                "to fastnn.export.onnx.ACTIVATION_EMITTERS"
            )
        return emit(self, x, layer)


# Activations ------------------------------------------------------------------------------
# Each emitter: (graph, input value name, layer holding the parameters) -> output value name.
ActivationEmitter = Callable[[_Graph, str, Any], str]


def _unary(op: str) -> ActivationEmitter:
    return lambda g, x, layer: g.node(op, [x])


def _gelu(g: _Graph, x: str, layer: Any) -> str:
    """gelu(x) = 0.5 x (1 + erf(x / sqrt 2)), the exact form."""
    if g.opset >= _GELU_OP_OPSET:
        return g.node("Gelu", [x], approximate="none")
    erf = g.node("Erf", [g.node("Mul", [x, g.const("inv_sqrt2", 1 / math.sqrt(2))])])
    one_plus = g.node("Add", [erf, g.const("one", 1.0)])
    return g.node("Mul", [g.node("Mul", [x, one_plus]), g.const("half", 0.5)])


def _gelu_tanh(g: _Graph, x: str, layer: Any) -> str:
    """gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))."""
    if g.opset >= _GELU_OP_OPSET:
        return g.node("Gelu", [x], approximate="tanh")
    cube = g.node("Mul", [g.node("Mul", [x, x]), x])
    inner = g.node("Add", [x, g.node("Mul", [cube, g.const("c", 0.044715)])])
    scaled = g.node("Mul", [inner, g.const("sqrt_2_over_pi", math.sqrt(2 / math.pi))])
    tanh = g.node("Tanh", [scaled])
    one_plus = g.node("Add", [tanh, g.const("one", 1.0)])
    return g.node("Mul", [g.node("Mul", [x, one_plus]), g.const("half", 0.5)])


def _silu(g: _Graph, x: str, layer: Any) -> str:
    """silu(x) = x sigmoid(x)."""
    return g.node("Mul", [x, g.node("Sigmoid", [x])])


#: Activation name -> emitter. Names match ``fastnn._codes.ACTIVATION_CODES``.
ACTIVATION_EMITTERS: dict[str, ActivationEmitter] = {
    "identity": lambda g, x, layer: x,
    "sigmoid": _unary("Sigmoid"),
    "tanh": _unary("Tanh"),
    "relu": _unary("Relu"),
    # fastnn: z if z > 0 else slope z; ONNX LeakyRelu: the same (both give 0 at z = 0).
    "leaky_relu": lambda g, x, layer: g.node("LeakyRelu", [x], alpha=float(layer.negative_slope)),
    "softmax": lambda g, x, layer: g.node("Softmax", [x], axis=-1),
    "gelu": _gelu,
    "gelu_tanh": _gelu_tanh,
    "silu": _silu,
    "elu": lambda g, x, layer: g.node("Elu", [x], alpha=float(layer.alpha)),
}


# Layers -------------------------------------------------------------------------------------
# Each emitter: (graph, input value name, layer, activation to apply or None) -> output name.
# The activation is the layer's own except for the last layer, where the output kind decides.
LayerEmitter = Callable[[_Graph, str, Any, "str | None"], str]


def _dense(g: _Graph, x: str, layer: Any, activation: str | None) -> str:
    """Dense: Gemm(x, W, b) = x @ W + b, W (in, out) as stored, then the activation."""
    z = g.node("Gemm", [x, g.const("W", layer.W), g.const("b", layer.b)])
    return g.activation(z, activation or "identity", layer)


#: Layer class name -> emitter. Add Conv2D, MaxPool2D, Flatten, Dropout here.
LAYER_EMITTERS: dict[str, LayerEmitter] = {
    "Dense": _dense,
}


# The public API -----------------------------------------------------------------------------
def _check_opset(onnx: Any, opset: object) -> int:
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise TypeError(f"opset must be an integer, got {type(opset).__name__}")
    if not MIN_OPSET <= int(opset) <= newest:
        raise ValueError(
            f"opset must lie in {MIN_OPSET}..{newest} (the installed onnx {onnx.__version__} "
            f"knows up to {newest}), got {opset}"
        )
    return int(opset)


def build_onnx(model: Any, output: str = "logits", opset: int = DEFAULT_OPSET) -> Any:
    """Build and check the ONNX model of ``model`` in memory, without writing a file.

    Parameters
    ----------
    model : Sequential or fitted fastnn.sklearn estimator
    output : {"logits", "probabilities"}, default "logits"
        "logits": the graph computes ``model.decision_function``; "probabilities":
        ``model.predict_proba``.
    opset : int, default 17
        ONNX operator set version, at least 17.

    Returns
    -------
    onnx.ModelProto
        Input ``"input"`` float32 (batch, n_features); output named ``output``, float32
        (batch, n_outputs). Weights are stored as float32 whatever the model's dtype.

    Raises
    ------
    NotImplementedError
        A layer kind or an activation the exporter cannot express; the message names it.
    """
    if output not in OUTPUT_KINDS:
        raise ValueError(f"output must be one of {', '.join(OUTPUT_KINDS)}; got {output!r}")
    net = as_sequential(model)
    onnx = _require_onnx()
    opset = _check_opset(onnx, opset)
    n_params = sum(p.size for p in net.parameters())
    if 4 * n_params >= _MAX_PROTO_BYTES:
        raise ValueError(f"{n_params:,} float32 parameters exceed the 2 GiB of one ONNX file")
    g = _Graph(onnx, opset)
    value = INPUT_NAME
    for i, (layer, act) in enumerate(zip(net.layers, layer_activations(net, output), strict=True)):
        kind = type(layer).__name__
        g.where = f"layer {i} ({kind})"
        emit = LAYER_EMITTERS.get(kind)
        if emit is None:
            raise NotImplementedError(
                f"layer {i} is a {kind}, which fastnn.export cannot express in ONNX yet "
                f"(it knows {', '.join(LAYER_EMITTERS)}); add an emitter to "
                "fastnn.export.onnx.LAYER_EMITTERS"
            )
        value = emit(g, value, layer, act)
    if g.nodes and g.nodes[-1].output[0] == value:
        g.nodes[-1].output[0] = output  # name the graph output after what it holds
    else:
        g.nodes.append(onnx.helper.make_node("Identity", [value], [output]))
    return _finish(onnx, g, net, output)


def _finish(onnx: Any, g: _Graph, net: Any, output: str) -> Any:
    h = onnx.helper
    f32 = onnx.TensorProto.FLOAT
    graph = h.make_graph(
        g.nodes, "fastnn_sequential",
        [h.make_tensor_value_info(INPUT_NAME, f32, ["batch", net.n_features])],
        [h.make_tensor_value_info(output, f32, ["batch", net.n_outputs])],
        initializer=g.initializers,
    )  # fmt: skip
    opsets = [h.make_opsetid("", g.opset)]
    from .. import __version__

    proto = h.make_model(graph, opset_imports=opsets, producer_name="fastnn",
                         producer_version=__version__)  # fmt: skip
    # The oldest IR version that carries this opset, so older runtimes load the file too.
    proto.ir_version = h.find_min_ir_version_for(opsets)
    proto.doc_string = f"fastnn Sequential exported with output={output!r}"
    h.set_model_props(proto, {
        "fastnn.output": output,
        "fastnn.loss": "" if net.loss is None else net.loss.name,
        "fastnn.layers": json.dumps([layer.config() for layer in net.layers]),
    })  # fmt: skip
    onnx.checker.check_model(proto, full_check=True)
    return proto


def to_onnx(
    model: Any,
    path: str | os.PathLike[str],
    output: str = "logits",
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write ``model`` as an ONNX file that computes its logits or its probabilities.

    Parameters
    ----------
    model : Sequential or fitted fastnn.sklearn.MLPClassifier / MLPRegressor
        An estimator exports the network it holds (its ``predict_proba`` for a binary
        classifier has two columns; the exported network outputs the single probability).
    path : str or path-like
        Destination file (``.onnx`` is customary); an existing file is replaced.
    output : {"logits", "probabilities"}, default "logits"
        "logits": the file computes ``model.decision_function(X)``; "probabilities":
        ``model.predict_proba(X)`` (softmax for cross-entropy, sigmoid for binary
        cross-entropy, the last layer's own activation for mse).
    opset : int, default 17
        ONNX operator set version, at least 17.

    Returns
    -------
    Path
        ``path``. The file's graph takes ``"input"``, float32 (batch, n_features), and returns
        one output named ``output``, float32 (batch, n_outputs); the batch size is dynamic.

    Raises
    ------
    NotImplementedError
        A layer kind or an activation ONNX export cannot express (the message names it).
    OSError
        ``path`` cannot be written (a directory, a missing directory, no permission).
        Nothing is left behind on any error: the file is written to a temporary name in the
        same directory and renamed into place once complete.
    ImportError
        The onnx package is missing (``pip install 'fastnn[onnx]'``).

    Examples
    --------
    >>> from fastnn.export import to_onnx
    >>> to_onnx(model, "model.onnx", output="probabilities")  # doctest: +SKIP
    >>> import onnxruntime as ort  # doctest: +SKIP
    >>> ort.InferenceSession("model.onnx").run(None, {"input": X})[0]  # doctest: +SKIP
    """
    proto = build_onnx(model, output=output, opset=opset)
    return write_atomic(path, proto.SerializeToString(), "ONNX file")
