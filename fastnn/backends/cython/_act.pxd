# cython: language_level=3
"""Activations, one row at a time: each forward next to its derivative.

The derivative is written from the activation output ``a`` alone (no pre-activation buffer),
exactly as the reference backend does. Codes are those of ``fastnn._codes`` (checked by a test
through ``_kernels.CODES``).
"""

from cython cimport floating
from libc.math cimport exp, expf, tanh, tanhf


cdef enum:
    IDENTITY = 0
    SIGMOID = 1
    TANH = 2
    RELU = 3
    LEAKY_RELU = 4
    SOFTMAX = 5


cdef inline floating fexp(floating v) noexcept nogil:
    if floating is float:
        return expf(v)
    else:
        return exp(v)


cdef inline floating ftanh(floating v) noexcept nogil:
    if floating is float:
        return tanhf(v)
    else:
        return tanh(v)


cdef inline void bias_act_row(floating* z, const floating* b, Py_ssize_t k, int act,
                              floating slope) noexcept nogil:
    """z = act(z + b) in place for one row of k values (the epilogue of a product)."""
    cdef Py_ssize_t j
    cdef floating v, zmax
    cdef double total = 0.0
    if act == RELU:
        for j in range(k):
            v = z[j] + b[j]
            z[j] = 0 if v < 0 else v  # NaN stays NaN, like np.maximum
    elif act == LEAKY_RELU:
        for j in range(k):
            v = z[j] + b[j]
            z[j] = v if v > 0 else slope * v
    elif act == SIGMOID:
        # The tanh form never overflows, unlike 1 / (1 + exp(-z)).
        for j in range(k):
            z[j] = (ftanh((z[j] + b[j]) * <floating>0.5) + 1) * <floating>0.5
    elif act == TANH:
        for j in range(k):
            z[j] = ftanh(z[j] + b[j])
    elif act == SOFTMAX:
        if k == 0:
            return
        for j in range(k):
            z[j] += b[j]
        zmax = z[0]
        for j in range(1, k):
            if z[j] > zmax:
                zmax = z[j]
        for j in range(k):
            z[j] = fexp(z[j] - zmax)
            total += z[j]
        for j in range(k):
            z[j] /= <floating>total
    else:
        for j in range(k):
            z[j] += b[j]


cdef inline void act_backward_row(const floating* a, floating* g, Py_ssize_t k, int act,
                                  floating slope) noexcept nogil:
    """g = dL/da -> dL/dz in place for one row, from the activation output a."""
    cdef Py_ssize_t j
    cdef double dot = 0.0
    if act == RELU:
        for j in range(k):
            g[j] *= (1 if a[j] > 0 else 0)  # a product, so a NaN gradient stays NaN
    elif act == LEAKY_RELU:
        for j in range(k):
            g[j] *= (1 if a[j] > 0 else slope)
    elif act == SIGMOID:
        for j in range(k):
            g[j] *= a[j] * (1 - a[j])
    elif act == TANH:
        for j in range(k):
            g[j] *= 1 - a[j] * a[j]
    elif act == SOFTMAX:
        # Jacobian-vector product of softmax: dz = a * (g - sum_j g_j a_j).
        for j in range(k):
            dot += g[j] * a[j]
        for j in range(k):
            g[j] = (g[j] - <floating>dot) * a[j]
