"""The compiled epoch of the Numba backend: every batch of an epoch with no Python in between.

Design:

A. Parameters and buffers arrive as tuples of arrays (one tuple per kind, built once per call by
   :func:`train_epoch`), padded to ``jit.TUPLE_LAYERS`` entries except for two-layer nets
   (:mod:`.jit`, Design I), so the epoch compiles once per dtype and target kind for all
   other depths up to that, and once for two layers; the layer loop indexes the tuples at run
   time, up to the depth ``acts.shape[0]``. The
   pre-activation buffers (``ws.preacts``) are (bs, k) for gelu, gelu_tanh and silu and (0, k)
   placeholders of the same type otherwise, so activations never change the specialization.
B. Scratch space for the sparse loops (the int32 ``scratch`` array, the ``dirty`` rows of each
   ``dW``) is allocated once per epoch, sized for the widest layer.
C. Each layer decides loops-or-BLAS once per batch in the forward pass (from the density of its
   input) and the backward pass reuses that decision.
D. Plain SGD without weight decay on a loops layer steps ``W`` inside the backward pass, on
   the rows whose inputs are not all zero (~20% of the first layer at batch 1 on MNIST; the
   other rows have a zero gradient), without writing ``dW``: the layer is *stepped*. Every
   batch runs the same arithmetic, so cutting an epoch into several calls gives bit-identical
   weights. After the last batch, ``dW`` of stepped layers is computed once from the buffers,
   which still hold that batch, so the workspace ends with the last gradient as the contract
   says (not after a non-finite loss: those buffers then hold the failed batch). Any other
   optimizer changes every entry (decay, momentum, moments) and updates them all after the
   backward pass.
E. The epoch is compiled per (loss, optimizer) pair, on first use: :func:`train_epoch_kernel`
   binds ``epoch_loss`` and ``epoch_update`` of the body (:func:`_train_epoch`) to the one loss
   and step kernel the codes select (:mod:`.jit` Design G), so a fit compiles one loss and one
   optimizer, not all five and three a run-time dispatch would (cold start measured in
   ``benchmarks/README.md``, "Numba cold start"). Each pair is cached on disk on its own.
F. ``team`` (:mod:`.dense`, Design E) is held by :func:`train_epoch` for the whole epoch
   (:mod:`.team`, Designs E and F); each layer's :func:`use_loops` decision carries the
   number of threads of its loops, which the backward pass reuses.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from ..._codes import H_LR, H_WEIGHT_DECAY, OPT_SGD
from ..workspace import Workspace
from .blas import blas_threads
from .dense import dense_backward_kernel, dense_forward_kernel, use_loops
from .jit import UNPADDED_LAYERS, kernel, layer_tuple, specialize
from .losses import loss_kernel
from .optim import update_kernel
from .sparse import scratch_size, weight_grad_loops
from .team import loop_team, trial


@kernel
def layers_of(weights, per_layer):
    """The depth of a net whose tuples may be padded (:mod:`.jit`, Design I): the length of
    an unpadded tuple (a compile-time constant, so the layer loops compile to straight code),
    else that of a per-layer array."""
    if len(weights) == UNPADDED_LAYERS:
        return len(weights)
    return per_layer.shape[0]


@kernel
def _gather(X, targets, order, start, m, x_batch, y_batch):
    """x_batch[:m] = X[order[start:start+m]], likewise the (2-D) targets."""
    d = X.shape[1]
    kt = targets.shape[1]
    for r in range(m):
        src = order[start + r]
        for j in range(d):
            x_batch[r, j] = X[src, j]
        for c in range(kt):
            y_batch[r, c] = targets[src, c]


@kernel
def _backward_all(
    weights, outputs, grads, preacts, dW, db, x, acts, alphas, loops, scratch, dirty, sgd, lr, m,
    stepped, team,
):  # fmt: skip
    """dense_backward from the last layer to the first (no input gradient for the first);
    stepped[i] tells whether layer i's W already took its plain-SGD step."""
    for i in range(layers_of(weights, acts) - 1, -1, -1):
        inp = x if i == 0 else outputs[i - 1][:m]
        grad_x = grads[i - 1][:m] if i > 0 else grads[0][:m]  # unused placeholder for layer 0
        stepped[i] = dense_backward_kernel(
            inp, weights[i], preacts[i][:m], outputs[i][:m], grads[i][:m], acts[i], alphas[i],
            dW[i], db[i], grad_x, i > 0, loops[i], scratch, dirty[i, : inp.shape[1]], sgd, lr,
            team,
        )  # fmt: skip


@kernel
def _last_weight_grads(weights, outputs, grads, dW, x, stepped, scratch, dirty, m):
    """dW of the stepped layers (Design D), from the last batch's buffers."""
    for i in range(layers_of(weights, stepped)):
        if stepped[i]:
            inp = x if i == 0 else outputs[i - 1][:m]
            d = inp.shape[1]
            # np.bool_: a literal False would compile weight_grad_loops a second time.
            no_step = np.bool_(False)
            weight_grad_loops(inp, grads[i][:m], dW[i], scratch, dirty[i, :d], no_step, 0.0)


def _unbound(*args: object) -> float:
    raise RuntimeError("epoch_loss/epoch_update are bound by train_epoch_kernel (Design E)")


epoch_loss = epoch_update = _unbound  # the names _train_epoch calls, bound per compiled copy


def _train_epoch(
    weights, biases, state1_w, state1_b, state2_w, state2_b,
    outputs, grads, preacts, dW, db, x_batch, y_batch,
    acts, alphas, loss, optimizer, hyper, step,
    X, targets, order, batch_size, batch_losses, blas_threads, team,
):  # fmt: skip
    """One epoch (see the kernel contract); targets and y_batch are 2-D. Returns (done, step).

    Compiled only through :func:`train_epoch_kernel`; ``loss`` is the code ``epoch_loss`` was
    bound for.
    team: None, or the threads' scratch of the thread-split loops (Design F)."""
    n_rows = order.shape[0]
    n_layers = layers_of(weights, acts)
    widest = 0
    for i in range(n_layers):
        widest = max(widest, weights[i].shape[0])
    threads = 1
    if team is not None:  # pruned at compile time (Design F)
        threads = team.shape[0]
    scratch = np.empty(scratch_size(widest), np.int32)
    dirty = np.ones((n_layers, widest), np.bool_)  # dW may hold anything on entry
    loops = np.zeros(n_layers, np.int64)  # 0: BLAS, else the loops' threads
    stepped = np.zeros(n_layers, np.bool_)
    lr = hyper[H_LR]
    plain_sgd = optimizer == OPT_SGD and hyper[H_WEIGHT_DECAY] == 0.0
    done = 0
    for start in range(0, n_rows, batch_size):
        m = min(batch_size, n_rows - start)
        _gather(X, targets, order, start, m, x_batch, y_batch)
        x = x_batch[:m]
        for i in range(n_layers):
            inp = x if i == 0 else outputs[i - 1][:m]
            loops[i] = use_loops(inp, weights[i].shape[1], blas_threads, threads)
            dense_forward_kernel(
                inp, weights[i], biases[i], acts[i], alphas[i], preacts[i][:m], outputs[i][:m],
                scratch, loops[i], team,
            )  # fmt: skip
        last = n_layers - 1
        value = epoch_loss(outputs[last][:m], y_batch[:m], grads[last][:m])
        batch_losses[done] = value
        done += 1
        if not math.isfinite(value):
            break
        _backward_all(
            weights, outputs, grads, preacts, dW, db, x, acts, alphas, loops, scratch, dirty,
            plain_sgd, lr, m, stepped, team,
        )  # fmt: skip
        step += 1
        for i in range(n_layers):
            if not stepped[i]:
                epoch_update(
                    weights[i].reshape(-1), dW[i].reshape(-1),
                    state1_w[i].reshape(-1), state2_w[i].reshape(-1), hyper, step,
                )  # fmt: skip
            epoch_update(biases[i], db[i], state1_b[i], state2_b[i], hyper, step)
    if done and math.isfinite(batch_losses[done - 1]):
        m = n_rows - (done - 1) * batch_size
        _last_weight_grads(weights, outputs, grads, dW, x_batch[:m], stepped, scratch, dirty, m)
    return done, step


_compiled: dict[tuple[int, int], Callable] = {}


def train_epoch_kernel(loss: int, optimizer: int) -> Callable:
    """The compiled epoch (:func:`_train_epoch`) for one loss and optimizer code (Design E).

    Raises ValueError for an unknown code.
    """
    key = (int(loss), int(optimizer))
    if key not in _compiled:
        _compiled[key] = specialize(
            _train_epoch, epoch_loss=loss_kernel(key[0]), epoch_update=update_kernel(key[1])
        )
    return _compiled[key]


def train_epoch(
    ws: Workspace,
    X: np.ndarray,
    targets: np.ndarray,
    order: np.ndarray,
    batch_size: int,
    batch_losses: np.ndarray,
) -> int:
    """Trusted entry point of the contract's ``train_epoch``; advances ``ws.step``.

    Plain SGD on a layer whose input is sparse or tiny steps ``W`` without writing ``dW``
    (Design D); ``ws.dW`` is then computed once for the last batch. When the epoch stops at a
    non-finite loss, ``ws.dW`` of such layers is not the previous batch's.
    """
    n = X.shape[0]
    kt = 1 if targets.ndim == 1 else targets.shape[1]
    y_batch = ws.y_batch.reshape(ws.batch_size, kt)
    widest = max(W.shape[0] for W in ws.weights)
    shape = trial((n, batch_size, tuple(W.shape for W in ws.weights)))
    start = time.perf_counter()
    with loop_team(scratch_size(widest), shape.wanted()) as team:  # team.py, Designs E and F
        t = layer_tuple  # one compiled epoch for (almost) every depth (jit.py, Design I)
        done, step = train_epoch_kernel(ws.loss, ws.optimizer)(
            t(ws.weights), t(ws.biases), t(ws.state1_w), t(ws.state1_b), t(ws.state2_w),
            t(ws.state2_b), t(ws.outputs), t(ws.grads), t(ws.preacts), t(ws.dW), t(ws.db),
            ws.x_batch, y_batch,
            ws.acts, ws.alphas, int(ws.loss), int(ws.optimizer), ws.hyper, int(ws.step),
            X, targets.reshape(n, kt), order, batch_size, batch_losses, blas_threads(), team,
        )  # fmt: skip
        if team is not None:
            shape.record(team.shape[0] > 1, time.perf_counter() - start)
    ws.step = int(step)
    return int(done)
