# cython: language_level=3
"""The dense layer on raw row-major pointers, forward and backward, for both float widths.

Design:

A. Two paths per product (``sparse.use_loops`` decides, batch by batch, from the density).
   Large dense batches go to BLAS (``blas.gemm``), with the bias and activation in one pass
   over each output row afterwards. Small batches (fewer than ``SMALL_ROWS`` rows) and sparse
   inputs (MNIST pixels are ~81% zeros) take the zero-skipping loops of ``sparse.pxd``.
B. Threads: the team (``team.pxd``) splits the loops into rows (forward: blocks on a dynamic
   schedule; grad_x) or features (dW), each chunk writing whole rows, so any split gives the
   same numbers. With
   the backend's own BLAS handle (``blas.pxd``, one thread per call) the BLAS products are
   split the same way and each chunk calls BLAS itself; without it a product runs whole on the
   calling thread, outside the team, with the threads the process gave scipy's BLAS. fastnn
   never limits those (a process-wide setting, seen by every other thread).
C. A fused plain-SGD update (``sgd``) subtracts ``lr * dW[i, :]`` from ``W[i, :]`` as soon as
   that row is complete, while it is in L1; input gradients are computed before dW for that
   reason (they need the old W).
D. Measured and dropped (MNIST 784-128-10, batch 128): walking the sparse forward by feature
   over column blocks sized for L1 (each weight row read once per batch, not per sample) and
   the same blocking for dW were 15-35% slower: twice the L1 loads and stores per multiply-add,
   and a store-to-load chain when a block's accumulator lives on the stack. Listing nonzeros
   while gathering the batch was slower too: it stops the copy loop from vectorising.

Notation: x (n, d) the layer input, W (d, k), b (k,), z = x @ W + b (n, k), kept only where the
activation needs it (else NULL), a = act(z) (n, k), alpha the activation parameter.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memset

from .activations cimport act_backward_row, bias_act_row
from .blas cimport gemm
from .sparse cimport Csc, Csr, forward_loops, input_grad_loops, weight_grad_loops
from .team cimport Team, fastnn_fp_mode, fastnn_fp_swap, n_chunks


# Forward -----------------------------------------------------------------------------------
cdef inline void forward_blas_rows(const floating* x, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t d,
                                   const floating* W, Py_ssize_t k, const floating* b, int act,
                                   floating alpha, floating* z, floating* out,
                                   bint own) noexcept nogil:
    """Rows lo..hi of act(x @ W + b) through BLAS, the epilogue while the rows are in cache."""
    cdef Py_ssize_t r
    gemm(own, False, False, <int>(hi - lo), <int>k, <int>d, <floating>1, x + lo * d, <int>d,
         W, <int>k, <floating>0, out + lo * k, <int>k)
    for r in range(lo, hi):
        bias_act_row(out + r * k, b, k, act, alpha, NULL if z == NULL else z + r * k)


cdef inline void dense_forward_kernel(const floating* x, Py_ssize_t n, Py_ssize_t d,
                                      const floating* W, Py_ssize_t k, const floating* b,
                                      int act, floating alpha, floating* z, floating* out,
                                      bint loops, const Csr* csr, Team team) noexcept nogil:
    """out (n, k) = act(x (n, d) @ W (d, k) + b (k,)); z (n, k) = x @ W + b unless NULL.

    ``loops`` picks the zero-skipping loops (``csr``: x's nonzeros, or NULL to scan x).
    """
    cdef unsigned fp_mode = fastnn_fp_mode(), fp_old  # fpmode: the caller's flushing
    cdef Py_ssize_t t
    cdef int nt
    if loops:
        forward_loops(x, n, d, W, k, b, act, alpha, z, out, csr, team)
        return
    if not team.own_blas:
        forward_blas_rows(x, 0, n, d, W, k, b, act, alpha, z, out, False)
        return
    nt = n_chunks(n * d * k, n, team.size)
    if nt == 1 or not team.parallel:
        for t in range(nt):
            forward_blas_rows(x, n * t // nt, n * (t + 1) // nt, d, W, k, b, act, alpha, z, out,
                              True)
        return
    for t in prange(nt, num_threads=nt, schedule='static', chunksize=1):
        fp_old = fastnn_fp_swap(fp_mode)
        forward_blas_rows(x, n * t // nt, n * (t + 1) // nt, d, W, k, b, act, alpha, z, out,
                          True)
        fastnn_fp_swap(fp_old)


# Backward ----------------------------------------------------------------------------------
cdef inline void grad_x_rows(Py_ssize_t lo, Py_ssize_t hi, const floating* delta, Py_ssize_t k,
                             const floating* W, Py_ssize_t d, floating* grad_x, bint loops,
                             bint own) noexcept nogil:
    """Rows lo..hi of grad_x = delta @ W.T (dot products for tiny batches, else BLAS)."""
    if loops:
        input_grad_loops(delta, lo, hi, k, W, d, grad_x)
        return
    gemm(own, False, True, <int>(hi - lo), <int>d, <int>k, <floating>1, delta + lo * k, <int>k,
         W, <int>k, <floating>0, grad_x + lo * d, <int>d)


cdef inline void dw_blas_rows(Py_ssize_t f0, Py_ssize_t f1, const floating* x, Py_ssize_t n,
                              Py_ssize_t d, const floating* delta, Py_ssize_t k, floating* dW,
                              bint own) noexcept nogil:
    # x[:, f0:f1].T @ delta: the column block of x is a strided (n, f1 - f0) matrix, lda = d;
    # BLAS reads it with a transpose flag, no copy.
    gemm(own, True, False, <int>(f1 - f0), <int>k, <int>n, <floating>1, x + f0, <int>d,
         delta, <int>k, <floating>0, dW + f0 * k, <int>k)


cdef inline void delta_and_db(const floating* z, const floating* a, floating* grad, Py_ssize_t n,
                              Py_ssize_t k, int act, floating alpha,
                              floating* db) noexcept nogil:
    """grad = dL/da -> delta = dL/dz in place, and db = its column sums, in one pass."""
    cdef Py_ssize_t r, j
    cdef const floating* zr = NULL
    memset(db, 0, k * sizeof(floating))
    for r in range(n):
        if z != NULL:
            zr = z + r * k
        act_backward_row(zr, a + r * k, grad + r * k, k, act, alpha)
        for j in range(k):
            db[j] += grad[r * k + j]


cdef inline void dense_backward_kernel(const floating* x, Py_ssize_t n, Py_ssize_t d,
                                       floating* W, Py_ssize_t k, const floating* z,
                                       const floating* a, floating* grad, int act,
                                       floating alpha, floating* dW, floating* db,
                                       floating* grad_x, const Csc* csc, char* dirty, bint sgd,
                                       floating lr, Team team) noexcept nogil:
    """delta = grad * act'(z or a) in place; db, grad_x (unless NULL) and dW from it.

    ``csc`` NULL takes the BLAS path for dW; otherwise the pattern of x drives the loops.
    ``sgd`` (loops only) also applies ``W -= lr * dW`` row by row. ``dirty``: ``sparse.pxd``.
    """
    cdef unsigned fp_mode = fastnn_fp_mode(), fp_old  # fpmode: the caller's flushing
    cdef Py_ssize_t t
    cdef int nt
    cdef bint loops = csc != NULL
    cdef bint own = team.own_blas
    delta_and_db(z, a, grad, n, k, act, alpha, db)
    if grad_x != NULL:
        nt = n_chunks(n * d * k, n, team.size) if own and not loops else 1
        if nt == 1 or not team.parallel:
            for t in range(nt):
                grad_x_rows(n * t // nt, n * (t + 1) // nt, grad, k, W, d, grad_x, loops, own)
        else:
            for t in prange(nt, num_threads=nt, schedule='static', chunksize=1):
                fp_old = fastnn_fp_swap(fp_mode)
                grad_x_rows(n * t // nt, n * (t + 1) // nt, grad, k, W, d, grad_x, loops, own)
                fastnn_fp_swap(fp_old)
    if loops:
        weight_grad_loops(x, n, d, grad, k, csc, dW, dirty, W, sgd, lr, False, team)
        return
    if dirty != NULL:
        memset(dirty, 1, d)  # BLAS wrote every row: any may be non-zero now
    nt = n_chunks(n * d * k, d, team.size) if own else 1
    if nt == 1 or not team.parallel:
        for t in range(nt):
            dw_blas_rows(d * t // nt, d * (t + 1) // nt, x, n, d, grad, k, dW, own)
    else:
        for t in prange(nt, num_threads=nt, schedule='static', chunksize=1):
            fp_old = fastnn_fp_swap(fp_mode)
            dw_blas_rows(d * t // nt, d * (t + 1) // nt, x, n, d, grad, k, dW, own)
            fastnn_fp_swap(fp_old)
