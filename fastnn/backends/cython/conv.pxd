# cython: language_level=3
"""2-D convolution on raw NCHW pointers, forward and backward, for both float widths.

Formulas: ``fastnn.backends.numpy.conv`` (the reference). Notation: x (n, C, H, W), W (F, C,
kh, kw) seen as the row-major matrix Wm (F, K) with K = C*kh*kw, P = Ho*Wo output pixels.

Design:

A. im2col in the transposed ("column") layout: the receptive fields of a group of G images
   are the columns of ``cols`` (K, G*P), ``cols[(c, u, v), g*P + y*Wo + x] = xpad[g, c,
   s*y + u, s*x + v]``: each row of it is a strided copy of an input row (a plain loop:
   rows are too short for memcpy calls), padding is clipped, never copied.
B. Forward: one product Wm (F, K) @ cols (K, G*P) per group. For G = 1 BLAS writes straight
   into the NCHW output (F, P) of the image; for G > 1 into ``tmp`` (F, G*P), which the
   output pass copies into NCHW. The bias and activation run in that same pass, per image,
   while it is in cache (``bias_act_row`` over the image's F*P values, the bias expanded to a
   plane once per call: every activation, z where it is kept).
C. Backward, per group: dL/da -> dL/dz in place (``act_backward_row``), db summed and (G > 1)
   the rows copied into ``delta`` (F, G*P) in one pass; dWm += delta @ cols.T (BLAS with a
   transpose flag, no copy); dcols = Wm.T @ delta (K, G*P), folded back by col2im (the adjoint
   of A, row adds) into grad_x unless it is NULL (first layer).
D. Threads (``_kernels.pyx`` picks): the batch is split into chunks of whole images, each with
   its own scratch and its own partial dW and db (summed afterwards, in chunk order, so the
   split alone decides the numbers, never whether chunks ran on threads). Chunks run on the
   OpenMP team with the backend's own single-threaded BLAS, or one after the other with
   scipy's BLAS and its own threads: never both pools at once (DESIGN.md).
"""

from cython cimport floating
from libc.string cimport memcpy, memset

from .activations cimport act_backward_row, bias_act_row
from .blas cimport gemm


cdef struct ConvShape:
    Py_ssize_t C, H, W, F, kh, kw, s, p, Ho, Wo, K, P


cdef inline void tap_range(const ConvShape* g, Py_ssize_t v, Py_ssize_t* x0,
                           Py_ssize_t* x1) noexcept nogil:
    """Output columns x0..x1 whose tap v lands inside the unpadded input row."""
    cdef Py_ssize_t lo = 0, hi
    if g.p > v:
        lo = (g.p - v + g.s - 1) // g.s
    hi = g.W - 1 + g.p - v
    hi = hi // g.s + 1 if hi >= 0 else 0
    x0[0] = lo if lo < g.Wo else g.Wo
    x1[0] = hi if hi < g.Wo else g.Wo
    if x1[0] < x0[0]:
        x1[0] = x0[0]


cdef inline void im2col_image(const floating* x, const ConvShape* g, floating* cols,
                              Py_ssize_t ld) noexcept nogil:
    """One image's receptive fields into the columns of ``cols`` (K rows, row stride ld)."""
    cdef Py_ssize_t c, u, v, y, xo, h, x0, x1
    cdef floating* row
    cdef const floating* src
    for c in range(g.C):
        for u in range(g.kh):
            for v in range(g.kw):
                tap_range(g, v, &x0, &x1)
                row = cols + ((c * g.kh + u) * g.kw + v) * ld
                for y in range(g.Ho):
                    h = y * g.s + u - g.p
                    if h < 0 or h >= g.H:
                        memset(row, 0, g.Wo * sizeof(floating))
                    else:
                        # src[s * xo] is the input pixel of output column xo
                        src = x + (c * g.H + h) * g.W + v - g.p
                        for xo in range(x0):
                            row[xo] = 0
                        if g.s == 1:  # a loop: memcpy calls cost more on rows this short
                            for xo in range(x0, x1):
                                row[xo] = src[xo]
                        else:
                            for xo in range(x0, x1):
                                row[xo] = src[g.s * xo]
                        for xo in range(x1, g.Wo):
                            row[xo] = 0
                    row += g.Wo


cdef inline void col2im_image(const floating* dcols, const ConvShape* g, Py_ssize_t ld,
                              floating* dx) noexcept nogil:
    """dx (C, H, W) = the adjoint of ``im2col_image``: every column entry added to its pixel."""
    cdef Py_ssize_t c, u, v, y, xo, h, x0, x1
    cdef const floating* row
    cdef floating* dst
    memset(dx, 0, g.C * g.H * g.W * sizeof(floating))
    for c in range(g.C):
        for u in range(g.kh):
            for v in range(g.kw):
                tap_range(g, v, &x0, &x1)
                row = dcols + ((c * g.kh + u) * g.kw + v) * ld
                for y in range(g.Ho):
                    h = y * g.s + u - g.p
                    if 0 <= h < g.H:
                        dst = dx + (c * g.H + h) * g.W + v - g.p
                        if g.s == 1:
                            for xo in range(x0, x1):
                                dst[xo] += row[xo]
                        else:
                            for xo in range(x0, x1):
                                dst[g.s * xo] += row[xo]
                    row += g.Wo


cdef inline void forward_chunk(const floating* x, const floating* Wm, const floating* bplane,
                               const ConvShape* g, int act, floating alpha, floating* z,
                               floating* out, Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t G,
                               floating* cols, floating* tmp, bint own) noexcept nogil:
    """Images i0..i1 of out = act(conv(x, W) + b), G images per product (Design B)."""
    cdef Py_ssize_t i = i0, j, f, m, ld
    cdef Py_ssize_t chw = g.C * g.H * g.W, fp = g.F * g.P
    cdef floating* o
    while i < i1:
        m = G if i1 - i > G else i1 - i
        ld = m * g.P
        for j in range(m):
            im2col_image(x + (i + j) * chw, g, cols + j * g.P, ld)
        if m == 1:
            gemm(own, False, False, <int>g.F, <int>g.P, <int>g.K, <floating>1, Wm, <int>g.K,
                 cols, <int>g.P, <floating>0, out + i * fp, <int>g.P)
        else:
            gemm(own, False, False, <int>g.F, <int>ld, <int>g.K, <floating>1, Wm, <int>g.K,
                 cols, <int>ld, <floating>0, tmp, <int>ld)
        for j in range(m):
            o = out + (i + j) * fp
            if m > 1:
                for f in range(g.F):
                    memcpy(o + f * g.P, tmp + f * ld + j * g.P, g.P * sizeof(floating))
            bias_act_row(o, bplane, fp, act, alpha, NULL if z == NULL else z + (i + j) * fp)
        i += m


cdef inline void delta_image(const floating* z, const floating* a, floating* grad,
                             const ConvShape* g, int act, floating alpha, double* db,
                             floating* delta, Py_ssize_t ld) noexcept nogil:
    """One image: grad = dL/da -> dL/dz in place, db += its sums per filter, and (``delta``
    not NULL) its rows copied into the columns of ``delta`` (F rows, row stride ld)."""
    cdef Py_ssize_t f, q, j
    cdef double total
    cdef double acc[8]  # 8 sums in flight: one running sum is a chain of add latencies
    cdef floating* row
    act_backward_row(z, a, grad, g.F * g.P, act, alpha)
    for f in range(g.F):
        row = grad + f * g.P
        for j in range(8):
            acc[j] = 0
        for q in range(0, g.P - 7, 8):
            for j in range(8):
                acc[j] += row[q + j]
        total = 0.0
        for q in range(g.P - g.P % 8, g.P):
            total += row[q]
        for j in range(8):
            total += acc[j]
        db[f] += total
        if delta != NULL:
            memcpy(delta + f * ld, row, g.P * sizeof(floating))


cdef inline void backward_chunk(const floating* x, const floating* Wm, const floating* z,
                                const floating* a, floating* grad, const ConvShape* g, int act,
                                floating alpha, floating* dW, double* db, floating* grad_x,
                                Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t G, floating* cols,
                                floating* delta, floating* dcols, bint own) noexcept nogil:
    """Images i0..i1 of the backward pass (Design C); dW (F, K) and db (F,) get this chunk's
    sums (overwritten)."""
    cdef Py_ssize_t i = i0, j, m, ld
    cdef Py_ssize_t chw = g.C * g.H * g.W, fp = g.F * g.P
    cdef const floating* d
    cdef floating beta = 0
    memset(db, 0, g.F * sizeof(double))
    if i1 <= i0:
        memset(dW, 0, g.F * g.K * sizeof(floating))
    while i < i1:
        m = G if i1 - i > G else i1 - i
        ld = m * g.P
        for j in range(m):
            delta_image(NULL if z == NULL else z + (i + j) * fp, a + (i + j) * fp,
                        grad + (i + j) * fp, g, act, alpha, db,
                        delta + j * g.P if m > 1 else NULL, ld)
            im2col_image(x + (i + j) * chw, g, cols + j * g.P, ld)
        d = delta if m > 1 else grad + i * fp
        gemm(own, False, True, <int>g.F, <int>g.K, <int>ld, <floating>1, d, <int>ld, cols,
             <int>ld, beta, dW, <int>g.K)
        beta = 1
        if grad_x != NULL:
            gemm(own, True, False, <int>g.K, <int>ld, <int>g.F, <floating>1, Wm, <int>g.K, d,
                 <int>ld, <floating>0, dcols, <int>ld)
            for j in range(m):
                col2im_image(dcols + j * g.P, g, ld, grad_x + (i + j) * chw)
        i += m
