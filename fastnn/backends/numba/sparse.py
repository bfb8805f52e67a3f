"""Hand-written loops of a dense layer over the non-zero inputs only (Numba).

Used for tiny batches (where BLAS call overhead dominates) and sparse inputs (MNIST pixels are
~81% zeros, ReLU outputs ~50%); ``fastnn.backends.numba.dense`` picks them per call.

Design:

A. Forward: per pair of input rows, a branch-free list of the columns where either is
   non-zero, then register blocks (:mod:`.simd`): both rows' outputs for ``BLOCK_VECTORS``
   512-bit vectors of columns (128 float32, 64 float64) stay in 16 vector registers over the
   whole list, each row of ``W`` loaded once for the two rows; narrower remainders take one
   vector at a time, and the last columns (fewer than a vector) plain loops. Each output is
   a chain of FMAs in column order, so a row's result does not depend on its partner row
   (a zero input adds an exact zero). Measured on MNIST digits (784 -> 128, 1024 rows, one
   thread, median of 40 interleaved): 1.48 ms, against 2.05 ms for the loops LLVM vectorized
   before (four rows of ``W`` per pass over two output rows in memory, 256-bit) and 1.70 ms
   for the same blocks on 256-bit vectors.
B. ``x.T @ delta`` needs the non-zeros by column: per chunk of ``CHUNK_ROWS`` input rows, the
   row lists are turned into a column index (count, prefix sum, fill, all over the non-zeros),
   so each touched row of the result is read and written once per chunk.
C. ``dirty`` (d,) says which rows of ``dW`` may hold non-zeros: a row no input of the batch
   touches is zeroed only if dirty (batch 1 on MNIST touches ~20% of the rows, so the rest of
   ``dW`` is not rewritten). For plain SGD (``sgd``) the product is added straight into ``W``
   scaled by ``-lr``: rows of ``W`` whose inputs are all zero would not change, and ``dW`` is
   not written at all. At batch 1 that halves the memory traffic (``W`` and ``dW`` together
   overflow the 1 MB L2 cache; measured 0.8 s -> 0.3 s per MNIST epoch).
D. All integer scratch lives in one int32 ``scratch`` array (see :func:`scratch_size`), allocated
   once per epoch or per public call; nothing is allocated inside the loops.
E. No array views (``W[j]``) and no helper calls taking arrays inside the per-row or
   per-column loops: each costs atomic reference-count updates in Numba, which a profile of
   the batch-1 epoch showed taking 70% of the time. Rows are indexed as ``W[j, c]``.
F. Two threads (:func:`forward_team`, :func:`weight_grad_team`, ``parallel=True`` with one
   ``prange`` iteration per thread, on the layer chosen by :mod:`.team`, Design E): each owns
   its part of the output, so there is no reduction and no atomic, and each does exactly the
   arithmetic of one thread on it, so the results are bit-identical for any thread count.
   The forward splits the *rows* of ``x`` (in pairs, as Design A pairs them) and the weight
   gradient the *input features* (rows of ``dW``/``W``, each thread indexing only its columns
   of ``x``). Splitting the hidden units instead (each thread its columns of ``out`` and
   ``dW``) was measured first: every thread then scans all of ``x`` for its non-zeros and
   builds the whole column index, which at k = 64 per thread is most of the work, and two
   threads were no faster than one. ``team`` (threads, size) int32 is the threads' scratch.
   The one-thread entry points pass their range starts as ``np.int64(0)``: a literal ``0``
   would be typed ``Literal[int](0)`` and compile every range kernel twice (measured: the
   weight gradient's chain took 8 s more CPU to compile).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .fpmode import get_mode, swap_mode
from .jit import kernel, parallel_kernel
from .simd import specialized, stack_array, wide_lanes, wide_vcopy, wide_vfma

CHUNK_ROWS = 64  # input rows per column index: its row lists stay in L1/L2
BLOCK_VECTORS = 8  # 512-bit vectors of outputs per row in a register block (Design A)
ACC = 2 * BLOCK_VECTORS * 16  # accumulator elements: two rows, 16 float32 lanes (the most)


@kernel
def scratch_size(d: int) -> int:
    """Length of the int32 scratch for a layer with ``d`` inputs."""
    return 2 * CHUNK_ROWS * d + CHUNK_ROWS + 2 * d + 1


@kernel
def _split(scratch, d):
    """Views of the int32 scratch: row lists, column rows, row lengths, column ends, active."""
    size = CHUNK_ROWS * d
    lst = scratch[:size]
    rows = scratch[size : 2 * size]
    rowlen = scratch[2 * size : 2 * size + CHUNK_ROWS]
    ends = scratch[2 * size + CHUNK_ROWS : 2 * size + CHUNK_ROWS + d + 1]
    active = scratch[2 * size + CHUNK_ROWS + d + 1 : 2 * size + CHUNK_ROWS + 2 * d + 1]
    return lst, rows, rowlen, ends, active


@kernel
def _row_lists(x, r0, r1, lst, rowlen, j0, j1):
    """Concatenated lists of the non-zero columns j0..j1-1 of rows r0..r1-1 of x; returns
    their total length."""
    total = 0
    for i in range(r0, r1):
        nnz = 0
        for j in range(j0, j1):  # branch-free: always store, advance only past a non-zero
            lst[total + nnz] = j
            nnz += x[i, j] != 0
        rowlen[i - r0] = nnz
        total += nnz
    return total


def _rows_block_for(nv: int):  # noqa: ANN202
    """Columns c0..c0 + nv*V of ``rows`` (1 or 2) output rows from row i, over the ``nnz``
    input columns listed in ``scratch``; ``nv`` (a constant) 512-bit vectors per row (Design A)."""

    def block(x, i, Wf, k, of, scratch, nnz, c0, rows, nv_):  # noqa: ANN001, ANN202
        V = wide_lanes(Wf)
        acc = stack_array(ACC, Wf)
        for e in range(2 * nv * V):
            acc[e] = 0
        if rows == 2:
            for t in range(nnz):
                j = scratch[t]
                a, b, base = x[i, j], x[i + 1, j], j * k + c0
                for g in range(nv):
                    wide_vfma(acc, g * V, Wf, base + g * V, a)
                for g in range(nv):
                    wide_vfma(acc, (nv + g) * V, Wf, base + g * V, b)
        else:
            for t in range(nnz):
                j = scratch[t]
                a, base = x[i, j], j * k + c0
                for g in range(nv):
                    wide_vfma(acc, g * V, Wf, base + g * V, a)
        for g in range(nv):  # constant offsets into acc only: it stays in registers
            wide_vcopy(of, i * k + c0 + g * V, acc, g * V)
        if rows == 2:
            for g in range(nv):
                wide_vcopy(of, (i + 1) * k + c0 + g * V, acc, (nv + g) * V)

    return block


_rows_block = specialized(_rows_block_for)


@kernel
def _rows_columns(x, i, W, out, scratch, nnz, c0, rows):
    """Columns c0..k-1 (fewer than one vector) of rows i..i+rows-1 (rows 1 or 2; Design A):
    four rows of ``W`` per pass over the outputs, each loaded once for both rows (LLVM
    vectorizes the column loop)."""
    if rows == 1:
        _row_columns(x, i, W, out, scratch, nnz, c0)
        return
    k = W.shape[1]
    zero = out.dtype.type(0.0)
    for c in range(c0, k):
        out[i, c] = zero
        out[i + 1, c] = zero
    t = 0
    while t + 4 <= nnz:
        j0, j1, j2, j3 = scratch[t], scratch[t + 1], scratch[t + 2], scratch[t + 3]
        a0, a1, a2, a3 = x[i, j0], x[i, j1], x[i, j2], x[i, j3]
        b0, b1, b2, b3 = x[i + 1, j0], x[i + 1, j1], x[i + 1, j2], x[i + 1, j3]
        for c in range(c0, k):
            w0, w1, w2, w3 = W[j0, c], W[j1, c], W[j2, c], W[j3, c]
            out[i, c] += a0 * w0 + a1 * w1 + a2 * w2 + a3 * w3
            out[i + 1, c] += b0 * w0 + b1 * w1 + b2 * w2 + b3 * w3
        t += 4
    while t < nnz:
        j0 = scratch[t]
        a0, b0 = x[i, j0], x[i + 1, j0]
        for c in range(c0, k):
            out[i, c] += a0 * W[j0, c]
            out[i + 1, c] += b0 * W[j0, c]
        t += 1


@kernel
def _row_columns(x, i, W, out, scratch, nnz, c0):
    """:func:`_rows_columns` for the single row i."""
    k = W.shape[1]
    zero = out.dtype.type(0.0)
    for c in range(c0, k):
        out[i, c] = zero
    t = 0
    while t + 4 <= nnz:
        j0, j1, j2, j3 = scratch[t], scratch[t + 1], scratch[t + 2], scratch[t + 3]
        v0, v1, v2, v3 = x[i, j0], x[i, j1], x[i, j2], x[i, j3]
        for c in range(c0, k):
            out[i, c] += v0 * W[j0, c] + v1 * W[j1, c] + v2 * W[j2, c] + v3 * W[j3, c]
        t += 4
    while t < nnz:
        j0 = scratch[t]
        v0 = x[i, j0]
        for c in range(c0, k):
            out[i, c] += v0 * W[j0, c]
        t += 1


@kernel
def _forward_rows_at(x, i, W, Wf, out, of, scratch, rows):
    """out[i:i+rows] = x[i:i+rows] @ W (rows 1 or 2) over the union of their non-zero columns
    (Design A); ``Wf``, ``of``: flat views of W and out."""
    d, k = W.shape
    nnz = 0
    if rows == 2:
        for j in range(d):  # branch-free: always store, advance only past a non-zero
            scratch[nnz] = j
            nnz += (x[i, j] != 0) | (x[i + 1, j] != 0)
    else:
        for j in range(d):
            scratch[nnz] = j
            nnz += x[i, j] != 0
    V = wide_lanes(Wf)
    c0 = 0
    while c0 + BLOCK_VECTORS * V <= k:
        _rows_block(x, i, Wf, k, of, scratch, nnz, c0, rows, BLOCK_VECTORS)
        c0 += BLOCK_VECTORS * V
    while c0 + V <= k:
        _rows_block(x, i, Wf, k, of, scratch, nnz, c0, rows, 1)
        c0 += V
    if c0 < k:
        _rows_columns(x, i, W, out, scratch, nnz, c0, rows)


@kernel
def forward_loops(x, W, out, scratch):
    """out (n, k) = x @ W over the non-zeros of x (n, d); bias and activation not applied."""
    forward_rows(x, W, out, scratch, np.int64(0), x.shape[0])  # int64, not Literal[0] (Design F)


@kernel
def forward_rows(x, W, out, scratch, r0, r1):
    """Rows r0..r1-1 of :func:`forward_loops`; r0 even, so rows pair as in the whole call."""
    Wf, of = W.reshape(-1), out.reshape(-1)  # flat views, made once (Design E)
    for i in range(r0, r1 - 1, 2):
        _forward_rows_at(x, i, W, Wf, out, of, scratch, 2)
    if (r1 - r0) % 2:
        _forward_rows_at(x, r1 - 1, W, Wf, out, of, scratch, 1)


@kernel
def _column_index(x, r0, r1, scratch, j0, j1):
    """Column index of the non-zeros of x[r0:r1, j0:j1] (Design B).

    Returns the number of touched columns; ``active`` lists them, column j's rows are
    ``rows[start:end]`` with ``end = ends[j]`` and ``start = ends[j - 1]`` (0 for j = j0).
    """
    d = x.shape[1]
    lst, rows, rowlen, ends, active = _split(scratch, d)
    total = _row_lists(x, r0, r1, lst, rowlen, j0, j1)
    for j in range(j0, j1 + 1):
        ends[j] = 0
    for e in range(total):
        ends[lst[e] + 1] += 1
    n_active = 0
    for j in range(j0, j1):
        active[n_active] = j
        n_active += ends[j + 1] != 0
        ends[j + 1] += ends[j]
    # ends[j] is now column j's start; the fill advances it to column j's end.
    e = 0
    for i in range(r0, r1):
        for _ in range(rowlen[i - r0]):
            j = lst[e]
            rows[ends[j]] = i
            ends[j] += 1
            e += 1
    return n_active


@kernel
def weight_grad_loops(x, delta, target, scratch, dirty, sgd, lr):
    """x (n, d), delta (n, k), over the non-zeros of x: target (d, k) = x.T @ delta (dW), or
    with ``sgd`` target (W) -= lr * x.T @ delta. dirty (d,): Design C; unused with ``sgd``.
    """
    weight_grad_features(x, delta, target, scratch, dirty, sgd, lr, np.int64(0), x.shape[1])


@kernel
def weight_grad_features(x, delta, target, scratch, dirty, sgd, lr, j0, j1):
    """Rows j0..j1-1 of :func:`weight_grad_loops` (input features j0..j1-1 of x): only those
    columns of x are read, only those rows of target and entries of dirty written."""
    n, d = x.shape
    k = delta.shape[1]
    zero = target.dtype.type(0.0)
    scale = target.dtype.type(-lr) if sgd else target.dtype.type(1.0)
    lst, rows, rowlen, ends, active = _split(scratch, d)
    for r0 in range(0, n, CHUNK_ROWS):
        if n == 1:
            # One row: its non-zero list is the column index (batch-1 SGD lives here).
            n_active = _row_lists(x, 0, 1, active, rowlen, j0, j1)
            rows[0] = 0
        else:
            n_active = _column_index(x, r0, min(n, r0 + CHUNK_ROWS), scratch, j0, j1)
        if r0 == 0 and not sgd:
            # Rows no input touches must end up zero: only the dirty ones can be non-zero.
            for j in range(j0, j1):
                empty = x[0, j] == 0 if n == 1 else ends[j] == (ends[j - 1] if j > j0 else 0)
                if dirty[j] and empty:
                    for c in range(k):
                        target[j, c] = zero
                    dirty[j] = False
        for a in range(n_active):
            j = active[a]
            if n == 1:
                t, e = 0, 1
            else:
                t, e = (ends[j - 1] if j > j0 else 0), ends[j]
            if not sgd:
                if r0 == 0:
                    for c in range(k):
                        target[j, c] = zero
                dirty[j] = True
            while t + 4 <= e:
                i0, i1, i2, i3 = rows[t], rows[t + 1], rows[t + 2], rows[t + 3]
                v0, v1 = scale * x[i0, j], scale * x[i1, j]
                v2, v3 = scale * x[i2, j], scale * x[i3, j]
                for c in range(k):
                    target[j, c] += (
                        v0 * delta[i0, c]
                        + v1 * delta[i1, c]
                        + v2 * delta[i2, c]
                        + v3 * delta[i3, c]
                    )
                t += 4
            # One more pass for the 1-3 left over, not one pass each.
            left = e - t
            if left == 3:
                i0, i1, i2 = rows[t], rows[t + 1], rows[t + 2]
                v0, v1, v2 = scale * x[i0, j], scale * x[i1, j], scale * x[i2, j]
                for c in range(k):
                    target[j, c] += v0 * delta[i0, c] + v1 * delta[i1, c] + v2 * delta[i2, c]
            elif left == 2:
                i0, i1 = rows[t], rows[t + 1]
                v0, v1 = scale * x[i0, j], scale * x[i1, j]
                for c in range(k):
                    target[j, c] += v0 * delta[i0, c] + v1 * delta[i1, c]
            elif left == 1:
                i0 = rows[t]
                v0 = scale * x[i0, j]
                for c in range(k):
                    target[j, c] += v0 * delta[i0, c]


@kernel
def input_grad_loops(delta, W, grad_x):
    """grad_x (n, d) = delta (n, k) @ W.T, one dot product of length k per entry."""
    n, d = grad_x.shape
    k = delta.shape[1]
    zero = grad_x.dtype.type(0.0)
    for i in range(n):
        for j in range(d):
            acc = zero
            for c in range(k):
                acc += delta[i, c] * W[j, c]
            grad_x[i, j] = acc


# Thread-split loops (Design F) ------------------------------------------------------------------
@kernel
def team_share(size, t, threads, multiple):
    """Part (start, stop) of thread t of ``threads`` in range(size): equal shares, each a
    multiple of ``multiple`` but the last."""
    share = -(-size // threads)
    share = -(-share // multiple) * multiple
    return min(size, t * share), min(size, (t + 1) * share)


@parallel_kernel
def forward_team(x, W, out, team):
    """:func:`forward_loops` with the rows of x split over ``team.shape[0]`` threads in pairs
    (the same arithmetic as one thread); team (threads, >= d) int32: each thread's scratch."""
    threads = team.shape[0]
    mode = get_mode()  # the caller's denormal flushing, for every thread (fpmode, Design A)
    for t in prange(threads):
        old = swap_mode(mode)
        r0, r1 = team_share(x.shape[0], np.int64(t), threads, 2)
        forward_rows(x, W, out, team[t], r0, r1)
        swap_mode(old)


@parallel_kernel
def weight_grad_team(x, delta, target, dirty, team, sgd, lr):
    """:func:`weight_grad_loops` with the input features (rows of target) split over
    ``team.shape[0]`` threads; team (threads, >= scratch_size(d)) int32: their scratch."""
    threads = team.shape[0]
    mode = get_mode()
    for t in prange(threads):
        old = swap_mode(mode)
        j0, j1 = team_share(x.shape[1], np.int64(t), threads, 1)
        weight_grad_features(x, delta, target, team[t], dirty, sgd, lr, j0, j1)
        swap_mode(old)
