"""The per-batch training loop, written once over any backend's kernels and any layers.

The reference backend's ``train_epoch`` *is* this loop over its own kernels; the API runs it
over a compiled backend's kernels when it needs Python between batches (diagnostics, gradient
clipping) or when a layer kind has no fused epoch, and the parity tests compare every fused
``train_epoch`` with it. Layers are reached only through the layer protocol
(``forward_into`` / ``backward_into``), so a new layer kind needs no change here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType

import numpy as np

from .. import _codes as C
from .workspace import Workspace


def forward_backward(B: ModuleType, ws: Workspace, n: int) -> float:
    """Forward, loss and backward on the first ``n`` rows of ``ws.x_batch`` / ``ws.y_batch``.

    Leaves the gradients in every ``ws.slots[i].grads`` and returns the loss. When the loss is
    not finite it returns at once (no backward).
    """
    x = ws.x_batch[:n]
    for layer, slot in zip(ws.layers, ws.slots, strict=True):
        layer.forward_into(B, x, slot, n)
        x = slot.output[:n]
    loss_kernel = getattr(B, C.LOSS_KERNEL_NAMES[ws.loss])
    last = ws.slots[-1]
    loss = loss_kernel(x.reshape(n, -1), ws.y_batch[:n], last.delta[:n].reshape(n, -1))
    if not math.isfinite(loss):
        return loss
    for i in range(ws.n_layers - 1, -1, -1):
        inputs = ws.x_batch[:n] if i == 0 else ws.slots[i - 1].output[:n]
        grad_x = None if i == 0 else ws.slots[i - 1].delta[:n]
        ws.layers[i].backward_into(B, inputs, ws.slots[i], n, grad_x)
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
) -> int:
    """One epoch, batch by batch, with the semantics of ``train_epoch`` (see the contract).

    ``after_backward(batch_index, n_rows)``, when given, runs between the backward pass and the
    update of every batch (gradient clipping and diagnostics hook in there).
    """
    done = 0
    for start in range(0, order.shape[0], batch_size):
        idx = order[start : start + batch_size]
        m = idx.shape[0]
        np.take(X, idx, axis=0, out=ws.x_batch[:m])
        np.take(targets, idx, axis=0, out=ws.y_batch[:m])
        loss = forward_backward(B, ws, m)
        batch_losses[done] = loss
        done += 1
        if not math.isfinite(loss):
            break
        if after_backward is not None:
            after_backward(done - 1, m)
        apply_update(B, ws)
    return done
