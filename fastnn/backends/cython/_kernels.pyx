# cython: language_level=3
"""Compiled entry points of the Cython backend (called by ``fastnn.backends.cython``).

These functions trust their arguments: ``fastnn.backends._frontend.bind`` (in ``__init__.py``)
checks them first. Each takes typed memoryviews of one float dtype (Cython generates the
float32 and float64 versions from one source) and runs without the GIL. ``None`` is accepted
for ``z_out`` / ``z`` (activations that keep no pre-activation) and ``grad_x_out``.
"""

cimport numpy as cnp
from cython cimport floating
from libc.limits cimport INT_MAX
from libc.stdint cimport int64_t
from libc.stdlib cimport calloc, free, malloc

import numpy as np

from .blas cimport fastnn_dgemm_t, fastnn_own_dgemm, fastnn_own_sgemm, has_own_blas, fastnn_sgemm_t
from .codes cimport compiled_codes, needs_z
from .dense cimport dense_backward_kernel, dense_forward_kernel
from .epoch cimport PROFILE, Epoch, Layer, train_epoch_kernel
from .losses cimport binary_cross_entropy as bce_loss
from .losses cimport mse as mse_loss
from .losses cimport soft_cross_entropy as soft_ce_loss
from .losses cimport softmax_cross_entropy as ce_loss
from .optim cimport adam_range, momentum_range, sgd_range
from .sparse cimport (
    ROW_BLOCK, SMALL_ROWS, SPARSE_PERCENT, Csc, build_csc, count_nonzero, use_loops,
)
from .team cimport (
    STATS, Team, fastnn_fp_supported, fastnn_fp_swap, fastnn_has_openmp,
)

cnp.import_array()

cdef extern from *:
    """
    /* The features the _kernels_v3 build is compiled for (setup.py, V3_FLAGS). */
    static int fastnn_cpu_has_avx2_fma(void) {
    #if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx") && __builtin_cpu_supports("avx2")
            && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi")
            && __builtin_cpu_supports("bmi2");
    #else
        return 0;
    #endif
    }
    """
    int fastnn_cpu_has_avx2_fma() noexcept nogil


def cpu_has_avx2_fma():
    """True when this CPU (and its OS) can run the AVX2 + FMA build ``_kernels_v3``."""
    return bool(fastnn_cpu_has_avx2_fma())


#: Every integer code as compiled in (``codes.pxd``, generated from ``fastnn._codes``), by name;
#: a test compares it with the table, so a stale build fails.
CODES = compiled_codes()
#: The activation codes (of those in ``CODES``) the compiled kernels keep z for.
NEEDS_Z = frozenset(code for code in range(64) if needs_z(code))
#: Length of the timing state ``train_epoch`` carries between calls.
THREAD_STATS = STATS
EPOCH_PROFILE = PROFILE  # parts of a batch in train_epoch's profile (epoch.P_*)
#: Whether this build has OpenMP (without it ``prange`` loops run on one thread).
HAS_OPENMP = bool(fastnn_has_openmp())
#: Whether ``fp_swap`` reaches a floating-point control register (x86-64).
FP_SUPPORTED = bool(fastnn_fp_supported())


def fp_swap(unsigned mode):
    """Set this thread's denormal-flushing bits to ``mode``; return the bits it had."""
    return fastnn_fp_swap(mode)


cdef bint loops_for(const floating* x, Py_ssize_t n, Py_ssize_t d) noexcept nogil:
    # Counting nonzeros costs one pass over x, small next to the n*d*k product it may save.
    return n < SMALL_ROWS or use_loops(n, d, count_nonzero(x, n * d))


cdef check_blas_dims(Py_ssize_t n, Py_ssize_t d, Py_ssize_t k):
    # BLAS products take int dimensions (LP64 BLAS).
    if n > INT_MAX or d > INT_MAX or k > INT_MAX:
        raise ValueError(f"array dimensions ({n}, {d}, {k}) exceed the BLAS int limit")


# The single-batch kernels use no OpenMP team, and scipy's BLAS with the process's threads.
cdef Team SERIAL_TEAM
SERIAL_TEAM.size = 1
SERIAL_TEAM.parallel = False
SERIAL_TEAM.own_blas = False


def set_own_blas(size_t sgemm_address, size_t dgemm_address):
    """Route the epoch's BLAS products to the single-threaded gemm at these addresses (the
    backend's own BLAS handle, ``own_blas.py``); zeros clear it (scipy's BLAS, outside the
    team)."""
    global fastnn_own_sgemm, fastnn_own_dgemm
    if (sgemm_address == 0) != (dgemm_address == 0):
        raise ValueError("set both gemm addresses or neither")
    fastnn_own_sgemm = <fastnn_sgemm_t>sgemm_address
    fastnn_own_dgemm = <fastnn_dgemm_t>dgemm_address


def uses_own_blas():
    """Whether the epoch calls the own single-threaded BLAS handle (split over its team)."""
    return bool(has_own_blas())


# Dense layer -----------------------------------------------------------------------------------
def dense_forward(const floating[:, ::1] x, const floating[:, ::1] W, const floating[::1] b,
                  int act, double alpha, floating[:, ::1] z_out, floating[:, ::1] out):
    """out = act(x @ W + b); z_out = x @ W + b where the activation needs it (else None)."""
    cdef Py_ssize_t n = x.shape[0], d = x.shape[1], k = W.shape[1]
    cdef floating* z = NULL if z_out is None or not needs_z(act) else &z_out[0, 0]
    check_blas_dims(n, d, k)
    with nogil:
        dense_forward_kernel(&x[0, 0], n, d, &W[0, 0], k, &b[0], act, <floating>alpha, z,
                             &out[0, 0], loops_for(&x[0, 0], n, d), NULL, SERIAL_TEAM)


def dense_backward(const floating[:, ::1] x, const floating[:, ::1] W,
                   const floating[:, ::1] z, const floating[:, ::1] a, floating[:, ::1] grad,
                   int act, double alpha, floating[:, ::1] dW_out, floating[::1] db_out,
                   floating[:, ::1] grad_x_out):
    """grad: dL/da -> dL/dz; dW_out, db_out and grad_x_out (unless None) from it."""
    cdef Py_ssize_t n = x.shape[0], d = x.shape[1], k = W.shape[1]
    cdef floating* grad_x = NULL if grad_x_out is None else &grad_x_out[0, 0]
    cdef const floating* zp = NULL
    cdef Csc csc
    cdef bint loops
    cdef Py_ssize_t nnz = n * d
    check_blas_dims(n, d, k)
    if z is not None and needs_z(act):
        zp = &z[0, 0]
    with nogil:
        if n >= SMALL_ROWS:
            nnz = count_nonzero(&x[0, 0], n * d)
        loops = use_loops(n, d, nnz)
    csc.start = <Py_ssize_t*>malloc((d + 1) * sizeof(Py_ssize_t)) if loops else NULL
    csc.end = <Py_ssize_t*>malloc((d + 1) * sizeof(Py_ssize_t)) if loops else NULL
    csc.rows = <int*>malloc((nnz + d + 1) * sizeof(int)) if loops else NULL
    try:
        if loops and (csc.start == NULL or csc.end == NULL or csc.rows == NULL):
            raise MemoryError("no memory for the nonzero pattern of x")
        with nogil:
            if loops:
                build_csc(&x[0, 0], n, d, &csc)
            # W is only written by a fused update, which is off here.
            dense_backward_kernel(&x[0, 0], n, d, <floating*>&W[0, 0], k, zp, &a[0, 0],
                                  &grad[0, 0], act, <floating>alpha, &dW_out[0, 0], &db_out[0],
                                  grad_x, &csc if loops else NULL, NULL, False, 0, SERIAL_TEAM)
    finally:
        free(csc.start)
        free(csc.end)
        free(csc.rows)


# Losses ------------------------------------------------------------------------------------------
def mse(const floating[:, ::1] outputs, const floating[:, ::1] targets,
        floating[:, ::1] grad_out):
    with nogil:
        loss = mse_loss(&outputs[0, 0], &targets[0, 0], &grad_out[0, 0],
                         outputs.shape[0], outputs.shape[1])
    return loss


def softmax_cross_entropy(const floating[:, ::1] outputs, const int64_t[::1] targets,
                          floating[:, ::1] grad_out):
    with nogil:
        loss = ce_loss(&outputs[0, 0], &targets[0], &grad_out[0, 0],
                                           outputs.shape[0], outputs.shape[1])
    return loss


def softmax_cross_entropy_soft(const floating[:, ::1] outputs, const floating[:, ::1] targets,
                               floating[:, ::1] grad_out):
    with nogil:
        loss = soft_ce_loss(&outputs[0, 0], &targets[0, 0], &grad_out[0, 0],
                                        outputs.shape[0], outputs.shape[1], False)
    return loss


def kl_divergence(const floating[:, ::1] outputs, const floating[:, ::1] targets,
                  floating[:, ::1] grad_out):
    with nogil:
        loss = soft_ce_loss(&outputs[0, 0], &targets[0, 0], &grad_out[0, 0],
                                        outputs.shape[0], outputs.shape[1], True)
    return loss


def binary_cross_entropy(const floating[:, ::1] outputs, const floating[:, ::1] targets,
                         floating[:, ::1] grad_out):
    with nogil:
        loss = bce_loss(&outputs[0, 0], &targets[0, 0], &grad_out[0, 0],
                                          outputs.shape[0], outputs.shape[1])
    return loss


# Optimizers ---------------------------------------------------------------------------------------
def sgd_update(floating[::1] param, const floating[::1] grad, double lr, double weight_decay):
    with nogil:
        sgd_range(&param[0], &grad[0], 0, param.shape[0], lr, weight_decay)


def momentum_update(floating[::1] param, const floating[::1] grad, floating[::1] velocity,
                    double lr, double momentum, bint nesterov, double weight_decay):
    with nogil:
        momentum_range(&param[0], &grad[0], &velocity[0], 0, param.shape[0], lr, momentum,
                       nesterov, weight_decay)


def adam_update(floating[::1] param, const floating[::1] grad, floating[::1] m,
                floating[::1] v, double lr, double beta1, double beta2, double eps,
                double weight_decay, Py_ssize_t step):
    with nogil:
        adam_range(&param[0], &grad[0], &m[0], &v[0], 0, param.shape[0], lr, beta1, beta2,
                   eps, weight_decay, step)


# One epoch ----------------------------------------------------------------------------------------
cdef inline void* data(cnp.ndarray a):
    return cnp.PyArray_DATA(a)


def _scratch_sizes(ws):
    # Row loops run for tiny batches (any layer) and for first-layer inputs sparser than
    # SPARSE_PERCENT, so that many nonzeros bound every pattern.
    widths = [int(w.shape[0]) for w in ws.weights]
    max_d, d0, bs = max(widths), widths[0], int(ws.batch_size)
    capacity = max(SMALL_ROWS * max_d, SPARSE_PERCENT * bs * d0 // 100)
    # The first layer's dW pattern gives each feature a slot per row of a block (sparse.pxd).
    block_slots = d0 * (min(bs, ROW_BLOCK) + 1)
    return {
        "csr_ptr": (bs + 1, np.intp), "csr_cols": (capacity + 1, np.intc),
        "csc_start": (max_d + 1, np.intp), "csc_end": (max_d + 1, np.intp),
        "csc_rows": (max(capacity + max_d + 1, block_slots), np.intc), "dirty": (sum(widths) + 1, np.int8),
        "stamp": (d0 + 1, np.intc), "rows": (d0 + 1, np.intc), "before": (d0 + 1, np.intc),
    }


def new_scratch(ws):
    """Scratch buffers for ``train_epoch`` with workspace ``ws``, to reuse call after call.

    Allocating them per call would page-fault ~100 MB afresh every full-batch epoch.
    """
    return {name: np.empty(size, dtype) for name, (size, dtype) in _scratch_sizes(ws).items()}


cdef bind_scratch(Epoch* e, dict scratch):
    """Point the epoch at its scratch buffers (checked against the workspace by the caller)."""
    cdef cnp.ndarray dirty = scratch["dirty"], stamp = scratch["stamp"]
    e.csr.ptr = <Py_ssize_t*>data(scratch["csr_ptr"])
    e.csr.cols = <int*>data(scratch["csr_cols"])
    e.csc.start = <Py_ssize_t*>data(scratch["csc_start"])
    e.csc.end = <Py_ssize_t*>data(scratch["csc_end"])
    e.csc.rows = <int*>data(scratch["csc_rows"])
    # dW may have changed since the last call: any of its rows may be non-zero.
    dirty.fill(1)
    stamp.fill(0)
    e.touched.stamp = <int*>data(stamp)
    e.touched.rows = <int*>data(scratch["rows"])
    e.touched.before = <int*>data(scratch["before"])
    e.touched.n_before, e.touched.batch, e.touched.known = 0, 0, False


def train_epoch(ws, const floating[:, ::1] X, cnp.ndarray targets, const int64_t[::1] order,
                Py_ssize_t batch_size, double[::1] batch_losses, int nthreads,
                double[::1] stats, dict scratch, double[::1] profile=None):
    """Run ``epoch.train_epoch_kernel``; return (losses recorded, optimizer steps taken).

    ``nthreads`` is the team's size; ``stats`` (``team.STATS`` doubles) carries the thread
    timings from call to call; ``scratch`` comes from ``new_scratch(ws)``; ``profile``
    (``epoch.PROFILE`` doubles, or None) adds up the seconds spent in each part of the batches.
    """
    cdef Py_ssize_t l, done, dirty_total = 0
    cdef const double[::1] hyper = ws.hyper
    cdef Epoch e
    cdef Layer* L
    cdef cnp.ndarray dirty = scratch["dirty"]
    if stats.shape[0] != STATS:
        raise ValueError(f"stats must hold {STATS} doubles")
    if profile is not None and profile.shape[0] != PROFILE:
        raise ValueError(f"profile must hold {PROFILE} doubles")
    for name, (size, dtype) in _scratch_sizes(ws).items():
        if scratch[name].shape != (size,) or scratch[name].dtype != dtype:
            raise ValueError("scratch was made for another workspace")
    for l, W in enumerate(ws.weights):
        check_blas_dims(batch_size, W.shape[0], W.shape[1])
        if needs_z(ws.acts[l]) and ws.preacts[l].shape[0] < ws.batch_size:
            raise ValueError(f"layer {l} keeps z: ws.preacts[{l}] needs {ws.batch_size} rows")
    if order.shape[0] == 0:
        return 0, 0
    e.n_layers = ws.n_layers
    e.loss, e.optimizer = ws.loss, ws.optimizer
    e.team.size, e.team.parallel, e.stats = nthreads, False, &stats[0]
    e.team.own_blas = has_own_blas()
    e.hyper = &hyper[0]
    e.x_batch, e.y_batch, e.targets = data(ws.x_batch), data(ws.y_batch), data(targets)
    e.order, e.n_order, e.batch_size = &order[0], order.shape[0], batch_size
    e.losses, e.step = &batch_losses[0], ws.step
    e.profile = &profile[0] if profile is not None else NULL
    bind_scratch(&e, scratch)
    e.layers = <Layer*>calloc(e.n_layers, sizeof(Layer))
    if e.layers == NULL:
        raise MemoryError("no memory for the training workspace")
    try:
        for l in range(e.n_layers):
            L = &e.layers[l]
            L.d, L.k = ws.weights[l].shape[0], ws.weights[l].shape[1]
            L.act, L.alpha = ws.acts[l], ws.alphas[l]
            L.W, L.b = data(ws.weights[l]), data(ws.biases[l])
            # A (0, k) placeholder in preacts: this layer keeps no z.
            L.z = data(ws.preacts[l]) if ws.preacts[l].shape[0] else NULL
            L.out, L.grad = data(ws.outputs[l]), data(ws.grads[l])
            L.dW, L.db = data(ws.dW[l]), data(ws.db[l])
            L.s1w, L.s1b = data(ws.state1_w[l]), data(ws.state1_b[l])
            L.s2w, L.s2b = data(ws.state2_w[l]), data(ws.state2_b[l])
            L.dirty = <char*>data(dirty) + dirty_total
            dirty_total += L.d
        with nogil:
            done = train_epoch_kernel(&e, &X[0, 0])
    finally:
        free(e.layers)
    return done, e.step - ws.step
include "conv_entries.pxi"
