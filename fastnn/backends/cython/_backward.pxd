# cython: language_level=3
"""Backpropagation through a dense layer (see the design notes of ``_dense.pxd``)."""

from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memset

from ._act cimport act_backward_row
from ._blas cimport gemm
from ._dense cimport MAX_THREADS, Team, axpy1, axpy4, n_chunks
from ._pattern cimport Csc


cdef inline void one_row_sgd(floating* row, floating* Wi, Py_ssize_t k, floating v,
                             const floating* delta, floating lr) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(k):
        row[j] = v * delta[j]
        Wi[j] -= lr * row[j]


cdef inline void dw_sparse_rows(Py_ssize_t f0, Py_ssize_t f1, const floating* x, Py_ssize_t d,
                                const floating* delta, Py_ssize_t k, const Csc* csc,
                                floating* dW, char* zero_rows, floating* W, bint fuse_sgd,
                                floating lr, bint accumulate) noexcept nogil:
    """Rows f0..f1 of dW (+)= x.T @ delta, from the samples where each feature is nonzero.

    ``zero_rows[i]`` (when not NULL) says dW[i, :] is already all zeros, so an empty row costs
    nothing at batch size 1 where most features are zero in consecutive samples.
    ``accumulate`` adds to dW (the later row blocks of a large batch) instead.
    """
    cdef Py_ssize_t i, j, q, lo, hi
    cdef int r0, r1, r2, r3
    cdef floating* row
    for i in range(f0, f1):
        lo = csc.start[i]
        hi = csc.end[i]
        row = dW + i * k
        if lo == hi:
            if accumulate:
                continue
            if zero_rows == NULL:
                memset(row, 0, k * sizeof(floating))
            elif not zero_rows[i]:
                memset(row, 0, k * sizeof(floating))
                zero_rows[i] = 1
            continue  # a zero gradient row leaves W unchanged under plain SGD
        if hi - lo == 1 and fuse_sgd and not accumulate:
            # One sample (batch size 1): gradient row and update in a single pass.
            r0 = csc.rows[lo]
            one_row_sgd(row, W + i * k, k, x[r0 * d + i], delta + r0 * k, lr)
            if zero_rows != NULL:
                zero_rows[i] = 0
            continue
        if not accumulate:
            memset(row, 0, k * sizeof(floating))
        q = lo
        while q + 4 <= hi:
            r0 = csc.rows[q]
            r1 = csc.rows[q + 1]
            r2 = csc.rows[q + 2]
            r3 = csc.rows[q + 3]
            axpy4(row, k, x[r0 * d + i], delta + r0 * k, x[r1 * d + i], delta + r1 * k,
                  x[r2 * d + i], delta + r2 * k, x[r3 * d + i], delta + r3 * k)
            q += 4
        while q < hi:
            r0 = csc.rows[q]
            axpy1(row, k, x[r0 * d + i], delta + r0 * k)
            q += 1
        if zero_rows != NULL:
            zero_rows[i] = 0
        if fuse_sgd:
            for j in range(k):
                W[i * k + j] -= lr * row[j]


cdef inline void dw_sparse(const floating* x, Py_ssize_t n, Py_ssize_t d, const floating* delta,
                           Py_ssize_t k, const Csc* csc, floating* dW, char* zero_rows,
                           floating* W, bint fuse_sgd, floating lr, bint accumulate,
                           Team team) noexcept nogil:
    """dW (+)= x.T @ delta through the pattern; features split by equal numbers of nonzeros."""
    cdef Py_ssize_t bounds[MAX_THREADS + 1]
    cdef Py_ssize_t i, t, total
    cdef int nt
    total = csc.end[d - 1] + 1 if d > 0 else 0  # nonzeros + slack slots
    nt = n_chunks((total - d) * k, d, team.size)
    if nt == 1 or not team.parallel:  # each row of dW is computed alike in any chunk
        dw_sparse_rows(0, d, x, d, delta, k, csc, dW, zero_rows, W, fuse_sgd, lr, accumulate)
        return
    # csc.start[i] counts the nonzeros and slack slots before feature i: a cost prefix sum.
    bounds[0] = 0
    t = 1
    for i in range(d):
        while t < nt and csc.start[i] * nt >= total * t:
            bounds[t] = i
            t += 1
    while t <= nt:
        bounds[t] = d
        t += 1
    for t in prange(nt, num_threads=nt, schedule='static', chunksize=1):
        dw_sparse_rows(bounds[t], bounds[t + 1], x, d, delta, k, csc, dW, zero_rows, W,
                       fuse_sgd, lr, accumulate)


cdef inline void grad_x_rows(Py_ssize_t lo, Py_ssize_t hi, const floating* delta, Py_ssize_t k,
                             const floating* W, Py_ssize_t d, floating* grad_x,
                             bint row_loops) noexcept nogil:
    """Rows lo..hi of grad_x = delta @ W.T (dot products for tiny batches, else BLAS)."""
    cdef Py_ssize_t r, i, j
    cdef floating acc
    cdef const floating* dr
    cdef const floating* wi
    if not row_loops:
        gemm(False, True, <int>(hi - lo), <int>d, <int>k, <floating>1, delta + lo * k, <int>k,
             W, <int>k, <floating>0, grad_x + lo * d, <int>d)
        return
    for r in range(lo, hi):
        dr = delta + r * k
        for i in range(d):
            wi = W + i * k
            acc = 0
            for j in range(k):
                acc += dr[j] * wi[j]
            grad_x[r * d + i] = acc


cdef inline void dw_dense_rows(Py_ssize_t f0, Py_ssize_t f1, const floating* x, Py_ssize_t n,
                               Py_ssize_t d, const floating* delta, Py_ssize_t k,
                               floating* dW) noexcept nogil:
    # x[:, f0:f1].T @ delta: the column block of x is a strided (n, f1 - f0) matrix, lda = d.
    gemm(True, False, <int>(f1 - f0), <int>k, <int>n, <floating>1, x + f0, <int>d,
         delta, <int>k, <floating>0, dW + f0 * k, <int>k)


cdef inline void delta_and_db(const floating* a, floating* grad, Py_ssize_t n, Py_ssize_t k,
                              int act, floating slope, floating* db) noexcept nogil:
    """grad = dL/da -> delta = dL/dz in place, and db = its column sums, in one pass."""
    cdef Py_ssize_t r, j
    memset(db, 0, k * sizeof(floating))
    for r in range(n):
        act_backward_row(a + r * k, grad + r * k, k, act, slope)
        for j in range(k):
            db[j] += grad[r * k + j]


cdef inline void dense_backward_impl(const floating* x, Py_ssize_t n, Py_ssize_t d, floating* W,
                                     Py_ssize_t k, const floating* a, floating* grad, int act,
                                     floating slope, floating* dW, floating* db,
                                     floating* grad_x, const Csc* csc, char* zero_rows,
                                     bint fuse_sgd, floating lr, Team team) noexcept nogil:
    """delta = grad * act'(a) in place; db, grad_x (unless NULL) and dW from it.

    ``csc`` NULL takes the BLAS path for dW; otherwise the pattern of x drives the row loops.
    ``fuse_sgd`` (row loops only) also applies ``W -= lr * dW`` row by row.
    """
    cdef Py_ssize_t t
    cdef int nt
    cdef bint row_loops = csc != NULL
    delta_and_db(a, grad, n, k, act, slope, db)
    if grad_x != NULL:
        nt = 1 if row_loops else n_chunks(n * d * k, n, team.size)
        if nt == 1 or not team.parallel:
            for t in range(nt):
                grad_x_rows(n * t // nt, n * (t + 1) // nt, grad, k, W, d, grad_x, row_loops)
        else:
            for t in prange(nt, num_threads=nt, schedule='static', chunksize=1):
                grad_x_rows(n * t // nt, n * (t + 1) // nt, grad, k, W, d, grad_x, row_loops)
    if row_loops:
        dw_sparse(x, n, d, grad, k, csc, dW, zero_rows, W, fuse_sgd, lr, False, team)
        return
    if zero_rows != NULL:
        memset(zero_rows, 0, d)  # BLAS wrote every row: nothing is known to be zero now
    nt = n_chunks(n * d * k, d, team.size)
    if nt == 1 or not team.parallel:
        for t in range(nt):
            dw_dense_rows(d * t // nt, d * (t + 1) // nt, x, n, d, grad, k, dW)
    else:
        for t in prange(nt, num_threads=nt, schedule='static', chunksize=1):
            dw_dense_rows(d * t // nt, d * (t + 1) // nt, x, n, d, grad, k, dW)
