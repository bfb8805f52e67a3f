# cython: language_level=3
"""Dense layer kernels on raw row-major pointers, for both float widths (fused types).

Design:

A. Two paths per product. Large dense batches go to BLAS (``_blas.gemm``) with the bias and
   activation fused into one pass over each output row while it is still in cache. Small batches
   (fewer than ``SMALL_ROWS`` rows) and sparse inputs (MNIST pixels are ~81% zeros) take
   hand-written "row" loops that skip zero inputs (``_pattern.use_row_loops`` decides, batch by
   batch, from the density): forward adds ``x[r, i] * W[i, :]`` only for nonzero ``x[r, i]``,
   and dW is built one row ``dW[i, :]`` at a time from the samples where feature i is nonzero
   (``_pattern.Csc``, ``_backward.dw_sparse``), so each dW row is written once; the first layer
   of a tiny batch writes only its nonzero rows (``_scatter.pxd``).
B. Loops over a row of k outputs are the vectorised inner loops; four weight (or delta) rows are
   combined per pass to cut loads and stores of the output row by four.
C. Threads: a ``Team`` of size > 1 splits rows (forward, grad_x) or features (dW) into one
   contiguous chunk per thread with ``prange``; each chunk calls BLAS itself, so the caller must
   have BLAS single-threaded (``train_epoch`` does, through threadpoolctl). One thread pool,
   never two: OpenMP workers spinning after a ``prange`` starve BLAS's own threads (DESIGN.md,
   25x). The chunks are the same whether they run in parallel or not, so the results do not
   depend on the epoch's choice between the two (``_epoch.pxd``).
D. A fused plain-SGD update (``fuse_sgd``) subtracts ``lr * dW[i, :]`` from ``W[i, :]`` as soon as
   that row is complete, while it is in L1; input gradients are computed before dW for that
   reason (they need the old W).
E. Measured and dropped (MNIST 784-128-10, batch 128): walking the sparse forward by feature
   over column blocks sized for L1 (each weight row read once per batch, not per sample) and
   the same blocking for dW were 15-35% slower: twice the L1 loads and stores per multiply-add,
   and a store-to-load chain when a block's accumulator lives on the stack. Listing nonzeros
   while gathering the batch was slower too: it stops the copy loop from vectorising.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memset

from ._act cimport bias_act_row
from ._blas cimport gemm
from ._pattern cimport Csr


cdef enum:
    SCAN_BLOCK = 256        # features scanned for nonzeros per block of the row forward
    MAX_THREADS = 64
    PAR_MIN_WORK = 1 << 20  # multiply-adds below which work stays on one thread


cdef struct Team:
    # How work is split: into ``size`` chunks (the configured thread count: it alone fixes the
    # results), run on ``size`` OpenMP threads when ``parallel``, else one after the other.
    int size
    bint parallel


cdef inline int n_chunks(Py_ssize_t work, Py_ssize_t items, int size) noexcept nogil:
    """Chunks for ``work`` multiply-adds over ``items`` rows: 1 when too small to split."""
    if size <= 1 or work < PAR_MIN_WORK or items < 2:
        return 1
    if size > items:
        return <int>items
    return size if size < MAX_THREADS else MAX_THREADS


cdef inline void axpy4(floating* o, Py_ssize_t k, floating a0, const floating* w0, floating a1,
                       const floating* w1, floating a2, const floating* w2, floating a3,
                       const floating* w3) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(k):
        o[j] += a0 * w0[j] + a1 * w1[j] + a2 * w2[j] + a3 * w3[j]


cdef inline void axpy1(floating* o, Py_ssize_t k, floating a0, const floating* w0) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(k):
        o[j] += a0 * w0[j]


# Forward -----------------------------------------------------------------------------------
cdef inline void add_weight_rows(floating* o, Py_ssize_t k, const floating* xr, const int* nz,
                                 Py_ssize_t cnt, const floating* W) noexcept nogil:
    """o += sum_q xr[nz[q]] * W[nz[q], :] over the cnt listed inputs."""
    cdef Py_ssize_t q = 0
    while q + 4 <= cnt:
        axpy4(o, k, xr[nz[q]], W + nz[q] * k, xr[nz[q + 1]], W + nz[q + 1] * k,
              xr[nz[q + 2]], W + nz[q + 2] * k, xr[nz[q + 3]], W + nz[q + 3] * k)
        q += 4
    while q < cnt:
        axpy1(o, k, xr[nz[q]], W + nz[q] * k)
        q += 1


cdef inline void forward_rows(const floating* x, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t d,
                              const floating* W, Py_ssize_t k, const floating* b, int act,
                              floating slope, floating* out, const Csr* csr) noexcept nogil:
    """Rows lo..hi of act(x @ W + b), adding only the weight rows of nonzero inputs.

    The nonzeros come from ``csr`` when given, else from scanning each row in blocks.
    """
    cdef int nz[SCAN_BLOCK]
    cdef Py_ssize_t r, i0, i, cnt, stop
    cdef floating* o
    cdef const floating* xr
    for r in range(lo, hi):
        o = out + r * k
        xr = x + r * d
        memset(o, 0, k * sizeof(floating))
        if csr != NULL:
            add_weight_rows(o, k, xr, csr.cols + csr.ptr[r], csr.ptr[r + 1] - csr.ptr[r], W)
        else:
            i0 = 0
            while i0 < d:
                stop = i0 + SCAN_BLOCK if i0 + SCAN_BLOCK < d else d
                cnt = 0
                for i in range(i0, stop):
                    nz[cnt] = <int>(i - i0)
                    cnt += xr[i] != 0
                add_weight_rows(o, k, xr + i0, nz, cnt, W + i0 * k)
                i0 = stop
        bias_act_row(o, b, k, act, slope)


cdef inline void forward_chunk(const floating* x, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t d,
                               const floating* W, Py_ssize_t k, const floating* b, int act,
                               floating slope, floating* out, bint row_loops,
                               const Csr* csr) noexcept nogil:
    cdef Py_ssize_t r
    if row_loops:
        forward_rows(x, lo, hi, d, W, k, b, act, slope, out, csr)
        return
    gemm(False, False, <int>(hi - lo), <int>k, <int>d, <floating>1, x + lo * d, <int>d,
         W, <int>k, <floating>0, out + lo * k, <int>k)
    for r in range(lo, hi):
        bias_act_row(out + r * k, b, k, act, slope)


cdef inline void dense_forward_impl(const floating* x, Py_ssize_t n, Py_ssize_t d,
                                    const floating* W, Py_ssize_t k, const floating* b, int act,
                                    floating slope, floating* out, bint row_loops,
                                    const Csr* csr, Team team) noexcept nogil:
    """out (n, k) = act(x (n, d) @ W (d, k) + b (k,)); rows split over the team.

    ``row_loops`` picks the hand-written loops (``csr``: x's nonzeros, or NULL to scan x).
    """
    cdef Py_ssize_t t
    cdef int nt = n_chunks(n * d * k, n, team.size)
    if nt == 1 or not team.parallel:
        for t in range(nt):
            forward_chunk(x, n * t // nt, n * (t + 1) // nt, d, W, k, b, act, slope, out,
                          row_loops, csr)
        return
    for t in prange(nt, num_threads=nt, schedule='static', chunksize=1):
        forward_chunk(x, n * t // nt, n * (t + 1) // nt, d, W, k, b, act, slope, out,
                      row_loops, csr)
