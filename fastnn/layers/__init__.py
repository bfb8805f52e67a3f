"""Layers: the protocol (:mod:`fastnn.layers.base`) and one module per layer kind.

A new layer kind is a :class:`Layer` subclass in its own module, decorated with
:func:`register_layer` and imported here; ``Sequential``, ``save``/``load``, ``summary``, the
workspace and the per-batch training loop then handle it without change (see
``docs/ARCHITECTURE.md``).
"""

from ._activated import HE_INIT, INITS, RELU_FAMILY
from .base import LAYERS, Layer, layer_from_config, register_layer
from .conv import Conv2D
from .dense import ACTIVATIONS, Dense
from .dropout import Dropout
from .pool import MaxPool2D
from .reshape import Flatten

__all__ = [
    "ACTIVATIONS", "HE_INIT", "INITS", "LAYERS", "RELU_FAMILY", "Conv2D", "Dense", "Dropout",
    "Flatten", "Layer", "MaxPool2D", "layer_from_config", "register_layer",
]  # fmt: skip
