# cython: language_level=3
"""Activations, one row at a time: each forward next to its derivative.

As in the reference backend (``fastnn.backends.numpy.activations``), the derivative is written
from the activation output ``a`` where ``a`` determines it (no extra buffer); GELU, its tanh
approximation and SiLU need the pre-activation ``z`` (``codes.needs_z``), and only for those
the forward pass stores ``z`` in a caller-owned buffer. ``alpha`` is the activation parameter
(leaky ReLU's negative slope, ELU's alpha); the others ignore it.
"""

from cython cimport floating
from libc.math cimport erf, erff, exp, expf, expm1, expm1f, tanh, tanhf

from .codes cimport (
    ELU, GELU, GELU_TANH, LEAKY_RELU, RELU, SIGMOID, SILU, SOFTMAX, TANH, needs_z,
)


cdef extern from *:
    """
    #define FASTNN_SQRT_HALF 0.70710678118654752440       /* 1 / sqrt(2) */
    #define FASTNN_SQRT_2_OVER_PI 0.79788456080286535588  /* sqrt(2 / pi) */
    #define FASTNN_INV_SQRT_2PI 0.39894228040143267794    /* 1 / sqrt(2 pi) */
    #define FASTNN_GELU_CUBIC 0.044715
    """
    const double SQRT_HALF "FASTNN_SQRT_HALF"
    const double SQRT_2_OVER_PI "FASTNN_SQRT_2_OVER_PI"
    const double INV_SQRT_2PI "FASTNN_INV_SQRT_2PI"
    const double GELU_CUBIC "FASTNN_GELU_CUBIC"


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


cdef inline floating ferf(floating v) noexcept nogil:
    if floating is float:
        return erff(v)
    else:
        return erf(v)


cdef inline floating fexpm1(floating v) noexcept nogil:
    if floating is float:
        return expm1f(v)
    else:
        return expm1(v)


cdef inline floating sigmoid(floating v) noexcept nogil:
    # The tanh form never overflows, unlike 1 / (1 + exp(-z)).
    return (ftanh(v * <floating>0.5) + 1) * <floating>0.5


cdef inline floating gelu_tanh_t(floating v) noexcept nogil:
    """t = tanh(sqrt(2/pi) (z + 0.044715 z^3)) of the tanh-approximate GELU."""
    return ftanh(<floating>SQRT_2_OVER_PI * (v + <floating>GELU_CUBIC * v * v * v))


cdef inline void softmax_row(floating* o, const floating* b, Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t j
    cdef floating zmax
    cdef double total = 0.0
    if k == 0:
        return
    for j in range(k):
        o[j] += b[j]
    zmax = o[0]
    for j in range(1, k):
        if o[j] > zmax:
            zmax = o[j]
    for j in range(k):
        o[j] = fexp(o[j] - zmax)
        total += o[j]
    for j in range(k):
        o[j] /= <floating>total


cdef inline void preact_row(floating* o, const floating* b, Py_ssize_t k, int act,
                                floating* z) noexcept nogil:
    """The activations that keep z: z = o + b, then o = act(z)."""
    cdef Py_ssize_t j
    cdef floating v
    if act == GELU:
        for j in range(k):
            v = o[j] + b[j]
            z[j] = v
            o[j] = <floating>0.5 * v * (1 + ferf(v * <floating>SQRT_HALF))
    elif act == GELU_TANH:
        for j in range(k):
            v = o[j] + b[j]
            z[j] = v
            o[j] = <floating>0.5 * v * (1 + gelu_tanh_t(v))
    elif act == SILU:
        for j in range(k):
            v = o[j] + b[j]
            z[j] = v
            o[j] = v * sigmoid(v)


cdef inline void bias_act_row(floating* o, const floating* b, Py_ssize_t k, int act,
                              floating alpha, floating* z) noexcept nogil:
    """o = act(o + b) in place for one row of k values (the epilogue of a product).

    ``z`` is the row of the pre-activation buffer for the activations that need it
    (``codes.needs_z``: it receives o + b), else unused (NULL).
    """
    cdef Py_ssize_t j
    cdef floating v
    if act == RELU:
        for j in range(k):
            v = o[j] + b[j]
            o[j] = 0 if v < 0 else v  # NaN stays NaN, like np.maximum
    elif act == LEAKY_RELU:
        for j in range(k):
            v = o[j] + b[j]
            o[j] = v if v > 0 else alpha * v
    elif act == SIGMOID:
        for j in range(k):
            o[j] = sigmoid(o[j] + b[j])
    elif act == TANH:
        for j in range(k):
            o[j] = ftanh(o[j] + b[j])
    elif act == ELU:
        for j in range(k):
            v = o[j] + b[j]
            o[j] = v if v > 0 else alpha * fexpm1(v)
    elif act == SOFTMAX:
        softmax_row(o, b, k)
    elif needs_z(act):
        preact_row(o, b, k, act, z)
    else:
        for j in range(k):
            o[j] += b[j]


cdef inline void preact_backward_row(const floating* z, floating* g, Py_ssize_t k,
                                    int act) noexcept nogil:
    """The derivatives written from z (GELU, its tanh form, SiLU)."""
    cdef Py_ssize_t j
    cdef floating v, t, s
    if act == GELU:
        # Phi(z) + z phi(z)
        for j in range(k):
            v = z[j]
            g[j] *= (<floating>0.5 * (1 + ferf(v * <floating>SQRT_HALF))
                     + v * <floating>INV_SQRT_2PI * fexp(<floating>-0.5 * v * v))
    elif act == GELU_TANH:
        for j in range(k):
            v = z[j]
            t = gelu_tanh_t(v)
            g[j] *= (<floating>0.5 * (1 + t) + <floating>0.5 * v * (1 - t * t)
                     * <floating>SQRT_2_OVER_PI * (1 + <floating>(3 * GELU_CUBIC) * v * v))
    elif act == SILU:
        for j in range(k):
            v = z[j]
            s = sigmoid(v)
            g[j] *= s * (1 + v * (1 - s))


cdef inline void act_backward_row(const floating* z, const floating* a, floating* g,
                                  Py_ssize_t k, int act, floating alpha) noexcept nogil:
    """g = dL/da -> dL/dz in place for one row, from the output a (or z where needed)."""
    cdef Py_ssize_t j
    cdef double dot = 0.0
    if act == RELU:
        for j in range(k):
            g[j] *= (1 if a[j] > 0 else 0)  # a product, so a NaN gradient stays NaN
    elif act == LEAKY_RELU:
        for j in range(k):
            g[j] *= (1 if a[j] > 0 else alpha)
    elif act == SIGMOID:
        for j in range(k):
            g[j] *= a[j] * (1 - a[j])
    elif act == TANH:
        for j in range(k):
            g[j] *= 1 - a[j] * a[j]
    elif act == ELU:
        for j in range(k):
            g[j] *= (1 if a[j] > 0 else a[j] + alpha)
    elif act == SOFTMAX:
        # Jacobian-vector product of softmax: dz = a * (g - sum_j g_j a_j).
        for j in range(k):
            dot += g[j] * a[j]
        for j in range(k):
            g[j] = (g[j] - <floating>dot) * a[j]
    elif needs_z(act):
        preact_backward_row(z, g, k, act)
