# cython: language_level=3
"""The zero-skipping loops of a dense layer, the nonzero patterns they walk, and the choice
between them and BLAS.

MNIST pixels are ~81% zeros: the first layer's products need only the nonzero inputs.
``Csr`` lists each row's nonzero features (built once per batch, branch-free), ``Csc`` the rows
where each feature is nonzero (a counting sort, from ``Csr`` or by scanning x). Hidden layers of
tiny batches use the loops as well: there they beat BLAS's call overhead (``use_loops``).

- forward: ``out[r, :] += x[r, i] * W[i, :]`` only for nonzero ``x[r, i]``, in register blocks
  of 64 columns (``rowblock.pxd``, AVX2 builds) and four weight rows per pass over the rest
  of the output row (``forward_loops``; blocks of rows on a dynamic schedule);
- dW of the first layer: one row ``dW[i, :]`` at a time from the samples where feature i is
  nonzero, ROW_BLOCK rows of x per pattern, so each row is written by one thread
  (``weight_grad_split``: groups of features of about equal nonzeros, each chunk building its
  own pattern from the ``Csr``, no reduction and no atomics), with the plain-SGD step of that
  row fused in while it is in L1 (``sgd``) when the batch is one block. Hidden layers of tiny
  batches go through ``weight_grad_loops`` (a whole ``Csc``, features split over the team);
- grad_x of a tiny batch: dot products (``input_grad_loops``);
- dW of a tiny batch (fewer than SMALL_ROWS rows) straight from its ``Csr``, in O(nonzeros)
  (``dw_scatter``).

``dirty`` (one flag per row of dW, as in the numba backend): 1 where that row of dW may be
non-zero, 0 where it is known to be all zeros, so an empty row costs nothing at batch size 1,
where most features are zero in consecutive samples.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memset

from .activations cimport bias_act_row
from .rowblock cimport fastnn_row_blocks_d, fastnn_row_blocks_f
from .team cimport MAX_THREADS, Team, fastnn_fp_mode, fastnn_fp_swap, n_chunks


cdef enum:
    SMALL_ROWS = 8       # batches with fewer rows use the loops
    SPARSE_PERCENT = 30  # inputs with fewer nonzeros than this (in %) use them too
    SCAN_BLOCK = 256     # features scanned for nonzeros per block of the forward loops
    ROW_BLOCK = 256      # rows of x per nonzero pattern in the first layer's dW
    FORWARD_BLOCK = 64   # rows per block of the forward loops, handed to whichever thread is free
    FEATURE_GROUPS = 4   # groups of features per thread in a large batch's dW, likewise
    SUPER_ROWS = 16 * ROW_BLOCK  # rows per parallel region of a large batch's dW


cdef struct Csr:
    # Nonzero inputs by row: the features of row r that are nonzero are
    # cols[ptr[r]:ptr[r + 1]], ascending.
    Py_ssize_t* ptr
    int* cols


cdef struct Csc:
    # Nonzero pattern of a layer input x (n, d), by feature: the samples whose feature i is
    # nonzero are rows[start[i]:end[i]], ascending. rows holds nnz + d entries (one slack slot
    # per feature lets the fill loop write without a branch).
    Py_ssize_t* start
    Py_ssize_t* end
    int* rows


# Patterns ----------------------------------------------------------------------------------
cdef inline Py_ssize_t count_nonzero(const floating* x, Py_ssize_t size) noexcept nogil:
    cdef Py_ssize_t i, nnz = 0
    for i in range(size):
        nnz += x[i] != 0
    return nnz


cdef inline bint use_loops(Py_ssize_t n, Py_ssize_t d, Py_ssize_t nnz) noexcept nogil:
    """The loops-or-BLAS decision, from the batch size and the density of the input."""
    return n < SMALL_ROWS or nnz * 100 < SPARSE_PERCENT * n * d


cdef inline void csr_rows(const floating* x, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t d,
                          Csr* csr) noexcept nogil:
    """Rows lo..hi of the lists, ``csr.ptr`` already filled (``epoch.gather``).

    The branch-free loop writes one slot past each row: the next row's first, which it then
    rewrites; the last row of the range, whose next row another chunk may own, takes a branch.
    """
    cdef Py_ssize_t r, i, nnz
    cdef const floating* xr
    for r in range(lo, hi):
        xr = x + r * d
        nnz = csr.ptr[r]
        if r == hi - 1:
            for i in range(d):
                if xr[i] != 0:
                    csr.cols[nnz] = <int>i
                    nnz += 1
        else:
            for i in range(d):
                csr.cols[nnz] = <int>i
                nnz += xr[i] != 0


cdef inline void build_csc(const floating* x, Py_ssize_t n, Py_ssize_t d, Csc* csc) noexcept nogil:
    """Fill ``csc`` with the nonzero pattern of x (n, d) by feature (a counting sort)."""
    cdef Py_ssize_t r, i, total = 0
    cdef const floating* xr
    cdef Py_ssize_t* start = csc.start
    cdef Py_ssize_t* end = csc.end
    memset(end, 0, d * sizeof(Py_ssize_t))
    for r in range(n):
        xr = x + r * d
        for i in range(d):
            end[i] += xr[i] != 0
    for i in range(d):
        start[i] = total
        total += end[i] + 1  # + 1: the slack slot
        end[i] = start[i]
    for r in range(n):
        xr = x + r * d
        for i in range(d):
            csc.rows[end[i]] = <int>r
            end[i] += xr[i] != 0


# Row updates: the vectorised inner loops -------------------------------------------------------
cdef inline void axpy4(floating* o, Py_ssize_t k, floating a0, const floating* w0, floating a1,
                       const floating* w1, floating a2, const floating* w2, floating a3,
                       const floating* w3) noexcept nogil:
    # Four rows per pass cut the loads and stores of the output row by four.
    cdef Py_ssize_t j
    for j in range(k):
        o[j] += a0 * w0[j] + a1 * w1[j] + a2 * w2[j] + a3 * w3[j]


cdef inline void axpy1(floating* o, Py_ssize_t k, floating a0, const floating* w0) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(k):
        o[j] += a0 * w0[j]


cdef extern from *:
    """
    /* One dW row from one sample and its SGD step, in one pass (batch size 1). Written in C
       and kept out of line: inlined into the whole epoch, GCC spilled its loop's pointers to
       the stack (+10% instructions per MNIST epoch at batch 1, measured with callgrind). */
    #if defined(__GNUC__)
    #define FASTNN_NOINLINE __attribute__((noinline))
    #define FASTNN_RESTRICT __restrict__
    #elif defined(_MSC_VER)
    #define FASTNN_NOINLINE __declspec(noinline)
    #define FASTNN_RESTRICT __restrict
    #else
    #define FASTNN_NOINLINE
    #define FASTNN_RESTRICT
    #endif
    #define FASTNN_ROW_SGD(name, T)                                                       \
        static FASTNN_NOINLINE void name(T *FASTNN_RESTRICT row, T *FASTNN_RESTRICT w,   \
                                         Py_ssize_t k, T v,                              \
                                         const T *FASTNN_RESTRICT delta, T lr) {         \
            Py_ssize_t j;                                                                 \
            for (j = 0; j < k; j++) {                                                     \
                row[j] = v * delta[j];                                                    \
                w[j] -= lr * row[j];                                                      \
            }                                                                             \
        }
    FASTNN_ROW_SGD(fastnn_row_sgd_f, float)
    FASTNN_ROW_SGD(fastnn_row_sgd_d, double)
    """
    void fastnn_row_sgd_f(float* row, float* w, Py_ssize_t k, float v, const float* delta,
                          float lr) noexcept nogil
    void fastnn_row_sgd_d(double* row, double* w, Py_ssize_t k, double v, const double* delta,
                          double lr) noexcept nogil


cdef inline void one_row_sgd(floating* row, floating* Wi, Py_ssize_t k, floating v,
                             const floating* delta, floating lr) noexcept nogil:
    """row = v * delta (a dW row from one sample), then Wi -= lr * row."""
    if floating is float:
        fastnn_row_sgd_f(row, Wi, k, v, delta, lr)
    else:
        fastnn_row_sgd_d(row, Wi, k, v, delta, lr)


# Forward -----------------------------------------------------------------------------------
cdef inline void add_weight_rows(floating* o, Py_ssize_t k, const floating* xr, const int* nz,
                                 Py_ssize_t cnt, const floating* W) noexcept nogil:
    """o += sum_q xr[nz[q]] * W[nz[q], :] over the cnt listed inputs: whole register blocks of
    columns in ``rowblock.pxd`` (where the build has them), the rest here."""
    cdef Py_ssize_t q = 0, c0
    if floating is float:
        c0 = fastnn_row_blocks_f(o, k, xr, nz, cnt, W)
    else:
        c0 = fastnn_row_blocks_d(o, k, xr, nz, cnt, W)
    if c0 == k:
        return
    o += c0
    W += c0
    while q + 4 <= cnt:
        axpy4(o, k - c0, xr[nz[q]], W + nz[q] * k, xr[nz[q + 1]], W + nz[q + 1] * k,
              xr[nz[q + 2]], W + nz[q + 2] * k, xr[nz[q + 3]], W + nz[q + 3] * k)
        q += 4
    while q < cnt:
        axpy1(o, k - c0, xr[nz[q]], W + nz[q] * k)
        q += 1


cdef inline void forward_rows(const floating* x, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t d,
                              const floating* W, Py_ssize_t k, const floating* b, int act,
                              floating alpha, floating* z, floating* out,
                              const Csr* csr) noexcept nogil:
    """Rows lo..hi of act(x @ W + b) (and of z, unless NULL), over the nonzero inputs only.

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
        bias_act_row(o, b, k, act, alpha, NULL if z == NULL else z + r * k)


cdef inline void forward_loops(const floating* x, Py_ssize_t n, Py_ssize_t d, const floating* W,
                               Py_ssize_t k, const floating* b, int act, floating alpha,
                               floating* z, floating* out, const Csr* csr,
                               Team team) noexcept nogil:
    """``forward_rows`` over all n rows, in blocks of about FORWARD_BLOCK rows (at least one
    per thread) that each free thread takes in turn: a thread slowed by another process then
    simply does fewer blocks. Rows are independent, so no split changes a number."""
    cdef unsigned fp_mode = fastnn_fp_mode(), fp_old  # fpmode: the caller's flushing
    cdef Py_ssize_t t, nb
    cdef int nt = n_chunks(n * d * k, n, team.size)
    if nt == 1 or not team.parallel:
        forward_rows(x, 0, n, d, W, k, b, act, alpha, z, out, csr)
        return
    nb = n // FORWARD_BLOCK if n // FORWARD_BLOCK > nt else nt
    for t in prange(nb, num_threads=nt, schedule='dynamic', chunksize=1):
        fp_old = fastnn_fp_swap(fp_mode)
        forward_rows(x, n * t // nb, n * (t + 1) // nb, d, W, k, b, act, alpha, z, out, csr)
        fastnn_fp_swap(fp_old)


# grad_x --------------------------------------------------------------------------------------
cdef inline void input_grad_loops(const floating* delta, Py_ssize_t lo, Py_ssize_t hi,
                                  Py_ssize_t k, const floating* W, Py_ssize_t d,
                                  floating* grad_x) noexcept nogil:
    """Rows lo..hi of grad_x (n, d) = delta (n, k) @ W.T, one dot product of length k each
    (tiny batches, where a BLAS call costs more than the work)."""
    cdef Py_ssize_t r, i, j
    cdef floating acc
    cdef const floating* dr
    cdef const floating* wi
    for r in range(lo, hi):
        dr = delta + r * k
        for i in range(d):
            wi = W + i * k
            acc = 0
            for j in range(k):
                acc += dr[j] * wi[j]
            grad_x[r * d + i] = acc


# dW ------------------------------------------------------------------------------------------
cdef inline void weight_grad_rows(Py_ssize_t f0, Py_ssize_t f1, const floating* x,
                                  Py_ssize_t d, const floating* delta, Py_ssize_t k,
                                  const Csc* csc, floating* dW, char* dirty, floating* W,
                                  bint sgd, floating lr, bint accumulate) noexcept nogil:
    """Rows f0..f1 of dW (+)= x.T @ delta, from the samples where each feature is nonzero.

    ``dirty`` (NULL: every row may be non-zero) is read and kept up to date. ``sgd`` also
    applies ``W[i, :] -= lr * dW[i, :]``; ``accumulate`` adds to dW (the later row blocks of
    a large batch) instead.
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
            if dirty == NULL:
                memset(row, 0, k * sizeof(floating))
            elif dirty[i]:
                memset(row, 0, k * sizeof(floating))
                dirty[i] = 0
            continue  # a zero gradient row leaves W unchanged under plain SGD
        if hi - lo == 1 and sgd and not accumulate:
            # One sample (batch size 1): gradient row and update in a single pass.
            r0 = csc.rows[lo]
            one_row_sgd(row, W + i * k, k, x[r0 * d + i], delta + r0 * k, lr)
            if dirty != NULL:
                dirty[i] = 1
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
        if dirty != NULL:
            dirty[i] = 1
        if sgd:
            for j in range(k):
                W[i * k + j] -= lr * row[j]


cdef inline void weight_grad_loops(const floating* x, Py_ssize_t n, Py_ssize_t d,
                                   const floating* delta, Py_ssize_t k, const Csc* csc,
                                   floating* dW, char* dirty, floating* W, bint sgd, floating lr,
                                   bint accumulate, Team team) noexcept nogil:
    """dW (+)= x.T @ delta through the pattern; features split by equal numbers of nonzeros."""
    cdef unsigned fp_mode = fastnn_fp_mode(), fp_old  # fpmode: the caller's flushing
    cdef Py_ssize_t bounds[MAX_THREADS + 1]
    cdef Py_ssize_t i, t, total
    cdef int nt
    total = csc.end[d - 1] + 1 if d > 0 else 0  # nonzeros + slack slots
    nt = n_chunks((total - d) * k, d, team.size)
    if nt == 1 or not team.parallel:  # each row of dW is computed alike in any chunk
        weight_grad_rows(0, d, x, d, delta, k, csc, dW, dirty, W, sgd, lr, accumulate)
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
        fp_old = fastnn_fp_swap(fp_mode)
        weight_grad_rows(bounds[t], bounds[t + 1], x, d, delta, k, csc, dW, dirty, W, sgd, lr,
                         accumulate)
        fastnn_fp_swap(fp_old)


cdef inline Py_ssize_t first_at_least(const int* cols, Py_ssize_t lo, Py_ssize_t hi,
                                      int f) noexcept nogil:
    """The first q in lo..hi with cols[q] >= f (cols ascending), else hi."""
    cdef Py_ssize_t mid
    while lo < hi:
        mid = (lo + hi) // 2
        if cols[mid] < f:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline void feature_bounds(const Csr* csr, Py_ssize_t rows, Py_ssize_t d, int nt,
                                Py_ssize_t* count, Py_ssize_t* bounds) noexcept nogil:
    """Split the d features into nt ranges of about equal nonzeros in the first ``rows`` rows
    (``count``: d scratch slots)."""
    cdef Py_ssize_t q, i, t = 1, seen = 0, total = csr.ptr[rows] - csr.ptr[0]
    bounds[0] = 0
    bounds[nt] = d
    if nt == 1:
        return
    memset(count, 0, d * sizeof(Py_ssize_t))
    for q in range(csr.ptr[0], csr.ptr[rows]):
        count[csr.cols[q]] += 1
    bounds[0] = 0
    for i in range(d):
        while t < nt and seen * nt >= total * t:
            bounds[t] = i
            t += 1
        seen += count[i]
    while t <= nt:
        bounds[t] = d
        t += 1


cdef inline void weight_grad_features(Py_ssize_t f0, Py_ssize_t f1, Py_ssize_t lo,
                                      Py_ssize_t hi, const floating* x, Py_ssize_t m,
                                      Py_ssize_t d, const floating* delta, Py_ssize_t k,
                                      const Csr* csr, const Csc* csc, floating* dW, char* dirty,
                                      floating* W, bint sgd, floating lr) noexcept nogil:
    """Rows f0..f1 of dW (+)= x[lo:hi].T @ delta[lo:hi] (lo a multiple of ROW_BLOCK; the
    sum starts at row 0), ROW_BLOCK rows at a time, each block through this chunk's own
    by-feature pattern.

    The pattern gives feature i the slots i * stride ... (stride = rows per block + 1) of
    ``csc.rows``: no counting pass, and chunks of features never share a slot. The fused SGD
    step needs the whole sum, so it runs only when the batch is one block.
    """
    cdef Py_ssize_t r, r0 = lo, r1, q, end, i
    cdef Py_ssize_t stride = (ROW_BLOCK if m > ROW_BLOCK else m) + 1
    cdef Csc own
    own.start, own.end, own.rows = csc.start, csc.end, csc.rows
    for i in range(f0, f1):
        own.start[i] = i * stride
    while r0 < hi:
        r1 = r0 + ROW_BLOCK if r0 + ROW_BLOCK < hi else hi
        for i in range(f0, f1):
            own.end[i] = own.start[i]
        for r in range(r0, r1):
            end = csr.ptr[r + 1]
            q = csr.ptr[r] if f0 == 0 else first_at_least(csr.cols, csr.ptr[r], end, <int>f0)
            while q < end and csr.cols[q] < f1:
                i = csr.cols[q]
                own.rows[own.end[i]] = <int>(r - r0)
                own.end[i] += 1
                q += 1
        weight_grad_rows(f0, f1, x + r0 * d, d, delta + r0 * k, k, &own, dW, dirty, W,
                         sgd and m <= ROW_BLOCK, lr, r0 > 0)
        r0 = r1


cdef inline bint weight_grad_split(const floating* x, Py_ssize_t m, Py_ssize_t d,
                                   const floating* delta, Py_ssize_t k, const Csr* csr,
                                   const Csc* csc, floating* dW, char* dirty, floating* W,
                                   bint sgd, floating lr, Team team) noexcept nogil:
    """dW = x.T @ delta of a sparse first layer from its ``Csr``; return whether W was
    stepped (``sgd``, one block only).

    On threads: SUPER_ROWS rows at a time (their deltas stay in cache), features split into
    groups of about equal nonzeros, taken in turn by whichever thread is free. On one thread:
    all features, block after block. Each dW row is summed over the same blocks in the same
    order either way (one chunk owns it): any split and either mode give the same numbers.
    """
    cdef unsigned fp_mode = fastnn_fp_mode(), fp_old  # fpmode: the caller's flushing
    cdef Py_ssize_t bounds[FEATURE_GROUPS * MAX_THREADS + 1]
    cdef Py_ssize_t g, s0 = 0, s1
    cdef int nt = n_chunks((csr.ptr[m] - csr.ptr[0]) * k, d, team.size)
    cdef int ng = nt * FEATURE_GROUPS if m > ROW_BLOCK else nt
    if nt == 1 or not team.parallel:
        weight_grad_features(0, d, 0, m, x, m, d, delta, k, csr, csc, dW, dirty, W, sgd, lr)
        return sgd and m <= ROW_BLOCK
    feature_bounds(csr, m if m < ROW_BLOCK else ROW_BLOCK, d, ng, csc.end, bounds)
    while s0 < m:
        s1 = s0 + SUPER_ROWS if s0 + SUPER_ROWS < m else m
        for g in prange(ng, num_threads=nt, schedule='dynamic', chunksize=1):
            fp_old = fastnn_fp_swap(fp_mode)
            weight_grad_features(bounds[g], bounds[g + 1], s0, s1, x, m, d, delta, k, csr,
                                 csc, dW, dirty, W, sgd, lr)
            fastnn_fp_swap(fp_old)
        s0 = s1
    return sgd and m <= ROW_BLOCK


# dW of tiny batches, from the rows' nonzeros -------------------------------------------------
cdef struct Touched:
    # At batch size 1 an MNIST sample has ~150 nonzero pixels of 784, so its dW has ~150
    # nonzero rows: visiting all 784 features per sample (the by-feature pattern) costs about as
    # much as the products. So the rows are written from the batch's ``Csr`` and the rows the
    # previous batch wrote but this one does not are set back to zero, found through a stamp
    # per feature (measured: 0.41 -> 0.29 s per MNIST epoch at batch size 1).
    int* stamp          # (d,) number of the batch that last wrote each row of dW
    int* rows           # (d,) rows of dW the current batch writes
    int* before         # (d,) rows of dW the previous batch wrote
    Py_ssize_t n_before
    int batch           # number of the current batch
    bint known          # False: rows outside ``before`` may hold anything (at the start, or
                        # after another path wrote dW)


cdef inline void dw_scatter(Touched* t, const Csr* csr, const floating* x, Py_ssize_t m,
                            Py_ssize_t d, const floating* delta, Py_ssize_t k, floating* dW,
                            bint sgd, floating* W, floating lr) noexcept nogil:
    """dW (d, k) = x.T @ delta for m < SMALL_ROWS rows, then ``W -= lr dW`` if ``sgd``."""
    cdef Py_ssize_t q, r, i, j, n = 0
    cdef int* swap
    t.batch += 1
    for q in range(csr.ptr[0], csr.ptr[m]):
        i = csr.cols[q]
        if t.stamp[i] != t.batch:
            t.stamp[i] = t.batch
            t.rows[n] = <int>i
            n += 1
    if t.known:
        for q in range(t.n_before):
            i = t.before[q]
            if t.stamp[i] != t.batch:
                memset(dW + i * k, 0, k * sizeof(floating))
    else:
        for i in range(d):
            if t.stamp[i] != t.batch:
                memset(dW + i * k, 0, k * sizeof(floating))
    if m == 1 and sgd:
        for q in range(csr.ptr[0], csr.ptr[1]):
            i = csr.cols[q]
            one_row_sgd(dW + i * k, W + i * k, k, x[i], delta, lr)
    else:
        for q in range(n):
            memset(dW + t.rows[q] * k, 0, k * sizeof(floating))
        for r in range(m):
            for q in range(csr.ptr[r], csr.ptr[r + 1]):
                i = csr.cols[q]
                axpy1(dW + i * k, k, x[r * d + i], delta + r * k)
        if sgd:
            for q in range(n):
                i = t.rows[q]
                for j in range(k):
                    W[i * k + j] -= lr * dW[i * k + j]
    swap = t.before
    t.before = t.rows
    t.rows = swap
    t.n_before = n
    t.known = True
