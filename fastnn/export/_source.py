"""What every exporter needs from a model: the ``Sequential`` and its last activation.

One place decides what "logits" and "probabilities" mean, by asking the model the same
questions ``decision_function`` and ``predict_proba`` ask, so an exported model computes what
fastnn computes even as the loss rules change.
"""

from __future__ import annotations

from typing import Any

from .. import _codes as C

#: What the exported network outputs: ``decision_function`` or ``predict_proba``.
OUTPUT_KINDS: tuple[str, ...] = ("logits", "probabilities")


def _is_network(model: Any) -> bool:
    # A Sequential, recognised by what exporters use (this package must not import
    # fastnn.model, whose to_onnx method imports it).
    return hasattr(model, "layers") and hasattr(model, "_loss_input_act")


def as_sequential(model: Any) -> Any:
    """The ``Sequential`` behind ``model``: itself, or the network a fitted estimator holds.

    Parameters
    ----------
    model : Sequential or fitted fastnn.sklearn.MLPClassifier / MLPRegressor

    Raises
    ------
    TypeError
        Neither a ``Sequential`` nor a fastnn estimator.
    ValueError
        An estimator that is not fitted yet.
    """
    if _is_network(model):
        return model
    if hasattr(model, "_sync_model") and hasattr(model, "get_params"):  # fastnn.sklearn
        if not hasattr(model, "_model"):
            raise ValueError(f"{type(model).__name__} is not fitted yet: call fit before export")
        model._sync_model()  # take coefs_ / intercepts_ the user may have assigned
        return model._model
    raise TypeError(
        f"expected a fastnn.Sequential or a fitted fastnn.sklearn estimator, "
        f"got {type(model).__name__}"
    )


def final_activation(model: Any, output: str) -> str:
    """Name of the activation the last layer applies for ``output``.

    Parameters
    ----------
    model : Sequential
    output : {"logits", "probabilities"}
        "logits": what ``model.decision_function`` returns (a softmax/sigmoid fused into the
        loss is left out); "probabilities": what ``model.predict_proba`` returns.
    """
    if output not in OUTPUT_KINDS:
        raise ValueError(f"output must be one of {', '.join(OUTPUT_KINDS)}; got {output!r}")
    if output == "logits":
        code = model._loss_input_act(model.loss)
    else:
        code = model._output_activation()
    return C.ACTIVATION_NAMES[code]


def layer_activations(model: Any, output: str | None) -> list[str | None]:
    """The activation each layer applies in the exported network (None: the layer has none).

    ``output=None`` keeps every layer's declared activation (what ``model.forward`` computes).
    """
    acts = [getattr(layer, "activation", None) for layer in model.layers]
    if output is not None:
        acts[-1] = final_activation(model, output)
    return acts
