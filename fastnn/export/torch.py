"""PyTorch interop: a fastnn network as a ``torch.nn.Sequential`` and back, same weights.

A fastnn ``Dense(d, k, activation)`` is ``torch.nn.Linear(d, k)`` (``weight = W.T``, shape
(k, d); ``bias = b``) followed by the activation's module, or by nothing for identity.

Both directions loop over one table, :data:`TORCH_ACTIVATIONS` (fastnn activation name ->
torch module class and its parameters); a fastnn activation without an entry, or a torch
module outside the table, raises an error that names it. Imported as :mod:`fastnn.interop`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import _codes as C
from ..layers import Dense
from ..model import Sequential
from ._source import OUTPUT_KINDS, as_sequential, layer_activations


def _require_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise ImportError("PyTorch interop needs torch: see https://pytorch.org") from exc
    return torch


@dataclass(frozen=True)
class TorchActivation:
    """How one fastnn activation maps onto a torch module.

    Attributes
    ----------
    module : str
        Class name in ``torch.nn`` ("ReLU").
    kwargs : dict
        Constructor arguments of the module that select this activation
        (``{"approximate": "tanh"}`` for gelu_tanh).
    params : dict
        fastnn ``Dense`` attribute -> torch module attribute carrying a parameter
        (``{"negative_slope": "negative_slope"}``).
    """

    module: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


#: fastnn activation name -> its torch module. Identity has no module.
TORCH_ACTIVATIONS: dict[str, TorchActivation | None] = {
    "identity": None,
    "sigmoid": TorchActivation("Sigmoid"),
    "tanh": TorchActivation("Tanh"),
    "relu": TorchActivation("ReLU"),
    "leaky_relu": TorchActivation("LeakyReLU", params={"negative_slope": "negative_slope"}),
    "softmax": TorchActivation("Softmax", kwargs={"dim": -1}),
    "gelu": TorchActivation("GELU", kwargs={"approximate": "none"}),
    "gelu_tanh": TorchActivation("GELU", kwargs={"approximate": "tanh"}),
    "silu": TorchActivation("SiLU"),
    "elu": TorchActivation("ELU", params={"alpha": "alpha"}),
}


def _activation_module(torch: Any, name: str, layer: Any, index: int) -> Any | None:
    if name not in TORCH_ACTIVATIONS:
        raise NotImplementedError(
            f"activation {name!r} of layer {index} has no PyTorch module in fastnn.interop "
            f"(it knows {', '.join(TORCH_ACTIVATIONS)}); add it to "
            "fastnn.export.torch.TORCH_ACTIVATIONS"
        )
    spec = TORCH_ACTIVATIONS[name]
    if spec is None:
        return None
    kwargs = dict(spec.kwargs)
    kwargs.update({theirs: float(getattr(layer, ours)) for ours, theirs in spec.params.items()})
    return getattr(torch.nn, spec.module)(**kwargs)


def to_torch(model: Any, output: str | None = None) -> Any:
    """A ``torch.nn.Sequential`` with the layers and weights of ``model``.

    Parameters
    ----------
    model : Sequential or fitted fastnn.sklearn estimator
    output : {None, "logits", "probabilities"}, default None
        None keeps every layer's declared activation, so ``from_torch(to_torch(model))`` gives
        the same layers back. "logits" ends the module with what ``model.decision_function``
        computes (a softmax/sigmoid fused into the loss is dropped: feed it to
        ``torch.nn.CrossEntropyLoss`` or ``BCEWithLogitsLoss``); "probabilities" with what
        ``model.predict_proba`` computes.

    Returns
    -------
    torch.nn.Sequential
        ``Linear(in_features, out_features)`` per ``Dense`` (``weight`` (out, in) = ``W.T``,
        ``bias`` (out,) = ``b``), each followed by its activation module (none for identity).
        Parameters are copies in the model's dtype (float32 or float64); input (n, n_features),
        output (n, n_outputs).
    """
    if output is not None and output not in OUTPUT_KINDS:
        raise ValueError(f"output must be None or one of {', '.join(OUTPUT_KINDS)}; got {output!r}")
    net = as_sequential(model)
    torch = _require_torch()
    dtype = getattr(torch, str(net.dtype))  # float32 or float64, as the model
    modules = []
    for i, (layer, act) in enumerate(zip(net.layers, layer_activations(net, output), strict=True)):
        kind = type(layer).__name__
        convert = LAYER_CONVERTERS.get(kind)
        if convert is None:
            raise NotImplementedError(
                f"layer {i} is a {kind}, which fastnn.interop cannot convert to PyTorch yet "
                f"(it knows {', '.join(LAYER_CONVERTERS)}); add a converter to "
                "fastnn.export.torch.LAYER_CONVERTERS"
            )
        modules += convert(torch, layer, act or "identity", i, dtype)
    return torch.nn.Sequential(*modules)


def _dense(torch: Any, layer: Any, act: str, index: int, dtype: Any) -> list[Any]:
    """Dense -> [Linear] or [Linear, activation module]; weight (out, in) = W.T."""
    linear = torch.nn.Linear(layer.in_features, layer.out_features, dtype=dtype)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(layer.W.T)))
        linear.bias.copy_(torch.from_numpy(layer.b))
    module = _activation_module(torch, act, layer, index)
    return [linear] if module is None else [linear, module]


#: Layer class name -> (torch, layer, activation, index, dtype) -> list of torch modules.
#: Add Conv2D (nn.Conv2d: the same NCHW weight layout), MaxPool2D, Flatten, Dropout here.
LAYER_CONVERTERS: dict[str, Callable[..., list[Any]]] = {"Dense": _dense}


# torch -> fastnn ---------------------------------------------------------------------------
def _reverse_table() -> dict[str, list[tuple[str, TorchActivation]]]:
    """torch class name -> the fastnn activations it can be (GELU: gelu or gelu_tanh)."""
    table: dict[str, list[tuple[str, TorchActivation]]] = {}
    for name, spec in TORCH_ACTIVATIONS.items():
        if spec is not None and name in C.ACTIVATION_CODES:  # only what this fastnn has
            table.setdefault(spec.module, []).append((name, spec))
    return table


def _matches(module: Any, spec: TorchActivation) -> bool:
    for key, value in spec.kwargs.items():
        if key == "dim":
            # Softmax over the features: dim -1 or 1 on (n, k) inputs. dim=None is torch's
            # legacy implicit choice, also 1 for 2-D inputs.
            if getattr(module, key) not in (-1, 1, None):
                return False
        elif getattr(module, key) != value:
            return False
    return True


def _read_activation(module: Any, desc: str) -> tuple[str, dict[str, float]]:
    """(fastnn activation name, Dense keyword arguments) of a torch activation module."""
    candidates = _reverse_table().get(type(module).__name__, [])
    for name, spec in candidates:
        if _matches(module, spec):
            params = spec.params.items()
            return name, {ours: float(getattr(module, theirs)) for ours, theirs in params}
    if candidates:
        raise ValueError(f"{desc} is {module!r}, whose settings fastnn cannot reproduce")
    raise _unsupported(module, desc)


def _unsupported(module: Any, desc: str) -> NotImplementedError:
    kind = type(module).__name__
    missing = [n for n, s in TORCH_ACTIVATIONS.items() if s is not None and s.module == kind]
    if missing:  # in the table, but this fastnn does not have the activation (yet)
        return NotImplementedError(
            f"{desc} is a {kind}: fastnn activation {' / '.join(map(repr, missing))}, which "
            f"this fastnn does not have (it has {', '.join(C.ACTIVATION_CODES)})"
        )
    known = ["Linear", "Identity", *_reverse_table()]
    return NotImplementedError(
        f"{desc} is a {type(module).__name__}, which from_torch does not support; "
        f"a torch.nn.Sequential may hold: {', '.join(known)}"
    )


def _plan(module: Any) -> list[tuple[Any, str, dict[str, float]]]:
    """[(Linear, activation name, Dense kwargs)] read from the children of ``module``."""
    torch = _require_torch()
    if not isinstance(module, torch.nn.Sequential):
        raise TypeError(f"from_torch reads a torch.nn.Sequential, got {type(module).__name__}")
    plan: list[tuple[Any, str, dict[str, float]]] = []
    has_act = False  # the last Linear already has its activation
    for index, (label, child) in enumerate(module.named_children()):
        desc = f"module {index}" + ("" if label == str(index) else f" ({label!r})")
        if isinstance(child, torch.nn.Linear):
            plan.append((child, "identity", {}))
            has_act = False
        elif isinstance(child, torch.nn.Identity):
            continue
        elif type(child).__name__ not in _reverse_table():
            raise _unsupported(child, desc)
        elif not plan or has_act:
            what = "comes before any Linear" if not plan else "follows another activation"
            raise ValueError(f"{desc} ({type(child).__name__}) {what}: fastnn has one "
                             "activation after each Linear")  # fmt: skip
        else:
            name, kwargs = _read_activation(child, desc)
            plan[-1] = (plan[-1][0], name, kwargs)
            has_act = True
    if not plan:
        raise ValueError("the torch.nn.Sequential holds no Linear layer")
    return plan


def from_torch(module: Any, dtype: str = "float32") -> Sequential:
    """A fastnn ``Sequential`` with the layers and weights of a ``torch.nn.Sequential``.

    Parameters
    ----------
    module : torch.nn.Sequential
        ``Linear`` layers, each optionally followed by one activation module of
        :data:`TORCH_ACTIVATIONS` (Sigmoid, Tanh, ReLU, LeakyReLU, Softmax(dim=-1), GELU,
        SiLU, ELU, ... as far as this fastnn has the activation); ``Identity`` anywhere.
    dtype : {"float32", "float64"}, default "float32"
        Dtype of the new model.

    Returns
    -------
    Sequential
        One ``Dense(in_features, out_features, activation)`` per ``Linear``, ``W`` (in, out) =
        ``weight.T``, ``b`` = ``bias`` (zeros for ``bias=False``). It has no loss yet:
        ``predict_proba`` returns what the module returns until ``fit`` sets one.

    Raises
    ------
    NotImplementedError
        A module fastnn has no layer for; the message names it and its index.
    ValueError
        An activation in a place or with settings fastnn cannot reproduce.
    """
    layers, weights = [], []
    for linear, name, kwargs in _plan(module):
        # kwargs carry only the activation's own parameters (alpha for elu alone), so this
        # also works with a Dense that has no alpha argument.
        layers.append(Dense(linear.in_features, linear.out_features, activation=name, **kwargs))
        w = linear.weight.detach().cpu().double().numpy()
        bias = linear.bias
        b = np.zeros(linear.out_features) if bias is None else bias.detach().cpu().double().numpy()
        weights += [w.T, b]
    model = Sequential(layers, seed=0, dtype=dtype)
    model.set_weights(weights)
    return model


__all__ = ["TORCH_ACTIVATIONS", "TorchActivation", "from_torch", "to_torch"]
