"""The buffers of one ``fit``: parameters, optimizer state and per-batch scratch space.

The API builds one :class:`Workspace` per ``fit`` (every array allocated once) and hands it to a
backend's ``train_epoch``; the per-batch loop (:mod:`fastnn.backends.eager`) uses the very same
buffers, which is what makes "``train_epoch`` equals the per-batch kernels" a testable statement.

A workspace knows layers only through the layer protocol (:class:`fastnn.layers.Layer`):
``parameters()``, ``output_shape``, ``buffer_shapes(rows, act)`` and ``act_code``/``alpha`` where a
layer has an activation. It holds one :class:`LayerSlot` per layer, and for the compiled epochs
(which run stacks of dense layers only) the same arrays as flat per-layer lists: ``weights``,
``biases``, ``dW``, ``db``, the optimizer states, ``outputs``, ``grads`` and ``preacts``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._codes import (
    H_BETA1,
    H_BETA2,
    H_EPS,
    H_LR,
    H_MOMENTUM,
    H_NESTEROV,
    H_WEIGHT_DECAY,
    IDENTITY,
    LOSS_CROSS_ENTROPY,
    N_HYPER,
    OPT_ADAM,
    OPT_MOMENTUM,
    OPT_SGD,
)


@dataclass
class LayerSlot:
    """What one layer reads and writes during training (or prediction) of one batch.

    Attributes
    ----------
    params : list of ndarray
        The layer's own parameter arrays (updated in place, never copied).
    grads : list of ndarray
        Gradients of the loss with respect to ``params``, same shapes.
    state1, state2 : list of ndarray
        Optimizer state per parameter (momentum velocity or Adam's m; Adam's v).
    output : ndarray, shape (rows, *output_shape)
        The layer's output.
    delta : ndarray, shape (rows, *output_shape)
        dL/d(output); a layer's backward pass may overwrite it (dense: with dL/dz).
    buffers : dict of str to ndarray
        Extra per-batch buffers the layer asked for (``buffer_shapes``), e.g. ``"z"``.
    act : int
        The layer's activation code as trained: an output softmax or sigmoid that the loss
        fuses is identity here.
    training : bool
        False for prediction (dropout is then the identity; no gradient buffers exist).
    """

    params: list[np.ndarray]
    grads: list[np.ndarray]
    state1: list[np.ndarray]
    state2: list[np.ndarray]
    output: np.ndarray
    delta: np.ndarray
    buffers: dict[str, np.ndarray] = field(default_factory=dict)
    act: int = IDENTITY
    training: bool = True


def _buffer(spec: Any, dtype: np.dtype) -> np.ndarray:
    """A zeroed buffer from a ``buffer_shapes`` entry: a shape (model dtype) or (shape, dtype)."""
    if len(spec) == 2 and isinstance(spec[0], tuple):
        return np.zeros(spec[0], dtype=spec[1])
    return np.zeros(spec, dtype=dtype)


def make_slots(
    layers: Sequence[Any], acts: Sequence[int], rows: int, dtype: np.dtype, training: bool = True
) -> list[LayerSlot]:
    """One :class:`LayerSlot` per layer, every buffer allocated here once.

    ``training=False`` (prediction) allocates no gradients, deltas or optimizer state.
    """
    slots = []
    for layer, act in zip(layers, acts, strict=True):
        params = list(layer.parameters())
        shape = (rows, *layer.output_shape)
        zeros = [np.zeros_like(p) for p in params] if training else []
        slots.append(
            LayerSlot(
                params=params,
                grads=zeros,
                state1=[np.zeros_like(p) for p in params] if training else [],
                state2=[np.zeros_like(p) for p in params] if training else [],
                output=np.zeros(shape, dtype=dtype),
                delta=np.zeros(shape if training else (0, *layer.output_shape), dtype=dtype),
                buffers={
                    name: _buffer(spec, dtype)
                    for name, spec in layer.buffer_shapes(rows, act).items()
                },
                act=int(act),
                training=training,
            )
        )
    return slots


class Workspace:
    """Parameters, optimizer state and buffers for training one network.

    Parameters
    ----------
    layers : sequence of Layer
        Built layers (their parameter arrays are used in place, not copied). One dtype.
    acts : sequence of int
        Activation code of each layer *as trained*: an output softmax or sigmoid that the loss
        fuses is given here as identity. Layers without an activation take identity.
    loss : int
        Loss code (``fastnn._codes.LOSS_*``).
    optimizer : int
        Optimizer code (``fastnn._codes.OPT_*``).
    hyper : ndarray of float64, shape (N_HYPER,)
        lr, momentum, nesterov, weight_decay, beta1, beta2, eps (see ``fastnn._codes``).
    batch_size : int
        Largest batch; the buffers have this many rows and a ragged batch uses the first rows.
    dtype : numpy dtype
        Dtype of the parameters and every float buffer.
    step : int
        Optimizer steps already taken (when training resumes).

    Attributes
    ----------
    slots : list of LayerSlot
        Per layer: parameters, gradients, optimizer state, output, delta, extra buffers.
    x_batch : ndarray, shape (batch_size, *input_shape)
    y_batch : ndarray, shape (batch_size,) int64 or (batch_size, k) float
    weights, biases, dW, db, state1_w, state1_b, state2_w, state2_b : list of ndarray
        The first and second parameter of every layer, with their gradients and optimizer state
        (the dense layout ``W`` (d, k), ``b`` (k,) read by the compiled epochs). Empty lists when
        some layer does not have exactly two parameters.
    outputs, grads : list of ndarray, shapes (batch_size, *output_shape)
        Each layer's output and dL/d(output) (overwritten with dL/dz by ``dense_backward``).
    preacts : list of ndarray
        Each layer's pre-activation buffer ``z`` (batch_size, k) where its activation needs it
        (``fastnn._codes.NEEDS_PREACTIVATION``), else an empty (0, k) placeholder.
    acts : ndarray of int64, shape (n_layers,)
    alphas : ndarray of float64, shape (n_layers,)
        Activation parameter of each layer (leaky-ReLU slope, ELU alpha; 0 where unused).
    step : int
        Optimizer steps taken so far (Adam's ``t``).
    """

    def __init__(
        self,
        layers: Sequence[Any],
        acts: Sequence[int],
        loss: int,
        optimizer: int,
        hyper: np.ndarray,
        batch_size: int,
        dtype: np.dtype,
        step: int = 0,
    ) -> None:
        if optimizer not in (OPT_SGD, OPT_MOMENTUM, OPT_ADAM):
            raise ValueError(f"unknown optimizer code {optimizer}")
        self.layers = list(layers)
        self.dtype = np.dtype(dtype)
        self.n_layers = len(self.layers)
        self.loss = int(loss)
        self.optimizer = int(optimizer)
        self.hyper = np.ascontiguousarray(hyper, dtype=np.float64)
        if self.hyper.shape != (N_HYPER,):
            raise ValueError(f"hyper must have shape ({N_HYPER},), got {self.hyper.shape}")
        self.batch_size = bs = int(batch_size)
        self.step = int(step)
        self.slots = make_slots(self.layers, acts, bs, self.dtype)
        self.acts = np.asarray([s.act for s in self.slots], dtype=np.int64)
        self.alphas = np.asarray([getattr(la, "act_alpha", 0.0) for la in self.layers], float)
        self.x_batch = np.zeros((bs, *self.layers[0].input_shape), dtype=self.dtype)
        n_out = int(np.prod(self.layers[-1].output_shape))
        if self.loss == LOSS_CROSS_ENTROPY:
            self.y_batch = np.zeros(bs, dtype=np.int64)
        else:
            self.y_batch = np.zeros((bs, n_out), dtype=self.dtype)
        self.outputs = [s.output for s in self.slots]
        self.grads = [s.delta for s in self.slots]
        self.preacts = [
            s.buffers.get("z", np.zeros((0, *s.output.shape[1:]), self.dtype)) for s in self.slots
        ]
        paired = all(len(s.params) == 2 for s in self.slots)

        def column(attr: str, j: int) -> list[np.ndarray]:
            return [getattr(s, attr)[j] for s in self.slots] if paired else []

        self.weights, self.biases = column("params", 0), column("params", 1)
        self.dW, self.db = column("grads", 0), column("grads", 1)
        self.state1_w, self.state1_b = column("state1", 0), column("state1", 1)
        self.state2_w, self.state2_b = column("state2", 0), column("state2", 1)

    # Convenience accessors for readable eager code -----------------------------------------
    @property
    def lr(self) -> float:
        return float(self.hyper[H_LR])

    @property
    def momentum(self) -> float:
        return float(self.hyper[H_MOMENTUM])

    @property
    def nesterov(self) -> bool:
        return bool(self.hyper[H_NESTEROV])

    @property
    def weight_decay(self) -> float:
        return float(self.hyper[H_WEIGHT_DECAY])

    @property
    def betas(self) -> tuple[float, float]:
        return float(self.hyper[H_BETA1]), float(self.hyper[H_BETA2])

    @property
    def eps(self) -> float:
        return float(self.hyper[H_EPS])

    def parameter_gradients(self) -> list[np.ndarray]:
        """Every parameter gradient of the last batch: dW0, db0, dW1, db1, ..."""
        return [g for s in self.slots for g in s.grads]

    def state_arrays(self) -> list[np.ndarray]:
        """Optimizer state in a fixed order (for save/load).

        By parameter position, then layer, first moment then second: for a dense stack
        ``[*state1_w, *state1_b, *state2_w, *state2_b]``, the order of format version 1 files.
        """
        width = max((len(s.params) for s in self.slots), default=0)
        order = []
        for attr in ("state1", "state2"):
            for j in range(width):
                order += [getattr(s, attr)[j] for s in self.slots if len(s.params) > j]
        return order

    def load_state(self, arrays: Sequence[np.ndarray]) -> None:
        """Copy optimizer state saved by :meth:`state_arrays` into this workspace."""
        own = self.state_arrays()
        if len(arrays) != len(own):
            raise ValueError(f"expected {len(own)} optimizer state arrays, got {len(arrays)}")
        for dst, src in zip(own, arrays, strict=True):
            if dst.shape != np.shape(src):
                raise ValueError(f"optimizer state shape {np.shape(src)} != {dst.shape}")
        for dst, src in zip(own, arrays, strict=True):
            dst[...] = src
