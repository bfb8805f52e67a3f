# cython: language_level=3
"""The whole training epoch in compiled code: no Python, and no GIL, between batches.

For every batch: gather the rows of X and targets named by ``order`` into the workspace
(counting the nonzero inputs of each row on the way), forward through every layer, the loss,
backward from the last layer to the first, then one optimizer step on W0, b0, W1, b1, ... The
first layer's input density picks its path per batch (``sparse.use_loops``), so dense data
keeps BLAS; a sparse batch lists its nonzeros once (``Csr``) for the first layer's forward and
dW (``sparse.weight_grad_split``). The gather, the lists and the first layer's forward run in
blocks of rows over the team. Whether the batch's work runs on threads is measured as the epoch
goes, from whole batches or, for batches of PROBE_BATCH rows or more, from blocks of the
batch's own forward (``team.pxd``); BLAS runs inside the team only through the backend's own
single-threaded handle.

``profile`` (NULL, or PROFILE doubles): seconds added up per part of the batches (``lap``),
for ``benchmarks/cython_profile.py``.

The pre-activation buffer ``z`` of a layer is NULL unless its activation needs it (the
workspace's ``preacts`` then hold a (0, k) placeholder).
"""

from cython cimport floating
from libc.math cimport isfinite
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset

from .codes cimport H_LR, H_WEIGHT_DECAY, LOSS_CROSS_ENTROPY, OPT_SGD
from .dense cimport delta_and_db, dense_backward_kernel, dense_forward_kernel
from .losses cimport loss_by_code
from .optim cimport update_by_code
from cython.parallel cimport prange

from .sparse cimport (
    SMALL_ROWS, Csc, Csr, Touched, build_csc, csr_rows, dw_scatter, use_loops, weight_grad_split,
)
from .team cimport (
    PARALLEL, PROBED, SERIAL, Team, choose_mode, fastnn_fp_mode, fastnn_fp_swap,
    fastnn_has_openmp, fastnn_wtime, n_chunks, record,
)


cdef enum:
    GATHER_COST = 16     # multiply-adds a copied input counts as, for the team's split
    GATHER_BLOCK = 256   # rows per block of the gather and of the nonzero lists
    PROBE_ROWS = 512     # rows per block timed in each thread mode by a large batch
    PROBE_BATCH = 8192   # batches of this many rows or more choose their mode inside


cdef struct Layer:
    Py_ssize_t d
    Py_ssize_t k
    int act
    double alpha
    void* W
    void* b
    void* z          # (bs, k) pre-activation, or NULL where the activation does not need it
    void* out
    void* grad
    void* dW
    void* db
    void* s1w
    void* s1b
    void* s2w
    void* s2b
    char* dirty      # (d,) 1 where the row of dW may be non-zero (``sparse.pxd``)
    bint stepped     # this batch's W update already happened inside backward


cdef struct Epoch:
    Layer* layers
    int n_layers
    int loss
    int optimizer
    Team team        # team.parallel is set batch by batch
    double* stats    # IN/OUT: timings behind that choice (``team.pxd``)
    const double* hyper
    void* x_batch
    void* y_batch
    const void* targets
    const int64_t* order
    Py_ssize_t n_order
    Py_ssize_t batch_size
    double* losses
    Csr csr  # nonzero inputs of the first layer, when its loops run
    Csc csc
    Touched touched  # rows of the first layer's dW written by tiny batches
    Py_ssize_t step  # IN/OUT: optimizer steps taken
    double* profile  # IN/OUT: NULL, or PROFILE seconds added up by part of the batch (``lap``)


cdef enum:
    # Parts of a batch timed into ``Epoch.profile`` (``benchmarks/cython_profile.py``).
    P_GATHER = 0     # gather and the nonzero lists
    P_FORWARD0 = 1   # the first layer's forward
    P_FORWARD = 2    # the other layers' forward and the loss
    P_BACKWARD = 3   # the other layers' backward
    P_DW0 = 4        # the first layer's delta, db and dW (with any fused SGD step)
    P_UPDATE = 5     # the optimizer steps left
    PROFILE = 6


cdef inline double clock(Epoch* e) noexcept nogil:
    """The time now when profiling, else 0."""
    return fastnn_wtime() if e.profile != NULL else 0.0


cdef inline double lap(Epoch* e, int part, double t0) noexcept nogil:
    """Add the seconds since t0 to ``part`` of the profile; return the time now (0: no profile)."""
    cdef double now
    if e.profile == NULL:
        return 0.0
    now = fastnn_wtime()
    e.profile[part] += now - t0
    return now


cdef inline void gather_rows(Epoch* e, const floating* X, Py_ssize_t start, Py_ssize_t lo,
                             Py_ssize_t hi) noexcept nogil:
    """Copy rows lo..hi of the batch and their targets; csr.ptr[r + 1] = nonzeros of row r."""
    cdef Py_ssize_t r, i, src, nnz
    cdef Py_ssize_t d = e.layers[0].d, k = e.layers[e.n_layers - 1].k
    cdef floating* xb = <floating*>e.x_batch
    cdef const floating* xs
    for r in range(lo, hi):
        src = e.order[start + r]
        xs = X + src * d
        nnz = 0
        # One vectorised pass; listing the nonzeros here instead measured slower.
        for i in range(d):
            xb[r * d + i] = xs[i]
            nnz += xs[i] != 0
        e.csr.ptr[r + 1] = nnz
        if e.loss == LOSS_CROSS_ENTROPY:
            (<int64_t*>e.y_batch)[r] = (<const int64_t*>e.targets)[src]
        else:
            memcpy(<floating*>e.y_batch + r * k, <const floating*>e.targets + src * k,
                   k * sizeof(floating))


cdef inline Py_ssize_t row_blocks(Py_ssize_t m, int nt) noexcept nogil:
    """Blocks of about GATHER_BLOCK rows, at least one per thread, for ``prange``'s dynamic
    schedule: a thread slowed by another process then takes fewer of them."""
    return m // GATHER_BLOCK if m // GATHER_BLOCK > nt else nt


cdef inline Py_ssize_t gather(Epoch* e, const floating* X, Py_ssize_t start,
                              Py_ssize_t m) noexcept nogil:
    """Copy the batch's rows of X and targets, blocks of rows over the team; return the number
    of nonzero inputs (``csr.ptr`` then holds the row offsets of the nonzero lists)."""
    cdef unsigned fp_mode = fastnn_fp_mode(), fp_old  # fpmode: the caller's flushing
    cdef Py_ssize_t r, t
    cdef Py_ssize_t d = e.layers[0].d
    cdef int nt = n_chunks(m * d * GATHER_COST, m, e.team.size)
    cdef Py_ssize_t nb = row_blocks(m, nt)
    if nt == 1 or not e.team.parallel:
        gather_rows(e, X, start, 0, m)
    else:
        for t in prange(nb, num_threads=nt, schedule='dynamic', chunksize=1):
            fp_old = fastnn_fp_swap(fp_mode)
            gather_rows(e, X, start, m * t // nb, m * (t + 1) // nb)
            fastnn_fp_swap(fp_old)
    e.csr.ptr[0] = 0
    for r in range(m):
        e.csr.ptr[r + 1] += e.csr.ptr[r]
    return e.csr.ptr[m]


cdef inline void list_nonzeros(Epoch* e, const floating* xb, Py_ssize_t m) noexcept nogil:
    """The batch's ``Csr`` (offsets from ``gather``), blocks of rows over the team."""
    cdef unsigned fp_mode = fastnn_fp_mode(), fp_old  # fpmode: the caller's flushing
    cdef Py_ssize_t t
    cdef Py_ssize_t d = e.layers[0].d
    cdef int nt = n_chunks(m * d * GATHER_COST, m, e.team.size)
    cdef Py_ssize_t nb = row_blocks(m, nt)
    if nt == 1 or not e.team.parallel:
        csr_rows(xb, 0, m, d, &e.csr)
    else:
        for t in prange(nb, num_threads=nt, schedule='dynamic', chunksize=1):
            fp_old = fastnn_fp_swap(fp_mode)
            csr_rows(xb, m * t // nb, m * (t + 1) // nb, d, &e.csr)
            fastnn_fp_swap(fp_old)


cdef inline void forward_first_rows(Epoch* e, const floating* xb, Py_ssize_t lo, Py_ssize_t hi,
                                    bint sparse_input) noexcept nogil:
    """Rows lo..hi of the first layer's forward."""
    cdef Layer* L = &e.layers[0]
    cdef Csr part
    part.ptr, part.cols = e.csr.ptr + lo, e.csr.cols
    dense_forward_kernel(xb + lo * L.d, hi - lo, L.d, <const floating*>L.W, L.k,
                         <const floating*>L.b, L.act, <floating>L.alpha,
                         NULL if L.z == NULL else <floating*>L.z + lo * L.k,
                         <floating*>L.out + lo * L.k, hi - lo < SMALL_ROWS or sparse_input,
                         &part if sparse_input else NULL, e.team)


cdef inline void forward_first_probed(Epoch* e, const floating* xb, Py_ssize_t m,
                                      bint sparse_input) noexcept nogil:
    """The first layer's forward on a large batch, the thread mode chosen on the way: a block
    of PROBE_ROWS rows on one thread, two blocks on the team (the first may wake it up), then
    the rest of the batch, and everything after it, in the faster mode."""
    cdef double t0, t1, t2, t3
    e.team.parallel = False
    t0 = fastnn_wtime()
    forward_first_rows(e, xb, 0, PROBE_ROWS, sparse_input)
    e.team.parallel = True
    t1 = fastnn_wtime()
    forward_first_rows(e, xb, PROBE_ROWS, 2 * PROBE_ROWS, sparse_input)
    t2 = fastnn_wtime()
    forward_first_rows(e, xb, 2 * PROBE_ROWS, 3 * PROBE_ROWS, sparse_input)
    t3 = fastnn_wtime()
    e.team.parallel = (t3 - t2 if t3 - t2 < t2 - t1 else t2 - t1) < t1 - t0
    e.stats[PROBED] = PARALLEL + 1 if e.team.parallel else SERIAL + 1
    forward_first_rows(e, xb, 3 * PROBE_ROWS, m, sparse_input)


cdef inline void backward_and_update(Epoch* e, const floating* xb, Py_ssize_t m,
                                     bint sparse_input) noexcept nogil:
    cdef Py_ssize_t l
    cdef Layer* L
    cdef const floating* x
    cdef bint loops
    cdef bint plain_sgd = e.optimizer == OPT_SGD and e.hyper[H_WEIGHT_DECAY] == 0
    cdef double t = clock(e)
    for l in range(e.n_layers - 1, -1, -1):
        L = &e.layers[l]
        if l == 0:
            t = lap(e, P_BACKWARD, t)
        if l == 0 and m < SMALL_ROWS:
            delta_and_db(<const floating*>L.z, <const floating*>L.out, <floating*>L.grad, m,
                         L.k, L.act, <floating>L.alpha, <floating*>L.db)
            L.stepped = plain_sgd
            dw_scatter(&e.touched, &e.csr, xb, m, L.d, <const floating*>L.grad, L.k,
                       <floating*>L.dW, L.stepped, <floating*>L.W, <floating>e.hyper[H_LR])
            memset(L.dirty, 1, L.d)  # what the by-feature path knew no longer holds
            continue
        if l == 0:
            e.touched.known = False  # the paths below write dW their own way
        if l == 0 and sparse_input:
            delta_and_db(<const floating*>L.z, <const floating*>L.out, <floating*>L.grad, m,
                         L.k, L.act, <floating>L.alpha, <floating*>L.db)
            L.stepped = weight_grad_split(xb, m, L.d, <const floating*>L.grad, L.k, &e.csr,
                                          &e.csc, <floating*>L.dW, L.dirty, <floating*>L.W,
                                          plain_sgd, <floating>e.hyper[H_LR], e.team)
            continue
        x = xb if l == 0 else <const floating*>e.layers[l - 1].out
        loops = m < SMALL_ROWS
        if loops:
            build_csc(x, m, L.d, &e.csc)
        L.stepped = loops and plain_sgd
        dense_backward_kernel(x, m, L.d, <floating*>L.W, L.k, <const floating*>L.z,
                              <const floating*>L.out, <floating*>L.grad, L.act,
                              <floating>L.alpha, <floating*>L.dW, <floating*>L.db,
                              NULL if l == 0 else <floating*>e.layers[l - 1].grad,
                              &e.csc if loops else NULL, L.dirty, L.stepped,
                              <floating>e.hyper[H_LR], e.team)
    t = lap(e, P_DW0, t)
    e.step += 1
    for l in range(e.n_layers):
        L = &e.layers[l]
        if not L.stepped:
            update_by_code(e.optimizer, <floating*>L.W, <const floating*>L.dW,
                           <floating*>L.s1w, <floating*>L.s2w, L.d * L.k, e.hyper, e.step,
                           e.team)
        update_by_code(e.optimizer, <floating*>L.b, <const floating*>L.db, <floating*>L.s1b,
                       <floating*>L.s2b, L.k, e.hyper, e.step, e.team)
    lap(e, P_UPDATE, t)


cdef inline double train_batch(Epoch* e, const floating* X, Py_ssize_t start, Py_ssize_t m,
                               bint probe) noexcept nogil:
    """Gather, forward, loss; then backward and update unless the loss is not finite.

    ``probe``: choose the thread mode inside the batch (``forward_first_probed``).
    """
    cdef floating* xb = <floating*>e.x_batch
    cdef Py_ssize_t l
    cdef Layer* L
    cdef double loss
    cdef double t = clock(e)
    cdef bint sparse_input = use_loops(m, e.layers[0].d, gather(e, X, start, m))
    if sparse_input:
        list_nonzeros(e, xb, m)
    t = lap(e, P_GATHER, t)
    if probe:
        forward_first_probed(e, xb, m, sparse_input)
    else:
        forward_first_rows(e, xb, 0, m, sparse_input)
    t = lap(e, P_FORWARD0, t)
    for l in range(1, e.n_layers):
        L = &e.layers[l]
        dense_forward_kernel(<const floating*>e.layers[l - 1].out, m, L.d,
                             <const floating*>L.W, L.k, <const floating*>L.b, L.act,
                             <floating>L.alpha, <floating*>L.z, <floating*>L.out,
                             m < SMALL_ROWS, NULL, e.team)
    L = &e.layers[e.n_layers - 1]
    loss = loss_by_code(e.loss, <const floating*>L.out, e.y_batch, <floating*>L.grad, m, L.k)
    lap(e, P_FORWARD, t)
    if isfinite(loss):
        backward_and_update(e, xb, m, sparse_input)
    return loss


cdef inline Py_ssize_t train_epoch_kernel(Epoch* e, const floating* X) noexcept nogil:
    """Train on every batch of ``e.order``; return the number of losses recorded.

    Batches of PROBE_BATCH rows or more choose their thread mode inside (``train_batch``) and
    gather their rows in the mode the last such batch chose; smaller ones by the timings of
    whole batches (``team.pxd``).
    """
    cdef Py_ssize_t start = 0, m, done = 0
    cdef bint timed = e.team.size > 1 and fastnn_has_openmp()
    cdef bint probe
    cdef int mode = 0
    cdef double t0 = 0.0
    while start < e.n_order:
        m = e.n_order - start if e.n_order - start < e.batch_size else e.batch_size
        probe = timed and m >= PROBE_BATCH
        if probe:
            e.team.parallel = e.stats[PROBED] != SERIAL + 1
        elif timed:
            mode = choose_mode(e.stats)
            e.team.parallel = mode == PARALLEL
            t0 = fastnn_wtime()
        e.losses[done] = train_batch(e, X, start, m, probe)
        done += 1
        if not isfinite(e.losses[done - 1]):
            break
        if timed and not probe and m == e.batch_size:  # a ragged last batch would skew it
            record(e.stats, mode, fastnn_wtime() - t0, m)
        start += m
    return done
