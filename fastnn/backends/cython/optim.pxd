# cython: language_level=3
"""Optimizer updates in place on flat arrays, element by element.

Scalars are rounded to the model dtype where the reference backend rounds them (NumPy casts a
Python float to the array's dtype), so float32 results match it closely.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport pow, sqrt, sqrtf

from .codes cimport (
    H_BETA1, H_BETA2, H_EPS, H_LR, H_MOMENTUM, H_NESTEROV, H_WEIGHT_DECAY, OPT_MOMENTUM, OPT_SGD,
)
from .team cimport Team, fastnn_fp_mode, fastnn_fp_swap, n_chunks


cdef inline floating fsqrt(floating v) noexcept nogil:
    if floating is float:
        return sqrtf(v)
    else:
        return sqrt(v)


cdef inline void sgd_range(floating* p, const floating* g, Py_ssize_t lo, Py_ssize_t hi,
                           double lr, double wd) noexcept nogil:
    """g' = g + wd p;  p -= lr g'  (as p * (1 - lr wd) - lr g)."""
    cdef Py_ssize_t i
    cdef floating flr = <floating>lr
    cdef floating keep = <floating>(1.0 - lr * wd)
    if wd != 0:
        for i in range(lo, hi):
            p[i] = p[i] * keep - flr * g[i]
    else:
        for i in range(lo, hi):
            p[i] -= flr * g[i]


cdef inline void momentum_range(floating* p, const floating* g, floating* v, Py_ssize_t lo,
                                Py_ssize_t hi, double lr, double mu, bint nesterov,
                                double wd) noexcept nogil:
    """g' = g + wd p;  v = mu v + g';  p -= lr (g' + mu v if nesterov else v)."""
    cdef Py_ssize_t i
    cdef floating gi, flr = <floating>lr, fmu = <floating>mu, fwd = <floating>wd
    for i in range(lo, hi):
        gi = g[i] + fwd * p[i] if wd != 0 else g[i]
        v[i] = v[i] * fmu + gi
        if nesterov:
            p[i] -= flr * (gi + fmu * v[i])
        else:
            p[i] -= flr * v[i]


cdef inline void adam_range(floating* p, const floating* g, floating* m, floating* v,
                            Py_ssize_t lo, Py_ssize_t hi, double lr, double beta1, double beta2,
                            double eps, double wd, Py_ssize_t step) noexcept nogil:
    """m = b1 m + (1 - b1) g';  v = b2 v + (1 - b2) g'^2;
    p -= lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)."""
    cdef Py_ssize_t i
    cdef floating gi
    cdef floating fwd = <floating>wd, fb1 = <floating>beta1, fb2 = <floating>beta2
    cdef floating c1 = <floating>(1.0 - beta1), c2 = <floating>(1.0 - beta2)
    cdef floating step_size = <floating>(lr / (1.0 - pow(beta1, <double>step)))
    cdef floating bias2 = <floating>(1.0 - pow(beta2, <double>step))
    cdef floating feps = <floating>eps
    for i in range(lo, hi):
        gi = g[i] + fwd * p[i] if wd != 0 else g[i]
        m[i] = m[i] * fb1 + c1 * gi
        v[i] = v[i] * fb2 + c2 * (gi * gi)
        p[i] -= step_size * (m[i] / (fsqrt(v[i] / bias2) + feps))


cdef inline void update_range(int optimizer, floating* p, const floating* g, floating* s1,
                              floating* s2, Py_ssize_t lo, Py_ssize_t hi, const double* hyper,
                              Py_ssize_t step) noexcept nogil:
    if optimizer == OPT_SGD:
        sgd_range(p, g, lo, hi, hyper[H_LR], hyper[H_WEIGHT_DECAY])
    elif optimizer == OPT_MOMENTUM:
        momentum_range(p, g, s1, lo, hi, hyper[H_LR], hyper[H_MOMENTUM],
                       hyper[H_NESTEROV] != 0, hyper[H_WEIGHT_DECAY])
    else:
        adam_range(p, g, s1, s2, lo, hi, hyper[H_LR], hyper[H_BETA1], hyper[H_BETA2],
                   hyper[H_EPS], hyper[H_WEIGHT_DECAY], step)


cdef inline void update_by_code(int optimizer, floating* p, const floating* g, floating* s1,
                        floating* s2, Py_ssize_t size, const double* hyper, Py_ssize_t step,
                        Team team) noexcept nogil:
    """One optimizer step on a flat parameter of ``size`` elements, split over the team."""
    cdef unsigned fp_mode = fastnn_fp_mode(), fp_old  # fpmode: the caller's flushing
    cdef Py_ssize_t t
    cdef int nt = n_chunks(size, size, team.size)
    if nt == 1 or not team.parallel:  # elementwise: chunks change nothing
        update_range(optimizer, p, g, s1, s2, 0, size, hyper, step)
        return
    for t in prange(nt, num_threads=nt, schedule='static', chunksize=1):
        fp_old = fastnn_fp_swap(fp_mode)
        update_range(optimizer, p, g, s1, s2, size * t // nt, size * (t + 1) // nt, hyper, step)
        fastnn_fp_swap(fp_old)
