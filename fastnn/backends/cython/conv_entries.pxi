# The contract's convolution and pooling entry points (included by _kernels.pyx; they trust
# their arguments: bind's checks ran). Kernels: conv.pxd, pool.pxd.

import threading

from cython.parallel cimport prange

from .conv cimport ConvShape, backward_chunk, forward_chunk
from .pool cimport maxpool2_plane, maxpool_backward_plane, maxpool_plane, unpool_plane
from .team cimport (
    PARALLEL, SERIAL, choose_mode, fastnn_fp_mode, fastnn_fp_swap, fastnn_wtime, n_chunks, record,
)

cdef enum:
    CONV_TEAM = 0         # chunks of images on the OpenMP team, own single-threaded BLAS each
    CONV_BLAS_THREADS = 1  # one chunk on the calling thread, scipy's BLAS with its threads
    CONV_ONE_CORE = 2      # the team's chunks one after the other, own BLAS (to measure)

# Options of the convolution (conv.pxd, Design D); set_conv_options changes them to measure.
cdef int conv_mode = CONV_TEAM
cdef Py_ssize_t conv_group_bytes = 1 << 17  # im2col columns per product, in bytes
cdef bint pool_team = False  # measured: 2.3 ms serial, 13 ms on 2 threads of a busy machine

# Scratch per Python thread and dtype, grown on demand and kept: an epoch allocates nothing
# per batch, and two fits in two threads never share a buffer.
_local = threading.local()
# Per kernel and shape: the team's timings of serial and parallel calls (team.pxd), so that
# threads run only while they pay (they lose badly when another process holds a core).
_stats = {}
_stats_lock = threading.Lock()


cdef double* stats_of(tuple key) except NULL:
    cdef cnp.ndarray stats
    with _stats_lock:
        stats = _stats.get(key)
        if stats is None:
            stats = _stats[key] = np.zeros(STATS)
    return <double*>cnp.PyArray_DATA(stats)


def set_conv_options(mode=None, group_bytes=None, pool_threads=None):
    """Change how the convolutions run (to measure the options); returns the previous ones.

    ``mode``: 0 chunks of the batch on the team with the own BLAS, 1 one chunk with scipy's
    BLAS threads. ``group_bytes``: im2col bytes per BLAS product. ``pool_threads``: pooling
    split over the team.
    """
    global conv_mode, conv_group_bytes, pool_team
    old = (conv_mode, conv_group_bytes, pool_team)
    if mode is not None:
        conv_mode = mode
    if group_bytes is not None:
        conv_group_bytes = group_bytes
    if pool_threads is not None:
        pool_team = pool_threads
    return old


cdef cnp.ndarray scratch_of(str name, object dtype, Py_ssize_t size):
    key = name + "_" + np.dtype(dtype).char
    buf = getattr(_local, key, None)
    if buf is None or buf.shape[0] < size:
        buf = np.empty(max(size, 1), dtype)
        setattr(_local, key, buf)
    return buf


cdef ConvShape conv_shape(Py_ssize_t* xs, Py_ssize_t* ws, Py_ssize_t* outs, int stride,
                          int padding) noexcept:
    cdef ConvShape g
    g.C, g.H, g.W = xs[1], xs[2], xs[3]
    g.F, g.kh, g.kw = ws[0], ws[2], ws[3]
    g.s, g.p = stride, padding
    g.Ho, g.Wo = outs[2], outs[3]
    g.K, g.P = g.C * g.kh * g.kw, g.Ho * g.Wo
    return g


cdef (int, Py_ssize_t) conv_plan(Py_ssize_t n, const ConvShape* g, int nthreads,
                                  Py_ssize_t itemsize):
    """(chunks, images per product): chunks > 1 only on the team with the own BLAS."""
    cdef int nt = 1
    cdef Py_ssize_t per, group
    if conv_mode != CONV_BLAS_THREADS and has_own_blas() and fastnn_has_openmp():
        nt = n_chunks(n * g.F * g.K * g.P, n, nthreads)
    per = (n + nt - 1) // nt
    group = conv_group_bytes // max(1, g.K * g.P * itemsize)
    group = 1 if group < 1 else group
    group = per if group > per else group
    check_blas_dims(g.F, g.K, group * g.P)
    return nt, group


def conv2d_forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] W,
                   const floating[::1] b, int stride, int padding, int act, double alpha,
                   floating[:, :, :, ::1] z_out, floating[:, :, :, ::1] out, int nthreads=1):
    """out = act(conv(x, W) + b) (n, F, Ho, Wo); z_out = conv(x, W) + b where act keeps z."""
    cdef unsigned fp_mode = fastnn_fp_mode(), fp_old  # fpmode: the caller's flushing
    cdef Py_ssize_t n = x.shape[0], f, q, t, per_chunk
    cdef ConvShape g = conv_shape(x.shape, W.shape, out.shape, stride, padding)
    cdef floating* z = NULL if z_out is None or not needs_z(act) else &z_out[0, 0, 0, 0]
    cdef int nt
    cdef Py_ssize_t G
    if n == 0:
        return
    nt, G = conv_plan(n, &g, nthreads, x.itemsize)
    per_chunk = (g.K + (g.F if G > 1 else 0)) * G * g.P
    cdef floating[::1] buf = scratch_of("work", np.float32 if floating is float else np.float64,
                                        g.F * g.P + nt * per_chunk)
    cdef floating* s = &buf[0]
    cdef double* stats = stats_of(("f", g.C, g.H, g.W, g.F, g.kh, g.kw, g.s, g.p, nt))
    cdef int mode = SERIAL
    cdef double t0
    with nogil:
        if nt > 1 and conv_mode == CONV_TEAM:
            mode = choose_mode(stats)
        t0 = fastnn_wtime()
        for f in range(g.F):  # the bias as a plane, for bias_act_row over whole images
            for q in range(g.P):
                s[f * g.P + q] = b[f]
        if mode == PARALLEL:
            for t in prange(nt, num_threads=nt, schedule='static', chunksize=1):
                fp_old = fastnn_fp_swap(fp_mode)
                forward_chunk(&x[0, 0, 0, 0], &W[0, 0, 0, 0], s, &g, act, <floating>alpha, z,
                              &out[0, 0, 0, 0], n * t // nt, n * (t + 1) // nt, G,
                              s + g.F * g.P + t * per_chunk,
                              s + g.F * g.P + t * per_chunk + g.K * G * g.P, True)
                fastnn_fp_swap(fp_old)
        else:
            for t in range(nt):
                forward_chunk(&x[0, 0, 0, 0], &W[0, 0, 0, 0], s, &g, act, <floating>alpha, z,
                              &out[0, 0, 0, 0], n * t // nt, n * (t + 1) // nt, G,
                              s + g.F * g.P + t * per_chunk,
                              s + g.F * g.P + t * per_chunk + g.K * G * g.P, nt > 1)
        if nt > 1 and conv_mode == CONV_TEAM:
            record(stats, mode, fastnn_wtime() - t0, n)

def conv2d_backward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] W,
                    const floating[:, :, :, ::1] z, const floating[:, :, :, ::1] a,
                    floating[:, :, :, ::1] grad, int stride, int padding, int act, double alpha,
                    floating[:, :, :, ::1] dW_out, floating[::1] db_out,
                    floating[:, :, :, ::1] grad_x_out, int nthreads=1):
    """grad: dL/da -> dL/dz; dW_out, db_out and grad_x_out (unless None) from it."""
    cdef unsigned fp_mode = fastnn_fp_mode(), fp_old  # fpmode: the caller's flushing
    cdef Py_ssize_t n = x.shape[0], t, j, per_chunk, fk
    cdef ConvShape g = conv_shape(x.shape, W.shape, a.shape, stride, padding)
    cdef const floating* zp = NULL if z is None or not needs_z(act) else &z[0, 0, 0, 0]
    cdef floating* gx = NULL if grad_x_out is None else &grad_x_out[0, 0, 0, 0]
    cdef int nt
    cdef Py_ssize_t G
    nt, G = conv_plan(n, &g, nthreads, x.itemsize)
    fk = g.F * g.K
    # per chunk: dW part, cols, delta (G > 1), dcols (with grad_x)
    per_chunk = fk + (g.K + (g.F if G > 1 else 0) + (g.K if gx != NULL else 0)) * G * g.P
    cdef floating[::1] buf = scratch_of("work", np.float32 if floating is float else np.float64,
                                        nt * per_chunk)
    cdef double[::1] dbs = scratch_of("sums", np.float64, nt * g.F)
    cdef floating* s = &buf[0]
    cdef double* db = &dbs[0]
    cdef floating* dw = &dW_out[0, 0, 0, 0]
    cdef double total, t0
    cdef double* stats = stats_of(("b", g.C, g.H, g.W, g.F, g.kh, g.kw, g.s, g.p, nt, gx != NULL))
    cdef int mode = SERIAL
    if n == 0:
        dW_out[...] = 0
        db_out[...] = 0
        return
    with nogil:
        if nt > 1 and conv_mode == CONV_TEAM:
            mode = choose_mode(stats)
        t0 = fastnn_wtime()
        if mode == PARALLEL:
            for t in prange(nt, num_threads=nt, schedule='static', chunksize=1):
                fp_old = fastnn_fp_swap(fp_mode)
                conv_backward_part(&x[0, 0, 0, 0], &W[0, 0, 0, 0], zp, &a[0, 0, 0, 0],
                                   &grad[0, 0, 0, 0], &g, act, <floating>alpha, gx,
                                   n * t // nt, n * (t + 1) // nt, G, s + t * per_chunk,
                                   db + t * g.F, True)
                fastnn_fp_swap(fp_old)
        else:
            for t in range(nt):
                conv_backward_part(&x[0, 0, 0, 0], &W[0, 0, 0, 0], zp, &a[0, 0, 0, 0],
                                   &grad[0, 0, 0, 0], &g, act, <floating>alpha, gx,
                                   n * t // nt, n * (t + 1) // nt, G, s + t * per_chunk,
                                   db + t * g.F, nt > 1)
        if nt > 1 and conv_mode == CONV_TEAM:
            record(stats, mode, fastnn_wtime() - t0, n)
        # the chunks' sums in chunk order: the split alone fixes the numbers
        for j in range(fk):
            total = 0
            for t in range(nt):
                total += s[t * per_chunk + j]
            dw[j] = <floating>total
        for j in range(g.F):
            total = 0
            for t in range(nt):
                total += db[t * g.F + j]
            db_out[j] = <floating>total


cdef inline void conv_backward_part(const floating* x, const floating* W, const floating* z,
                                    const floating* a, floating* grad, const ConvShape* g,
                                    int act, floating alpha, floating* gx, Py_ssize_t i0,
                                    Py_ssize_t i1, Py_ssize_t G, floating* s, double* db,
                                    bint own) noexcept nogil:
    """``backward_chunk`` with its scratch laid out from ``s`` (dW part first)."""
    cdef floating* cols = s + g.F * g.K
    cdef floating* delta = cols + g.K * G * g.P
    cdef floating* dcols = delta + (g.F * G * g.P if G > 1 else 0)
    backward_chunk(x, W, z, a, grad, g, act, alpha, s, db, gx, i0, i1, G, cols, delta, dcols,
                   own)


def maxpool2d_forward(const floating[:, :, :, ::1] x, int kernel, int stride,
                      floating[:, :, :, ::1] out, int64_t[:, :, :, ::1] argmax_out,
                      int nthreads=1):
    """out = the maximum of each kernel x kernel window; argmax_out its flat index h*W + w."""
    cdef unsigned fp_mode = fastnn_fp_mode(), fp_old  # fpmode: the caller's flushing
    cdef Py_ssize_t planes = x.shape[0] * x.shape[1], H = x.shape[2], Wd = x.shape[3]
    cdef Py_ssize_t Ho = out.shape[2], Wo = out.shape[3], t, lo, hi
    cdef int nt = n_chunks(planes * H * Wd * 4, planes, nthreads) if pool_team else 1
    if planes == 0:
        return
    with nogil:
        if nt == 1:
            pool_part(&x[0, 0, 0, 0], 0, planes, H, Wd, kernel, stride, Ho, Wo, &out[0, 0, 0, 0],
                      &argmax_out[0, 0, 0, 0])
        else:
            for t in prange(nt, num_threads=nt, schedule='static', chunksize=1):
                fp_old = fastnn_fp_swap(fp_mode)
                pool_part(&x[0, 0, 0, 0], planes * t // nt, planes * (t + 1) // nt, H, Wd,
                          kernel, stride, Ho, Wo, &out[0, 0, 0, 0], &argmax_out[0, 0, 0, 0])
                fastnn_fp_swap(fp_old)


cdef inline void pool_part(const floating* x, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t H,
                           Py_ssize_t W, int k, int s, Py_ssize_t Ho, Py_ssize_t Wo,
                           floating* out, int64_t* arg) noexcept nogil:
    cdef Py_ssize_t c
    for c in range(lo, hi):
        # the branch-free 2x2 loop; the exact one for other windows and planes with a NaN
        if k == 2 and s == 2 and not maxpool2_plane(x + c * H * W, W, Ho, Wo, out + c * Ho * Wo,
                                                    arg + c * Ho * Wo):
            continue
        maxpool_plane(x + c * H * W, H, W, k, s, Ho, Wo, out + c * Ho * Wo, arg + c * Ho * Wo)


def maxpool2d_backward(const floating[:, :, :, ::1] grad, const int64_t[:, :, :, ::1] argmax,
                       floating[:, :, :, ::1] grad_x_out, int nthreads=1):
    """grad_x_out = 0, then each output's gradient added at its window's maximum; returns the
    number of indices outside the plane (skipped; the caller raises)."""
    cdef Py_ssize_t planes = grad.shape[0] * grad.shape[1], c, bad = 0
    cdef Py_ssize_t m = grad.shape[2] * grad.shape[3]
    cdef Py_ssize_t hw = grad_x_out.shape[2] * grad_x_out.shape[3]
    if planes == 0:
        return 0
    with nogil:
        for c in range(planes):
            bad += maxpool_backward_plane(&grad[0, 0, 0, 0] + c * m, &argmax[0, 0, 0, 0] + c * m,
                                          m, &grad_x_out[0, 0, 0, 0] + c * hw, hw)
    return bad


def maxpool2d_unpool(const floating[:, :, :, ::1] a, const floating[:, :, :, ::1] grad,
                     const int64_t[:, :, :, ::1] argmax, floating[:, :, :, ::1] a_conv,
                     floating[:, :, :, ::1] g_conv):
    """a_conv, g_conv (n, F, Ho, Wo): zero, with the pooled a and grad (n, F, Hq, Wq) at each
    argmax; returns the number of indices outside the plane (skipped)."""
    cdef Py_ssize_t planes = a.shape[0] * a.shape[1], c, bad = 0
    cdef Py_ssize_t m = a.shape[2] * a.shape[3]
    cdef Py_ssize_t hw = a_conv.shape[2] * a_conv.shape[3]
    if planes == 0:
        return 0
    with nogil:
        for c in range(planes):
            bad += unpool_plane(&a[0, 0, 0, 0] + c * m, &grad[0, 0, 0, 0] + c * m,
                                &argmax[0, 0, 0, 0] + c * m, m, &a_conv[0, 0, 0, 0] + c * hw,
                                &g_conv[0, 0, 0, 0] + c * hw, hw)
    return bad

