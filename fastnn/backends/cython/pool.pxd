# cython: language_level=3
"""Max pooling on raw NCHW pointers, one (H, W) plane at a time, for both float widths.

Formulas: ``fastnn.backends.numpy.conv`` (the reference): the maximum of each window, the first
one on ties, and a NaN beats any number (as ``np.argmax``); ``argmax`` holds the flat index
``h * W + w`` of the winner in its plane. Backward zeroes the input gradient and adds each
output's gradient at its winner (windows may overlap when stride < kernel).
"""

from cython cimport floating
from libc.stdint cimport int64_t
from libc.string cimport memset


cdef inline void maxpool_plane(const floating* x, Py_ssize_t H, Py_ssize_t W, Py_ssize_t k,
                               Py_ssize_t s, Py_ssize_t Ho, Py_ssize_t Wo, floating* out,
                               int64_t* arg) noexcept nogil:
    cdef Py_ssize_t y, xo, u, v, idx, best_idx
    cdef floating best, val
    for y in range(Ho):
        for xo in range(Wo):
            best_idx = y * s * W + xo * s
            best = x[best_idx]
            for u in range(k):
                for v in range(k):
                    idx = (y * s + u) * W + xo * s + v
                    val = x[idx]
                    # strictly greater keeps the first maximum; the first NaN wins for good
                    if val > best or (val != val and best == best):
                        best = val
                        best_idx = idx
            out[y * Wo + xo] = best
            arg[y * Wo + xo] = best_idx


cdef inline bint maxpool2_plane(const floating* x, Py_ssize_t W, Py_ssize_t Ho, Py_ssize_t Wo,
                                floating* out, int64_t* arg) noexcept nogil:
    """The 2x2, stride 2 case (every CNN here) without branches (random data mispredicts
    half of them: ~3x slower): max as a select, the index by arithmetic, the first maximum
    kept. Returns whether the plane holds a NaN: the caller then redoes it exactly."""
    cdef Py_ssize_t y, xo, i0, i
    cdef floating best, a, b, c, d
    cdef int t, nan = 0
    for y in range(Ho):
        for xo in range(Wo):
            i0 = 2 * y * W + 2 * xo
            a, b, c, d = x[i0], x[i0 + 1], x[i0 + W], x[i0 + W + 1]
            nan |= (a != a) | (b != b) | (c != c) | (d != d)
            best, i = a, i0
            t = b > best
            best = b if t else best
            i += t * (i0 + 1 - i)
            t = c > best
            best = c if t else best
            i += t * (i0 + W - i)
            t = d > best
            best = d if t else best
            i += t * (i0 + W + 1 - i)
            out[y * Wo + xo] = best
            arg[y * Wo + xo] = i
    return nan


cdef inline Py_ssize_t maxpool_backward_plane(const floating* grad, const int64_t* arg,
                                              Py_ssize_t m, floating* dx,
                                              Py_ssize_t hw) noexcept nogil:
    """Returns the number of indices outside the plane, skipped: checked here, in the one pass
    that reads them, where a separate min()/max() read the whole array again."""
    cdef Py_ssize_t q, bad = 0
    memset(dx, 0, hw * sizeof(floating))
    for q in range(m):
        if 0 <= arg[q] < hw:
            dx[arg[q]] += grad[q]
        else:
            bad += 1
    return bad


cdef inline Py_ssize_t unpool_plane(const floating* a, const floating* grad, const int64_t* arg,
                                    Py_ssize_t m, floating* a_conv, floating* g_conv,
                                    Py_ssize_t hw) noexcept nogil:
    """a_conv, g_conv (hw,) = zero, with a and grad (m,) at each window's maximum (gradients
    of overlapping windows add up); returns the indices outside the plane, skipped."""
    cdef Py_ssize_t q, bad = 0
    memset(a_conv, 0, hw * sizeof(floating))
    memset(g_conv, 0, hw * sizeof(floating))
    for q in range(m):
        if 0 <= arg[q] < hw:
            a_conv[arg[q]] = a[q]
            g_conv[arg[q]] += grad[q]
        else:
            bad += 1
    return bad

