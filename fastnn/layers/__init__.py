"""Layers: the protocol (:mod:`fastnn.layers.base`) and one module per layer kind.

A new layer kind is a :class:`Layer` subclass in its own module, decorated with
:func:`register_layer` and imported here; ``Sequential``, ``save``/``load``, ``summary``, the
workspace and the per-batch training loop then handle it without change (see
``docs/ARCHITECTURE.md``).
"""

from .base import LAYERS, Layer, layer_from_config, register_layer
from .dense import ACTIVATIONS, INITS, RELU_FAMILY, Dense

__all__ = [
    "ACTIVATIONS", "INITS", "LAYERS", "RELU_FAMILY", "Dense", "Layer", "layer_from_config",
    "register_layer",
]  # fmt: skip
