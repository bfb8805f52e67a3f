"""Numba kernels of one dense layer: fused bias + activation, forward and backward.

Design:

A. Two ways to multiply, chosen per call by :func:`use_loops`. Dense inputs go to BLAS
   (``np.dot`` reaches scipy's OpenBLAS; ``x.T`` and ``W.T`` are F-ordered views that Numba
   hands to gemm as transpose flags, so no copy is made). Tiny batches and sparse inputs (MNIST
   pixels are ~81% zeros, ReLU outputs ~50%) go to hand-written loops over the non-zero inputs
   only: there BLAS call overhead or multiplications by zero dominate.
B. Each output row gets its bias and activation right after it is computed, while it is hot
   in cache (one pass, :func:`bias_act_row`). Every activation keeps its forward next to its
   derivative (:func:`act_backward_colsum`), which is written from the stored output ``a``.
C. The backward pass turns ``grad`` into ``delta = dL/dz`` and sums ``db`` in the same pass,
   then computes ``dW`` and ``grad_x`` (skipped for the first layer).
D. The sparse ``dW = x.T @ delta`` is built from a per-chunk column index of the non-zeros
   (``CHUNK_ROWS`` rows at a time) so each row of ``dW`` is written once per chunk. A
   ``dirty`` flag per row of ``dW`` says whether it may hold non-zeros: rows that no input of
   the batch touches are zeroed only if dirty, so batch-1 SGD does not rewrite all of ``dW``
   (and the epoch can skip their zero update).
"""

from __future__ import annotations

import numpy as np

from .._codes import IDENTITY, LEAKY_RELU, RELU, SIGMOID, SOFTMAX, TANH
from ._jit import kernel

# Measured on the 2-core project machine (784-128-10 MLP, float32); see the backend report.
SMALL_BATCH = 4  # up to this many rows, loops beat BLAS's call overhead whatever the density
SPARSE_FRACTION = 0.35  # loops win below this fraction of non-zero inputs
CHUNK_ROWS = 64  # rows per column index in the sparse dW


@kernel
def use_loops(x: np.ndarray) -> bool:
    """True when the hand-written loops beat BLAS for input ``x`` (n, d)."""
    n, d = x.shape
    if n <= SMALL_BATCH:
        return True
    nnz = 0
    for i in range(n):
        for j in range(d):
            nnz += x[i, j] != 0
    return nnz <= SPARSE_FRACTION * n * d


# Activations: forward and derivative side by side ----------------------------------------------
@kernel
def bias_act_row(row: np.ndarray, b: np.ndarray, act: int, slope: float) -> None:
    """row = act(row + b) in place, for one output row (k,)."""
    k = row.shape[0]
    zero = row.dtype.type(0.0)
    if act == RELU:
        for c in range(k):
            z = row[c] + b[c]
            row[c] = zero if z < zero else z  # NaN passes through, as np.maximum does
    elif act == IDENTITY:
        for c in range(k):
            row[c] += b[c]
    elif act == LEAKY_RELU:
        s = row.dtype.type(slope)
        for c in range(k):
            z = row[c] + b[c]
            row[c] = z if z > zero else s * z
    elif act == SIGMOID:
        # The tanh form cannot overflow, unlike 1 / (1 + exp(-z)).
        half = row.dtype.type(0.5)
        for c in range(k):
            row[c] = half * (np.tanh(half * (row[c] + b[c])) + 1)
    elif act == TANH:
        for c in range(k):
            row[c] = np.tanh(row[c] + b[c])
    elif act == SOFTMAX and k > 0:
        top = row[0] + b[0]
        for c in range(k):
            row[c] += b[c]
            top = max(top, row[c])
        total = zero
        for c in range(k):
            row[c] = np.exp(row[c] - top)
            total += row[c]
        for c in range(k):
            row[c] /= total


@kernel
def act_backward_colsum(
    a: np.ndarray, grad: np.ndarray, act: int, slope: float, db: np.ndarray
) -> None:
    """grad (n, k) = dL/da -> dL/dz in place, written from a = act(z); db (k,) = column sums."""
    n, k = grad.shape
    zero = grad.dtype.type(0.0)
    one = grad.dtype.type(1.0)
    s = grad.dtype.type(slope)
    for c in range(k):
        db[c] = zero
    for i in range(n):
        g = grad[i]
        ai = a[i]
        if act == RELU:
            for c in range(k):
                g[c] *= one if ai[c] > zero else zero
        elif act == LEAKY_RELU:
            for c in range(k):
                g[c] *= one if ai[c] > zero else s
        elif act == SIGMOID:
            for c in range(k):
                g[c] *= ai[c] * (one - ai[c])
        elif act == TANH:
            for c in range(k):
                g[c] *= one - ai[c] * ai[c]
        elif act == SOFTMAX:
            dot = zero
            for c in range(k):
                dot += g[c] * ai[c]
            for c in range(k):
                g[c] = (g[c] - dot) * ai[c]
        for c in range(k):
            db[c] += g[c]


# Forward -------------------------------------------------------------------------------------
@kernel
def _forward_loops(x, W, b, act, slope, out, idx):
    n, d = x.shape
    k = W.shape[1]
    for i in range(n):
        xi = x[i]
        nnz = 0
        for j in range(d):  # branch-free list of the non-zero inputs of this row
            idx[nnz] = j
            nnz += xi[j] != 0
        row = out[i]
        for c in range(k):
            row[c] = 0.0
        t = 0
        # Four input rows of W per pass over the output row: a quarter of the loads/stores.
        while t + 4 <= nnz:
            j0, j1, j2, j3 = idx[t], idx[t + 1], idx[t + 2], idx[t + 3]
            v0, v1, v2, v3 = xi[j0], xi[j1], xi[j2], xi[j3]
            w0, w1, w2, w3 = W[j0], W[j1], W[j2], W[j3]
            for c in range(k):
                row[c] += v0 * w0[c] + v1 * w1[c] + v2 * w2[c] + v3 * w3[c]
            t += 4
        while t < nnz:
            v = xi[idx[t]]
            w = W[idx[t]]
            for c in range(k):
                row[c] += v * w[c]
            t += 1
        bias_act_row(row, b, act, slope)


@kernel
def dense_forward_into(x, W, b, act, slope, out, idx, loops):
    """out (n, k) = act(x @ W + b); ``loops`` picks the hand loops over BLAS; idx (d,) scratch."""
    if loops:
        _forward_loops(x, W, b, act, slope, out, idx)
        return
    np.dot(x, W, out)
    for i in range(out.shape[0]):
        bias_act_row(out[i], b, act, slope)


# Backward ------------------------------------------------------------------------------------
@kernel
def _column_index(x, r0, r1, ptr, rows):
    """Non-zeros of x[r0:r1] by column: rows[ptr[j]:ptr[j+1]] are the rows where x[., j] != 0."""
    d = x.shape[1]
    for j in range(d + 1):
        ptr[j] = 0
    for i in range(r0, r1):
        xi = x[i]
        for j in range(d):
            ptr[j + 1] += xi[j] != 0
    for j in range(d):
        ptr[j + 1] += ptr[j]
    # Fill with ptr[j] as the write cursor of column j, then shift ptr back by one column.
    for i in range(r0, r1):
        xi = x[i]
        for j in range(d):
            if xi[j] != 0:
                rows[ptr[j]] = i
                ptr[j] += 1
    for j in range(d, 0, -1):
        ptr[j] = ptr[j - 1]
    ptr[0] = 0


@kernel
def _weight_grad_loops(x, delta, dW, ptr, rows, dirty):
    """dW (d, k) = x.T @ delta over the non-zeros of x; see Design D for ``dirty`` (d,)."""
    n, d = x.shape
    k = delta.shape[1]
    zero = dW.dtype.type(0.0)
    for r0 in range(0, n, CHUNK_ROWS):
        _column_index(x, r0, min(n, r0 + CHUNK_ROWS), ptr, rows)
        for j in range(d):
            s, e = ptr[j], ptr[j + 1]
            dst = dW[j]
            if s == e:
                if r0 == 0 and dirty[j]:
                    for c in range(k):
                        dst[c] = zero
                    dirty[j] = False
                continue
            if r0 == 0 or not dirty[j]:
                for c in range(k):
                    dst[c] = zero
            dirty[j] = True
            t = s
            while t + 4 <= e:
                i0, i1, i2, i3 = rows[t], rows[t + 1], rows[t + 2], rows[t + 3]
                v0, v1, v2, v3 = x[i0, j], x[i1, j], x[i2, j], x[i3, j]
                g0, g1, g2, g3 = delta[i0], delta[i1], delta[i2], delta[i3]
                for c in range(k):
                    dst[c] += v0 * g0[c] + v1 * g1[c] + v2 * g2[c] + v3 * g3[c]
                t += 4
            while t < e:
                v = x[rows[t], j]
                g = delta[rows[t]]
                for c in range(k):
                    dst[c] += v * g[c]
                t += 1


@kernel
def _input_grad_loops(delta, W, grad_x):
    """grad_x (n, d) = delta @ W.T as one dot product of length k per entry."""
    n, d = grad_x.shape
    k = delta.shape[1]
    zero = grad_x.dtype.type(0.0)
    for i in range(n):
        g = delta[i]
        for j in range(d):
            w = W[j]
            acc = zero
            for c in range(k):
                acc += g[c] * w[c]
            grad_x[i, j] = acc


@kernel
def dense_backward_into(
    x, W, a, grad, act, slope, dW, db, grad_x, want_grad_x, loops, ptr, rows, dirty
):
    """Fused backward of one layer (see the kernel contract); ptr (d+1,), rows, dirty scratch.

    ``rows`` holds ``min(n, CHUNK_ROWS) * d`` entries; ``dirty`` (d,) is True where ``dW`` may be
    non-zero on entry and is updated on exit (loops only).
    """
    act_backward_colsum(a, grad, act, slope, db)
    if loops:
        _weight_grad_loops(x, grad, dW, ptr, rows, dirty)
        if want_grad_x:
            _input_grad_loops(grad, W, grad_x)
        return
    np.dot(x.T, grad, dW)
    for j in range(dirty.shape[0]):
        dirty[j] = True
    if want_grad_x:
        np.dot(grad, W.T, grad_x)
