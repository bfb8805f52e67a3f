"""The buffers of one ``fit``: parameters, optimizer state and per-batch scratch space.

The API builds one :class:`Workspace` per ``fit`` (every array allocated once) and hands it to a
backend's ``train_epoch``; the eager per-batch loop uses the very same buffers, which is what
makes "``train_epoch`` equals the per-batch kernels" a testable statement.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._codes import (
    H_BETA1,
    H_BETA2,
    H_EPS,
    H_LR,
    H_MOMENTUM,
    H_NESTEROV,
    H_WEIGHT_DECAY,
    LOSS_CROSS_ENTROPY,
    N_HYPER,
    OPT_ADAM,
    OPT_MOMENTUM,
    OPT_SGD,
)


class Workspace:
    """Parameters, optimizer state and buffers for training one network.

    Parameters
    ----------
    weights, biases : list of ndarray
        The model's own parameter arrays, ``W_l`` of shape (d_l, k_l) and ``b_l`` of shape
        (k_l,), C-contiguous, one dtype. They are updated in place (not copied).
    acts : sequence of int
        Activation code of each layer *as trained*: an output softmax or sigmoid that the loss
        fuses is given here as identity.
    slopes : sequence of float
        Leaky-ReLU slope of each layer.
    loss : int
        Loss code (``fastnn._codes.LOSS_*``).
    optimizer : int
        Optimizer code (``fastnn._codes.OPT_*``).
    hyper : ndarray of float64, shape (N_HYPER,)
        lr, momentum, nesterov, weight_decay, beta1, beta2, eps (see ``fastnn._codes``).
    batch_size : int
        Largest batch; the buffers have this many rows and a ragged batch uses the first rows.
    n_outputs : int
        Width of the targets: k of the last layer (class indices use a (batch,) buffer).
    step : int
        Optimizer steps already taken (when training resumes).

    Attributes
    ----------
    state1_w, state1_b : list of ndarray
        Momentum velocity, or Adam's first moment ``m``; shapes of the parameters.
    state2_w, state2_b : list of ndarray
        Adam's second moment ``v``; shapes of the parameters.
    x_batch : ndarray, shape (batch_size, d_0)
    y_batch : ndarray, shape (batch_size,) int64 or (batch_size, n_outputs) float
    outputs : list of ndarray, shapes (batch_size, k_l)
        Activation of each layer.
    grads : list of ndarray, shapes (batch_size, k_l)
        dL/d(activation) of each layer; overwritten with dL/dz by ``dense_backward``.
    dW, db : list of ndarray
        Parameter gradients of the last batch.
    step : int
        Optimizer steps taken so far (Adam's ``t``).
    """

    def __init__(
        self,
        weights: Sequence[np.ndarray],
        biases: Sequence[np.ndarray],
        acts: Sequence[int],
        slopes: Sequence[float],
        loss: int,
        optimizer: int,
        hyper: np.ndarray,
        batch_size: int,
        step: int = 0,
    ) -> None:
        dtype = weights[0].dtype
        self.dtype = dtype
        self.weights = list(weights)
        self.biases = list(biases)
        self.n_layers = len(self.weights)
        self.acts = np.asarray(acts, dtype=np.int64)
        self.slopes = np.asarray(slopes, dtype=np.float64)
        self.loss = int(loss)
        if optimizer not in (OPT_SGD, OPT_MOMENTUM, OPT_ADAM):
            raise ValueError(f"unknown optimizer code {optimizer}")
        self.optimizer = int(optimizer)
        self.hyper = np.ascontiguousarray(hyper, dtype=np.float64)
        if self.hyper.shape != (N_HYPER,):
            raise ValueError(f"hyper must have shape ({N_HYPER},), got {self.hyper.shape}")
        self.batch_size = int(batch_size)
        self.step = int(step)
        bs = self.batch_size
        self.state1_w = [np.zeros_like(w) for w in self.weights]
        self.state1_b = [np.zeros_like(b) for b in self.biases]
        self.state2_w = [np.zeros_like(w) for w in self.weights]
        self.state2_b = [np.zeros_like(b) for b in self.biases]
        self.x_batch = np.zeros((bs, self.weights[0].shape[0]), dtype=dtype)
        n_out = self.weights[-1].shape[1]
        if self.loss == LOSS_CROSS_ENTROPY:
            self.y_batch = np.zeros(bs, dtype=np.int64)
        else:
            self.y_batch = np.zeros((bs, n_out), dtype=dtype)
        self.outputs = [np.zeros((bs, w.shape[1]), dtype=dtype) for w in self.weights]
        self.grads = [np.zeros((bs, w.shape[1]), dtype=dtype) for w in self.weights]
        self.dW = [np.zeros_like(w) for w in self.weights]
        self.db = [np.zeros_like(b) for b in self.biases]

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

    def state_arrays(self) -> list[np.ndarray]:
        """Optimizer state in a fixed order (for save/load)."""
        return [*self.state1_w, *self.state1_b, *self.state2_w, *self.state2_b]

    def load_state(self, arrays: Sequence[np.ndarray]) -> None:
        """Copy optimizer state saved by :meth:`state_arrays` into this workspace."""
        own = self.state_arrays()
        if len(arrays) != len(own):
            raise ValueError(f"expected {len(own)} optimizer state arrays, got {len(arrays)}")
        for dst, src in zip(own, arrays, strict=True):
            if dst.shape != np.shape(src):
                raise ValueError(f"optimizer state shape {np.shape(src)} != {dst.shape}")
            dst[...] = src
