"""Dropout: a regulariser that zeroes a random fraction of the activations while training."""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np

from ..backends.workspace import LayerSlot
from .base import Layer, Shape, register_layer


@register_layer
class Dropout(Layer):
    """Inverted dropout: in training ``out = x * mask / (1 - p)`` with ``mask ~ Bernoulli(1-p)``
    drawn per sample and unit; in prediction ``out = x``.

    The scale keeps the expected activation the same in training and prediction. The draws
    come from a generator derived from the model's seed (``Sequential(seed=...)``), so two runs
    with the same seed drop the same units.

    Parameters
    ----------
    p : float
        Probability of dropping each unit, in [0, 1).
    """

    kind = "dropout"

    def __init__(self, p: float) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
            raise TypeError(f"Dropout(p): p must be a number in [0, 1), got {p!r}")
        if not (math.isfinite(p) and 0.0 <= p < 1.0):
            raise ValueError(f"Dropout(p): p must lie in [0, 1), got {p!r}")
        self.p = float(p)
        self._rng: np.random.Generator | None = None

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def init_params(self, rng: np.random.Generator, dtype: np.dtype) -> None:
        # A child stream of the model's generator: the other layers' weights stay the same.
        self._rng = rng.spawn(1)[0]

    def buffer_shapes(self, rows: int, act: int) -> dict[str, Any]:
        return {"mask": (rows, *self.output_shape)}

    def forward_into(self, B: ModuleType, x: np.ndarray, slot: LayerSlot, n: int) -> None:
        out = slot.output[:n]
        if not slot.training or self.p == 0.0:
            out[...] = x
            return
        mask = slot.buffers["mask"][:n]
        keep = self._rng.random(mask.shape, dtype=np.float64) >= self.p
        np.multiply(keep, 1.0 / (1.0 - self.p), out=mask, casting="unsafe")
        np.multiply(x, mask, out=out)

    def backward_into(
        self, B: ModuleType, x: np.ndarray, slot: LayerSlot, n: int, grad_x: np.ndarray | None
    ) -> None:
        if grad_x is not None:
            if self.p == 0.0:
                grad_x[...] = slot.delta[:n]
            else:
                np.multiply(slot.delta[:n], slot.buffers["mask"][:n], out=grad_x)

    def config(self) -> dict[str, Any]:
        return {"p": self.p}

    def describe(self) -> str:
        return f"Dropout({self.p:g})"

    def __repr__(self) -> str:
        return f"Dropout({self.p:g})"
