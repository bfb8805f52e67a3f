# cython: language_level=3
"""The whole training epoch in compiled code: no Python, and no GIL, between batches.

For every batch: gather the rows of X and targets named by ``order`` into the workspace
(counting the nonzero inputs on the way), forward through every layer, the loss, backward from
the last layer to the first, then one optimizer step on W0, b0, W1, b1, ... The first layer's
input density picks its path per batch (``sparse.use_loops``), so dense data keeps BLAS; a
sparse batch lists its nonzeros once (``Csr``) for the first layer's forward and dW. Whether
the batch's loops run on threads is measured as the epoch goes (``team.pxd``); BLAS products
never run inside the team.

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
from .sparse cimport (
    SMALL_ROWS, Csc, Csr, Touched, build_csc, build_csr, csc_from_csr, dw_scatter, use_loops,
    weight_grad_loops,
)
from .team cimport PARALLEL, Team, choose_mode, fastnn_has_openmp, fastnn_wtime, record


cdef enum:
    ROW_BLOCK = 256  # rows of a large sparse batch per nonzero pattern in the first layer's dW


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


cdef inline Py_ssize_t gather(Epoch* e, const floating* X, Py_ssize_t start,
                              Py_ssize_t m) noexcept nogil:
    """Copy the batch's rows of X and targets; return the number of nonzero inputs."""
    cdef Py_ssize_t r, i, src, nnz = 0
    cdef Py_ssize_t d = e.layers[0].d, k = e.layers[e.n_layers - 1].k
    cdef floating* xb = <floating*>e.x_batch
    cdef const floating* xs
    for r in range(m):
        src = e.order[start + r]
        xs = X + src * d
        # One vectorised pass; listing the nonzeros here instead measured slower.
        for i in range(d):
            xb[r * d + i] = xs[i]
            nnz += xs[i] != 0
        if e.loss == LOSS_CROSS_ENTROPY:
            (<int64_t*>e.y_batch)[r] = (<const int64_t*>e.targets)[src]
        else:
            memcpy(<floating*>e.y_batch + r * k, <const floating*>e.targets + src * k,
                   k * sizeof(floating))
    return nnz


cdef inline void backward_first_blocks(Epoch* e, const floating* xb, Py_ssize_t m) noexcept nogil:
    """dW, db of a sparse first layer on a large batch, ROW_BLOCK rows of x at a time.

    Row blocks keep the rows of x and delta that one block reads in cache (a whole-batch
    pattern reads them in random order from memory). Updates are not fused.
    """
    cdef Layer* L = &e.layers[0]
    cdef floating* grad = <floating*>L.grad
    cdef Py_ssize_t r0 = 0, r1
    delta_and_db(<const floating*>L.z, <const floating*>L.out, grad, m, L.k, L.act,
                 <floating>L.alpha, <floating*>L.db)
    L.stepped = False
    while r0 < m:
        r1 = r0 + ROW_BLOCK if r0 + ROW_BLOCK < m else m
        csc_from_csr(&e.csr, r0, r1, L.d, &e.csc)
        weight_grad_loops(xb + r0 * L.d, r1 - r0, L.d, grad + r0 * L.k, L.k, &e.csc,
                          <floating*>L.dW, L.dirty, <floating*>L.W, False, 0, r0 > 0, e.team)
        r0 = r1


cdef inline void backward_and_update(Epoch* e, const floating* xb, Py_ssize_t m,
                                     bint sparse_input) noexcept nogil:
    cdef Py_ssize_t l
    cdef Layer* L
    cdef const floating* x
    cdef bint loops
    cdef bint plain_sgd = e.optimizer == OPT_SGD and e.hyper[H_WEIGHT_DECAY] == 0
    for l in range(e.n_layers - 1, -1, -1):
        L = &e.layers[l]
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
        if l == 0 and sparse_input and m > ROW_BLOCK:
            backward_first_blocks(e, xb, m)
            continue
        x = xb if l == 0 else <const floating*>e.layers[l - 1].out
        loops = m < SMALL_ROWS or (l == 0 and sparse_input)
        if loops and l == 0:
            csc_from_csr(&e.csr, 0, m, L.d, &e.csc)
        elif loops:
            build_csc(x, m, L.d, &e.csc)
        L.stepped = loops and plain_sgd
        dense_backward_kernel(x, m, L.d, <floating*>L.W, L.k, <const floating*>L.z,
                              <const floating*>L.out, <floating*>L.grad, L.act,
                              <floating>L.alpha, <floating*>L.dW, <floating*>L.db,
                              NULL if l == 0 else <floating*>e.layers[l - 1].grad,
                              &e.csc if loops else NULL, L.dirty, L.stepped,
                              <floating>e.hyper[H_LR], e.team)
    e.step += 1
    for l in range(e.n_layers):
        L = &e.layers[l]
        if not L.stepped:
            update_by_code(e.optimizer, <floating*>L.W, <const floating*>L.dW,
                           <floating*>L.s1w, <floating*>L.s2w, L.d * L.k, e.hyper, e.step,
                           e.team)
        update_by_code(e.optimizer, <floating*>L.b, <const floating*>L.db, <floating*>L.s1b,
                       <floating*>L.s2b, L.k, e.hyper, e.step, e.team)


cdef inline double train_batch(Epoch* e, const floating* X, Py_ssize_t start,
                               Py_ssize_t m) noexcept nogil:
    """Gather, forward, loss; then backward and update unless the loss is not finite."""
    cdef floating* xb = <floating*>e.x_batch
    cdef const floating* x = xb
    cdef Py_ssize_t l
    cdef Layer* L
    cdef double loss
    cdef bint sparse_input = use_loops(m, e.layers[0].d, gather(e, X, start, m))
    if sparse_input:
        build_csr(xb, m, e.layers[0].d, &e.csr)
    for l in range(e.n_layers):
        L = &e.layers[l]
        dense_forward_kernel(x, m, L.d, <const floating*>L.W, L.k, <const floating*>L.b,
                             L.act, <floating>L.alpha, <floating*>L.z, <floating*>L.out,
                             m < SMALL_ROWS or (l == 0 and sparse_input),
                             &e.csr if l == 0 and sparse_input else NULL, e.team)
        x = <const floating*>L.out
    L = &e.layers[e.n_layers - 1]
    loss = loss_by_code(e.loss, x, e.y_batch, <floating*>L.grad, m, L.k)
    if isfinite(loss):
        backward_and_update(e, xb, m, sparse_input)
    return loss


cdef inline Py_ssize_t train_epoch_kernel(Epoch* e, const floating* X) noexcept nogil:
    """Train on every batch of ``e.order``; return the number of losses recorded."""
    cdef Py_ssize_t start = 0, m, done = 0
    cdef bint timed = e.team.size > 1 and fastnn_has_openmp()
    cdef int mode = 0
    cdef double t0 = 0.0
    while start < e.n_order:
        m = e.n_order - start if e.n_order - start < e.batch_size else e.batch_size
        if timed:
            mode = choose_mode(e.stats)
            e.team.parallel = mode == PARALLEL
            t0 = fastnn_wtime()
        e.losses[done] = train_batch(e, X, start, m)
        done += 1
        if not isfinite(e.losses[done - 1]):
            break
        if timed and m == e.batch_size:  # a ragged last batch would skew seconds per row
            record(e.stats, mode, fastnn_wtime() - t0, m)
        start += m
    return done
