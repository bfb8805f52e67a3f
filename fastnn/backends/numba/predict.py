"""The whole forward pass of a stack of dense layers in one compiled call (``predict_dense``).

Design:

A. A served model predicts one sample at a time: at batch 1 the work is a few microseconds, and
   Python between the layers (one checked kernel call per layer, buffers per call) costs more
   than the arithmetic. ``predict_dense_kernel`` runs every layer inside one Numba call over
   buffers that the model keeps between calls; each layer still chooses loops or BLAS by the
   cost model of :mod:`.dense` (loops for tiny batches and sparse inputs, BLAS for dense ones).
B. :func:`prepare_predict_dense` builds everything a call needs but ``x`` once (the tuples, the
   int32 scratch of the loops), so a call is one dispatch into compiled code.
C. Large batches (``TEAM_ROWS`` rows and more) are cut into one contiguous block of rows per
   thread of :mod:`.team` for the first layer, each block one compiled call on its own
   scratch and output rows (the cost model told that it runs on one thread); the later layers
   then run in one call from the caller's thread. Rows are independent in a forward pass, so
   the outputs are the same as in one call. Measured on MNIST digits at batch 1024
   (784-128-10, 2 threads): one call with threaded BLAS ~3.3 ms; two blocks of zero-skipping
   loops on the team ~1.0 ms. The later layers (a thin 128 -> 10 product: BLAS) stay out of
   the blocks because OpenBLAS, called from both team threads with its own two threads, woke
   its workers onto the cores the team held: the blocks then took 4 ms instead of 1.1, the
   pattern of the first calls after an idle moment (``fastnn bench --predict``).
D. The kernel checks its input itself: the pass that counts the non-zeros of ``x`` for the
   cost model also counts NaN and infinite values, and a call that finds any computes nothing
   and returns their number. The caller then need not read ``x`` once more to check it before
   the call: at batch 1024 that separate check cost 0.11 ms of a 1.2 ms prediction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .blas import blas_threads
from .dense import dense_forward_kernel, use_loops, use_loops_counted
from .jit import kernel, layer_tuple
from .team import TEAM

#: Rows from which a batch is split over the team (Design C).
TEAM_ROWS = 256


@kernel
def count_input(x):  # noqa: ANN001, ANN201
    """(non-zeros, NaN or infinite values) of ``x`` (n, d), in one pass (Design D)."""
    nnz = 0
    bad = 0
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            v = x[i, j]
            nnz += v != 0
            bad += not abs(v) < np.inf  # true for NaN too (no ``nnan`` in the fastmath flags)
    return nnz, bad


@kernel
def predict_dense_kernel(x, weights, biases, acts, alphas, outs, zs, scratch, threads, i0, i1):
    """Layers i0..i1-1: outs[i][:n] = act_i(input @ weights[i] + biases[i]), the input of
    layer i0 being ``x`` when i0 is 0, else ``outs[i0 - 1][:n]``; zs[i] holds z where act_i
    needs it (else a (0, k) placeholder). From layer 0 it returns the number of NaN or
    infinite values of ``x`` and, when there are any, computes nothing (Design D)."""
    n, d = x.shape
    nnz = 0
    if i0 == 0:
        nnz, bad = count_input(x)
        if bad:
            return bad
    inp = x if i0 == 0 else outs[i0 - 1][:n]
    for i in range(i0, i1):
        out = outs[i][:n]
        z = zs[i][:n] if zs[i].shape[0] else zs[i]
        k = weights[i].shape[1]
        if i == 0:  # the input's count is already made: one pass over x, not two
            loops = use_loops_counted(n, d, k, nnz, threads, 1)
        else:
            loops = use_loops(inp, k, threads)
        dense_forward_kernel(inp, weights[i], biases[i], acts[i], alphas[i], z, out, scratch, loops)
        inp = out
    return 0


def _first_layer_block(x, args, r0, r1, scratch, bad, t) -> None:  # noqa: ANN001
    weights, biases, acts, alphas, outs, zs = args
    outs_b = tuple(o[r0:r1] for o in outs)
    zs_b = tuple(z[r0:r1] if z.shape[0] else z for z in zs)
    bad[t] = predict_dense_kernel(x[r0:r1], weights, biases, acts, alphas, outs_b, zs_b,
                                  scratch, 1, 0, 1)  # fmt: skip


def prepare_predict_dense(
    weights: Sequence[np.ndarray],
    biases: Sequence[np.ndarray],
    acts: np.ndarray,
    alphas: np.ndarray,
    outs: Sequence[np.ndarray],
    zs: Sequence[np.ndarray],
) -> Callable[[np.ndarray], int]:
    """Trusted entry point (``fastnn.backends._frontend`` checked the arguments): a function
    ``run(x) -> int`` writing ``outs[i][:n]`` for an input ``x`` (n, d0) (Design B, C), and
    returning the number of NaN or infinite values in ``x`` (Design D: 0, or nothing written)."""
    # Padded tuples: one compiled predict for (almost) every depth (jit.py, Design I).
    args = (layer_tuple(weights), layer_tuple(biases), acts, alphas, layer_tuple(outs),
            layer_tuple(zs))  # fmt: skip
    layers = len(weights)
    widest = max(W.shape[0] for W in weights)
    scratches = [np.empty(widest, np.int32)]

    def run(x: np.ndarray) -> int:
        n, threads = x.shape[0], blas_threads()
        if n < TEAM_ROWS or threads < 2:
            return int(predict_dense_kernel(x, *args, scratches[0], threads, 0, layers))
        while len(scratches) < threads:
            scratches.append(np.empty(widest, np.int32))
        bounds = [n * t // threads for t in range(threads + 1)]
        bad = np.zeros(threads, np.int64)
        parts = [(x, args, bounds[t], bounds[t + 1], scratches[t], bad, t) for t in range(threads)]
        TEAM.run(_first_layer_block, parts)
        if bad.any() or layers == 1:
            return int(bad.sum())
        return int(predict_dense_kernel(x, *args, scratches[0], threads, 1, layers))

    return run
