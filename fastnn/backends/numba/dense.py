"""Numba kernels of one dense layer: BLAS or sparse loops, with fused bias/activation passes.

Design:

A. Two ways to multiply, chosen per call by :func:`use_loops` from a cost model and the
   measured density of the input. Dense inputs go to BLAS: ``np.dot`` reaches scipy's
   OpenBLAS, and ``x.T`` / ``W.T`` are F-ordered views that Numba passes to gemm as
   transpose flags (no copy). Tiny batches and sparse inputs go to the loops of
   :mod:`.sparse`, which skip zero inputs. ``grad_x = delta @ W.T`` does not depend on
   the sparsity of ``x``: it uses BLAS except for tiny batches.
B. After the product, one pass per output row adds the bias and applies the activation
   (:mod:`.activations`), writing ``z`` only for the activations that need it. The backward
   pass turns ``grad`` into ``delta`` and sums ``db`` in one pass per row, then ``grad_x``
   (skipped for the first layer), then ``dW``.
C. ``grad_x`` comes before ``dW`` so that the loops may add ``-lr * x.T @ delta`` straight into
   ``W`` for plain SGD (``sgd``): the input gradient has already used the old ``W``.
D. Absent arrays (``z`` of an activation that keeps none, ``grad_x`` of the first layer) are
   (0, ...) views of the same type, never None: one compiled specialization serves both.
E. ``team`` is the exception: None, or the threads' scratch of the thread-split loops
   (:mod:`.sparse`, Design F). ``if team is None`` is decided when Numba compiles (branch
   pruning), so a one-thread process never compiles the ``parallel=True`` kernels nor starts
   Numba's threads; :func:`use_loops` then says per layer and batch how many threads the loops
   use (0 = BLAS), splitting only where the work pays for waking the team (TEAM_LAUNCH).
"""

from __future__ import annotations

import numpy as np

from ..._codes import NEEDS_PREACTIVATION
from .activations import act_backward_row, bias_act_row
from .blas import blas_threads
from .jit import kernel
from .sparse import (
    forward_loops,
    forward_team,
    input_grad_loops,
    scratch_size,
    weight_grad_loops,
    weight_grad_team,
)
from .team import loop_team

# Cost model of one forward + dW, in ns, fitted on the project machine (AMD EPYC, AVX-512; see
# the backend report). Loops cost per non-zero input and output column; BLAS pays a call,
# packing W (d*k) and the full n*d*k product, less efficiently for thin k. Only a big product
# counts BLAS's threads (0.8 of a thread each beyond the first): for MNIST batches of 128 the
# two are equal in wall time, and single-threaded loops leave the second core free (a busy
# machine makes multi-threaded OpenBLAS many times slower; measured 20x).
LOOPS_PER_NONZERO = 6.6
LOOPS_PER_NONZERO_COLUMN = 0.0525
BLAS_CALL = 2000.0
BLAS_PER_WEIGHT = 0.36
BLAS_PER_PRODUCT = 0.033
BLAS_FULL_WIDTH = 40  # below this many output columns a BLAS product costs more per element
BLAS_THREAD_GAIN = 0.8
BLAS_THREADED_PRODUCT = 5e7  # n*d*k from which threaded BLAS counts (~500 MNIST rows)
SMALL_BATCH = 2  # up to this many rows, loops also compute grad_x (BLAS: call overhead)
# Thread-split loops (sparse.py Design F), on Numba's workqueue layer: waking the team costs
# TEAM_LAUNCH per region (two per batch: forward and dW), and the threads' shares are uneven
# (TEAM_UNEVEN of the serial time is not split). Thin layers (ReLU -> 10 logits) are never split.
TEAM_LAUNCH = 60000.0
TEAM_UNEVEN = 0.1
TEAM_MIN_COLUMNS = 32


@kernel
def use_loops(x: np.ndarray, k: int, blas_threads: int, loop_threads: int = 1) -> int:
    """How to multiply the input ``x`` (n, d) of a layer with ``k`` outputs: 0 for BLAS
    (``blas_threads`` threads), else the number of threads for the sparse loops (1, or
    ``loop_threads`` when splitting the work pays: Design E)."""
    n, d = x.shape
    if n <= SMALL_BATCH:
        return 1
    nnz = 0
    for i in range(n):
        for j in range(d):
            nnz += x[i, j] != 0
    return use_loops_counted(n, d, k, nnz, blas_threads, loop_threads)


@kernel
def use_loops_counted(n, d, k, nnz, blas_threads, loop_threads):  # noqa: ANN001, ANN201
    """:func:`use_loops` for an input (n, d) whose non-zeros are already counted (``nnz``)."""
    if n <= SMALL_BATCH:
        return 1
    loops = nnz * (LOOPS_PER_NONZERO + LOOPS_PER_NONZERO_COLUMN * k)
    threads = 1
    if loop_threads > 1 and k >= TEAM_MIN_COLUMNS:
        split = loops * (TEAM_UNEVEN + (1.0 - TEAM_UNEVEN) / loop_threads) + 2 * TEAM_LAUNCH
        if split < loops:
            loops, threads = split, loop_threads
    thin = max(1.0, BLAS_FULL_WIDTH / max(k, 1))
    speedup = 1.0
    if n * d * k >= BLAS_THREADED_PRODUCT:
        speedup += BLAS_THREAD_GAIN * (max(blas_threads, 1) - 1)
    product = BLAS_PER_PRODUCT * thin * n * d * k / speedup
    return threads if loops < BLAS_CALL + BLAS_PER_WEIGHT * d * k + product else 0


@kernel
def dense_forward_kernel(x, W, b, act, alpha, z, out, scratch, loops, team=None):
    """out (n, k) = act(x (n, d) @ W (d, k) + b (k,)); z (n, k) = x @ W + b where the
    activation needs it, else a placeholder; ``loops`` (:func:`use_loops`) picks the sparse
    loops and their threads; scratch int32; team: see Design E."""
    if loops:
        if team is None:  # pruned at compile time: one-thread code never compiles the team's
            forward_loops(x, W, out, scratch)
        elif loops > 1:
            forward_team(x, W, out, team)
        else:
            forward_loops(x, W, out, scratch)
    else:
        np.dot(x, W, out)
    for i in range(out.shape[0]):
        bias_act_row(out, z, i, b, act, alpha)


@kernel
def dense_backward_kernel(
    x, W, z, a, grad, act, alpha, dW, db, grad_x, want_grad_x, loops, scratch, dirty, sgd, lr,
    team=None,
):  # fmt: skip
    """Backward of one layer (kernel contract), grad_x only if ``want_grad_x``.

    With ``sgd`` and ``loops``, ``W -= lr * x.T @ delta`` replaces writing ``dW`` and the
    function returns True (the layer is *stepped*, Design C); otherwise ``dW`` is written, the
    caller updates ``W`` and it returns False. ``dirty`` (d,): rows of ``dW`` that may be
    non-zero (:mod:`.sparse` Design C); scratch: int32.
    """
    for c in range(db.shape[0]):
        db[c] = 0
    for i in range(grad.shape[0]):
        act_backward_row(z, a, grad, i, act, alpha, db)
    if want_grad_x:
        # Dense work whatever the sparsity of x: loops only where BLAS call overhead dominates.
        if grad.shape[0] <= SMALL_BATCH:
            input_grad_loops(grad, W, grad_x)
        else:
            np.dot(grad, W.T, grad_x)
    if loops:
        if team is None:  # as in dense_forward_kernel
            weight_grad_loops(x, grad, W if sgd else dW, scratch, dirty, sgd, lr)
        elif loops > 1:
            weight_grad_team(x, grad, W if sgd else dW, dirty, team, sgd, lr)
        else:
            weight_grad_loops(x, grad, W if sgd else dW, scratch, dirty, sgd, lr)
        return sgd
    np.dot(x.T, grad, dW)
    dirty[:] = True
    return False


# Trusted entry points of the kernel contract (fastnn.backends._frontend checked the arguments).
def dense_forward(
    x: np.ndarray,
    W: np.ndarray,
    b: np.ndarray,
    act: int,
    alpha: float,
    z_out: np.ndarray | None,
    out: np.ndarray,
) -> None:
    """out (n, k) = act(x (n, d) @ W (d, k) + b (k,)); z_out (n, k) = x @ W + b or None."""
    z = z_out if act in NEEDS_PREACTIVATION else out[:0]  # Design D
    scratch = np.empty(x.shape[1], np.int32)
    with loop_team(x.shape[1]) as team:
        threads = 1 if team is None else team.shape[0]
        loops = use_loops(x, W.shape[1], blas_threads(), threads)
        dense_forward_kernel(x, W, b, act, alpha, z, out, scratch, loops, team)


def dense_backward(
    x: np.ndarray,
    W: np.ndarray,
    z: np.ndarray | None,
    a: np.ndarray,
    grad: np.ndarray,
    act: int,
    alpha: float,
    dW_out: np.ndarray,
    db_out: np.ndarray,
    grad_x_out: np.ndarray | None,
) -> None:
    """Backward of one dense layer (kernel contract); grad (n, k) becomes dL/dz."""
    d = x.shape[1]
    want_grad_x = grad_x_out is not None
    grad_x = grad_x_out if want_grad_x else x[:0]  # Design D
    preact = z if act in NEEDS_PREACTIVATION else a[:0]
    dirty = np.ones(d, np.bool_)  # dW_out may hold anything
    scratch = np.empty(scratch_size(d), np.int32)
    with loop_team(scratch_size(d)) as team:
        threads = 1 if team is None else team.shape[0]
        loops = use_loops(x, W.shape[1], blas_threads(), threads)
        dense_backward_kernel(
            x, W, preact, a, grad, act, alpha, dW_out, db_out, grad_x, want_grad_x,
            loops, scratch, dirty, False, 0.0, team,
        )  # fmt: skip
