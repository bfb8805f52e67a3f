"""The per-batch training loop, written once over any backend's kernels and any layers.

The reference backend's ``train_epoch`` *is* this loop over its own kernels; the API runs it
over a compiled backend's kernels when it needs Python between batches (diagnostics, gradient
clipping) or when a layer kind has no fused epoch, and the parity tests compare every fused
``train_epoch`` with it. Layers are reached only through the layer protocol
(``forward_into`` / ``backward_into``, and ``fuses_with`` for a pair that runs as one call),
so a new layer kind needs no change here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from .. import _codes as C
from .workspace import Workspace


def fused_pairs(B: ModuleType, layers: Sequence[Any]) -> tuple[bool, ...]:
    """``fused[i]``: layer i and layer i + 1 run as one call on backend ``B`` (a pair of
    ``B.FUSED_PAIRS`` that ``Layer.fuses_with`` accepts), read left to right so that a layer
    belongs to at most one pair."""
    fused = [False] * len(layers)
    i = 0
    while i < len(layers) - 1:
        a, b = layers[i], layers[i + 1]
        if (a.kind, b.kind) in B.FUSED_PAIRS and a.fuses_with(b):
            fused[i] = True
            i += 1
        i += 1
    return tuple(fused)


def forward(
    B: ModuleType, layers: Sequence[Any], slots: Sequence[Any], x: np.ndarray, n: int,
    fused: Sequence[bool],
) -> np.ndarray:  # fmt: skip
    """The first ``n`` rows of ``x`` through every layer; returns the last slot's output.
    A fused pair writes only its second layer's output."""
    i = 0
    while i < len(layers):
        if fused[i]:
            layers[i].forward_fused_into(B, x, slots[i], layers[i + 1], slots[i + 1], n)
            i += 1
        else:
            layers[i].forward_into(B, x, slots[i], n)
        x = slots[i].output[:n]
        i += 1
    return x


def forward_backward(B: ModuleType, ws: Workspace, n: int, fuse: bool = True) -> float:
    """Forward, loss and backward on the first ``n`` rows of ``ws.x_batch`` / ``ws.y_batch``.

    Leaves the gradients in every ``ws.slots[i].grads`` and returns the loss. When the loss is
    not finite it returns at once (no backward). ``fuse=False`` runs every layer on its own,
    so that every ``slot.output`` holds the layer's output afterwards (the diagnostics read
    them); the results are the same.
    """
    layers, slots = ws.layers, ws.slots
    fused = fused_pairs(B, layers) if fuse else (False,) * ws.n_layers
    x = forward(B, layers, slots, ws.x_batch[:n], n, fused)
    loss_kernel = getattr(B, C.LOSS_KERNEL_NAMES[ws.loss])
    loss = loss_kernel(x.reshape(n, -1), ws.y_batch[:n], slots[-1].delta[:n].reshape(n, -1))
    if not math.isfinite(loss):
        return loss
    i = ws.n_layers - 1
    while i >= 0:
        j = i - 1 if i and fused[i - 1] else i  # the pair (j, i) as one call
        inputs = ws.x_batch[:n] if j == 0 else slots[j - 1].output[:n]
        grad_x = None if j == 0 else slots[j - 1].delta[:n]
        if j < i:
            layers[j].backward_fused_into(B, inputs, slots[j], layers[i], slots[i], n, grad_x)
        else:
            layers[i].backward_into(B, inputs, slots[i], n, grad_x)
        i = j - 1
    return loss


def apply_update(B: ModuleType, ws: Workspace) -> None:
    """One optimizer step on every parameter, in the order W0, b0, W1, b1, ..."""
    ws.step += 1
    lr, mu, nesterov, wd = ws.lr, ws.momentum, ws.nesterov, ws.weight_decay
    b1, b2 = ws.betas
    for slot in ws.slots:
        for param, grad, s1, s2 in zip(
            slot.params, slot.grads, slot.state1, slot.state2, strict=True
        ):
            p, g = param.reshape(-1), grad.reshape(-1)
            if ws.optimizer == C.OPT_SGD:
                B.sgd_update(p, g, lr, wd)
            elif ws.optimizer == C.OPT_MOMENTUM:
                B.momentum_update(p, g, s1.reshape(-1), lr, mu, nesterov, wd)
            else:
                B.adam_update(p, g, s1.reshape(-1), s2.reshape(-1), lr, b1, b2, ws.eps, wd, ws.step)


def eager_epoch(
    B: ModuleType,
    ws: Workspace,
    X: np.ndarray,
    targets: np.ndarray,
    order: np.ndarray,
    batch_size: int,
    batch_losses: np.ndarray,
    after_backward: Callable[[int, int], None] | None = None,
    fuse: bool = True,
) -> int:
    """One epoch, batch by batch, with the semantics of ``train_epoch`` (see the contract).

    ``after_backward(batch_index, n_rows)``, when given, runs between the backward pass and the
    update of every batch (per-iteration schedules, gradient clipping and diagnostics hook in
    there). ``fuse=False`` when it reads the layers' outputs (see :func:`forward_backward`).
    """
    done = 0
    for start in range(0, order.shape[0], batch_size):
        idx = order[start : start + batch_size]
        m = idx.shape[0]
        np.take(X, idx, axis=0, out=ws.x_batch[:m])
        np.take(targets, idx, axis=0, out=ws.y_batch[:m])
        loss = forward_backward(B, ws, m, fuse)
        batch_losses[done] = loss
        done += 1
        if not math.isfinite(loss):
            break
        if after_backward is not None:
            after_backward(done - 1, m)
        apply_update(B, ws)
    return done
