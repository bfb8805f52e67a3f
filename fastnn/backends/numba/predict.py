"""The whole forward pass of a stack of dense layers in one compiled call (``predict_dense``).

A served model predicts one sample at a time: at batch 1 the work is a few microseconds, and
Python between the layers (one checked kernel call per layer, buffers per call) costs more than
the arithmetic. ``predict_dense`` runs every layer inside one Numba call over buffers that the
model keeps between calls; each layer still chooses loops or BLAS by the cost model of
:mod:`.dense` (loops for tiny batches, BLAS for big ones).
"""

from __future__ import annotations

import numpy as np

from .dense import blas_threads, dense_forward_kernel, use_loops
from .jit import kernel


@kernel
def predict_dense_kernel(x, weights, biases, acts, alphas, outs, zs, scratch, threads):
    """Layer by layer: outs[i][:n] = act_i(input @ weights[i] + biases[i]); zs[i] holds z
    where act_i needs it (else a (0, k) placeholder)."""
    n = x.shape[0]
    inp = x
    for i in range(len(weights)):
        out = outs[i][:n]
        z = zs[i][:n] if zs[i].shape[0] else zs[i]
        loops = use_loops(inp, weights[i].shape[1], threads)
        dense_forward_kernel(inp, weights[i], biases[i], acts[i], alphas[i], z, out, scratch, loops)
        inp = out


def predict_dense(
    x: np.ndarray,
    weights: tuple[np.ndarray, ...],
    biases: tuple[np.ndarray, ...],
    acts: np.ndarray,
    alphas: np.ndarray,
    outs: tuple[np.ndarray, ...],
    zs: tuple[np.ndarray, ...],
) -> None:
    """Trusted entry point (``fastnn.backends._frontend`` checked the arguments)."""
    widest = max(W.shape[0] for W in weights)
    scratch = np.empty(widest, np.int32)
    predict_dense_kernel(x, tuple(weights), tuple(biases), acts, alphas, tuple(outs), tuple(zs),
                         scratch, blas_threads())  # fmt: skip
