"""Hand-written loops of a dense layer over the non-zero inputs only (Numba).

Used for tiny batches (where BLAS call overhead dominates) and sparse inputs (MNIST pixels are
~81% zeros, ReLU outputs ~50%); ``fastnn.backends._numba_dense`` picks them per call.

Design:

A. Forward: per input row, a branch-free list of its non-zero columns, then four rows of ``W``
   per pass over the output row (a quarter of the output loads/stores).
B. ``x.T @ delta`` needs the non-zeros by column: per chunk of ``CHUNK_ROWS`` input rows, the
   row lists are turned into a column index (count, prefix sum, fill, all over the non-zeros),
   so each touched row of the result is read and written once per chunk.
C. ``dirty`` (d,) says which rows of ``dW`` may hold non-zeros: a row no input of the batch
   touches is zeroed only if dirty (batch 1 on MNIST touches ~20% of the rows, so the rest of
   ``dW`` is not rewritten). For plain SGD (``sgd``) the same pass also steps ``W`` on the
   touched rows, right after each ``dW`` row is summed: the other rows have a zero gradient
   and would not change. Every batch runs the same arithmetic, so results do not depend on
   how an epoch is cut into ``train_epoch`` calls.
D. All integer scratch lives in one int32 ``work`` array (see :func:`work_size`), allocated
   once per epoch or per public call; nothing is allocated inside the loops.
"""

from __future__ import annotations

from ._jit import kernel

CHUNK_ROWS = 64  # input rows per column index: its row lists stay in L1/L2


@kernel
def work_size(d: int) -> int:
    """Length of the int32 scratch for a layer with ``d`` inputs."""
    return 2 * CHUNK_ROWS * d + CHUNK_ROWS + 2 * d + 1


@kernel
def _row_lists(x, r0, r1, lst, rowlen):
    """Concatenated non-zero column lists of rows r0..r1-1 of x; returns their total length."""
    d = x.shape[1]
    total = 0
    for i in range(r0, r1):
        nnz = 0
        for j in range(d):  # branch-free: always store, advance only past a non-zero
            lst[total + nnz] = j
            nnz += x[i, j] != 0
        rowlen[i - r0] = nnz
        total += nnz
    return total


@kernel
def forward_loops(x, W, out, work):
    """out (n, k) = x @ W over the non-zeros of x (n, d); bias and activation not applied."""
    n, d = x.shape
    k = W.shape[1]
    idx = work[:d]
    for i in range(n):
        xi = x[i]
        nnz = 0
        for j in range(d):
            idx[nnz] = j
            nnz += xi[j] != 0
        row = out[i]
        for c in range(k):
            row[c] = 0.0
        t = 0
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


@kernel
def _column_index(x, r0, r1, work):
    """Column index of the non-zeros of x[r0:r1] (Design B).

    Returns the number of touched columns; ``active`` lists them, column j's rows are
    ``rows[start:end]`` with ``end = ends[j]`` and ``start = ends[j - 1]`` (0 for j = 0).
    """
    d = x.shape[1]
    lst, rows, rowlen, ends, active = _split(work, d)
    total = _row_lists(x, r0, r1, lst, rowlen)
    for j in range(d + 1):
        ends[j] = 0
    for e in range(total):
        ends[lst[e] + 1] += 1
    n_active = 0
    for j in range(d):
        active[n_active] = j
        n_active += ends[j + 1] != 0
        ends[j + 1] += ends[j]
    # ends[j] is now column j's start; fill advances it to column j's end.
    e = 0
    for i in range(r0, r1):
        for _ in range(rowlen[i - r0]):
            j = lst[e]
            rows[ends[j]] = i
            ends[j] += 1
            e += 1
    return n_active


@kernel
def _split(work, d):
    """Views of the int32 scratch: row lists, column rows, row lengths, column ends, active."""
    size = CHUNK_ROWS * d
    lst = work[:size]
    rows = work[size : 2 * size]
    rowlen = work[2 * size : 2 * size + CHUNK_ROWS]
    ends = work[2 * size + CHUNK_ROWS : 2 * size + CHUNK_ROWS + d + 1]
    active = work[2 * size + CHUNK_ROWS + d + 1 : 2 * size + CHUNK_ROWS + 2 * d + 1]
    return lst, rows, rowlen, ends, active


@kernel(inline=True)
def _add_column(x, delta, j, s, e, rows, dW):
    """dW[j] (k,) += sum over t in [s, e) of x[rows[t], j] * delta[rows[t]]."""
    k = delta.shape[1]
    t = s
    while t + 4 <= e:
        i0, i1, i2, i3 = rows[t], rows[t + 1], rows[t + 2], rows[t + 3]
        v0, v1, v2, v3 = x[i0, j], x[i1, j], x[i2, j], x[i3, j]
        for c in range(k):
            dW[j, c] += (
                v0 * delta[i0, c] + v1 * delta[i1, c] + v2 * delta[i2, c] + v3 * delta[i3, c]
            )
        t += 4
    while t < e:
        i0 = rows[t]
        v = x[i0, j]
        for c in range(k):
            dW[j, c] += v * delta[i0, c]
        t += 1


@kernel(inline=True)
def _sgd_row(W, dW, j, rate):
    """W[j] -= rate * dW[j]: the one expression of the plain-SGD step on a row."""
    for c in range(W.shape[1]):
        W[j, c] -= rate * dW[j, c]


@kernel
def weight_grad_loops(x, delta, dW, work, dirty, W, lr, sgd):
    """dW (d, k) = x.T @ delta for x (n, d), delta (n, k), over the non-zeros of x.

    ``dirty`` (d,) per Design C. With ``sgd``, also ``W -= lr * dW`` on the rows of ``W``
    that change (Design C), while each row is still in cache when the batch is one chunk.
    """
    n, d = x.shape
    zero = dW.dtype.type(0.0)
    rate = dW.dtype.type(lr)
    lst, rows, rowlen, ends, active = _split(work, d)
    for r0 in range(0, n, CHUNK_ROWS):
        if n == 1:
            # One row: its non-zero list is the column index (batch-1 SGD lives here).
            n_active = _row_lists(x, 0, 1, active, rowlen)
            rows[0] = 0
        else:
            n_active = _column_index(x, r0, min(n, r0 + CHUNK_ROWS), work)
        if r0 == 0:
            # Rows no input touches must end up zero: only the dirty ones can be non-zero.
            for j in range(d):
                empty = x[0, j] == 0 if n == 1 else ends[j] == (ends[j - 1] if j > 0 else 0)
                if dirty[j] and empty:
                    dW[j, :] = zero
                    dirty[j] = False
        for a in range(n_active):
            j = active[a]
            if r0 == 0:
                dW[j, :] = zero
            dirty[j] = True
            if n == 1:
                _add_column(x, delta, j, 0, 1, rows, dW)
            else:
                _add_column(x, delta, j, ends[j - 1] if j > 0 else 0, ends[j], rows, dW)
            if sgd and n <= CHUNK_ROWS:
                _sgd_row(W, dW, j, rate)
    if sgd and n > CHUNK_ROWS:
        for j in range(d):
            if dirty[j]:
                _sgd_row(W, dW, j, rate)


@kernel
def input_grad_loops(delta, W, grad_x):
    """grad_x (n, d) = delta (n, k) @ W.T, one dot product of length k per entry."""
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
