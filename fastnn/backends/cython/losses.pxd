# cython: language_level=3
"""Losses on raw outputs: value and gradient in one pass per row, in float64 arithmetic.

Every loss returns the batch mean (a double) and writes dL/doutputs into ``grad``; the sums run
in double whatever the model dtype, as in the reference backend. ``grad`` may be ``outputs``
itself: each row is read completely before it is written.
"""

from cython cimport floating
from libc.math cimport exp, fabs, log, log1p, tanh
from libc.stdint cimport int64_t

from .codes cimport LOSS_BINARY_CROSS_ENTROPY, LOSS_CROSS_ENTROPY, LOSS_KL_DIVERGENCE, LOSS_MSE


cdef inline double row_logsumexp(const floating* o, Py_ssize_t k, double* shift) noexcept nogil:
    """log sum_j exp(o_j - max o) of one row; ``shift`` receives max o (no overflow)."""
    cdef Py_ssize_t j
    cdef double omax = o[0] if k > 0 else 0.0
    cdef double total = 0.0
    for j in range(1, k):
        if o[j] > omax:
            omax = o[j]
    for j in range(k):
        total += exp(o[j] - omax)
    shift[0] = omax
    return log(total)


cdef inline double mse(const floating* o, const floating* t, floating* grad,
                       Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """L = mean (o - t)^2 over n*k elements; grad = 2 (o - t) / (n k)."""
    cdef Py_ssize_t i, size = n * k
    cdef double total = 0.0
    cdef floating diff
    cdef floating scale = <floating>(2.0 / size) if size else 0
    for i in range(size):
        diff = o[i] - t[i]
        total += <double>diff * diff
        grad[i] = diff * scale
    return total / size


cdef inline double softmax_cross_entropy(const floating* o, const int64_t* labels, floating* grad,
                                         Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """L = mean_i [logsumexp(o_i) - o_i[t_i]]; grad = (softmax(o) - onehot(t)) / n."""
    cdef Py_ssize_t i, j
    cdef double shift, lse, logp, total = 0.0, inv_n = 1.0 / n
    cdef const floating* oi
    for i in range(n):
        oi = o + i * k
        lse = row_logsumexp(oi, k, &shift)
        total -= (oi[labels[i]] - shift) - lse
        for j in range(k):
            logp = (oi[j] - shift) - lse
            grad[i * k + j] = <floating>((exp(logp) - (j == labels[i])) * inv_n)
    return total / n


cdef inline double soft_cross_entropy(const floating* o, const floating* t, floating* grad,
                                      Py_ssize_t n, Py_ssize_t k, bint with_entropy) noexcept nogil:
    """L = mean_i [-sum_j t_ij log softmax(o_i)_j]; grad = (softmax(o) sum_j t_ij - t) / n.

    With ``with_entropy`` the targets' own sum_j t log t is added: the KL divergence, whose
    gradient is the same.
    """
    cdef Py_ssize_t i, j
    cdef double shift, lse, logp, tsum, tij, total = 0.0, inv_n = 1.0 / n
    cdef const floating* oi
    for i in range(n):
        oi = o + i * k
        lse = row_logsumexp(oi, k, &shift)
        tsum = 0.0
        for j in range(k):
            tsum += t[i * k + j]
        for j in range(k):
            tij = t[i * k + j]
            logp = (oi[j] - shift) - lse
            total -= tij * logp
            if with_entropy and tij > 0:
                total += tij * log(tij)
            grad[i * k + j] = <floating>((exp(logp) * tsum - tij) * inv_n)
    return total / n


cdef inline double binary_cross_entropy(const floating* o, const floating* t, floating* grad,
                                        Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """Sigmoid fused: L = mean [softplus(o) - t o]; grad = (sigmoid(o) - t) / (n k)."""
    cdef Py_ssize_t i, size = n * k
    cdef double oi, ti, total = 0.0, inv = 1.0 / size
    for i in range(size):
        oi = o[i]
        ti = t[i]
        # softplus(o) = max(o, 0) + log1p(exp(-|o|)) never overflows.
        total += (oi if oi > 0 else 0.0) + log1p(exp(-fabs(oi))) - ti * oi
        grad[i] = <floating>((0.5 * (tanh(0.5 * oi) + 1.0) - ti) * inv)
    return total / size


cdef inline double loss_by_code(int code, const floating* o, const void* targets, floating* grad,
                                Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """The loss of code ``code`` (``fastnn._codes.LOSS_*``); the soft ones last."""
    if code == LOSS_CROSS_ENTROPY:
        return softmax_cross_entropy(o, <const int64_t*>targets, grad, n, k)
    if code == LOSS_MSE:
        return mse(o, <const floating*>targets, grad, n, k)
    if code == LOSS_BINARY_CROSS_ENTROPY:
        return binary_cross_entropy(o, <const floating*>targets, grad, n, k)
    return soft_cross_entropy(o, <const floating*>targets, grad, n, k,
                              code == LOSS_KL_DIVERGENCE)
