# cython: language_level=3
"""Row-major matrix products through BLAS: scipy's, or the backend's own single-threaded copy.

A C-contiguous (rows, cols) array is, to Fortran BLAS, a column-major (cols, rows) matrix: its
transpose. So the row-major product C = op(A) op(B) is the column-major product
C^T = op(B)^T op(A)^T: swap the operands and keep their transpose flags. No operand is copied.

Two libraries (``own``):

- scipy's OpenBLAS (``scipy.linalg.cython_blas``), shared with the whole process, with the
  threads the process gave it. The single-batch kernels use it.
- the backend's own OpenBLAS handle: the library of the ``scipy-openblas32`` package, loaded
  privately (``RTLD_LOCAL``: a separate instance, with its own thread count) by
  ``fastnn.backends.cython.own_blas`` and held at one thread. The epoch's team calls it from
  each of its threads at once: one thread per product, set per library and never for the
  process, so no other thread's BLAS changes (threadpoolctl's process-wide limit did that).
  ``has_own_blas()`` is false when the package is missing; the epoch then calls scipy's BLAS,
  whole products outside the team.
"""

from cython cimport floating
from libc.string cimport memset
from scipy.linalg.cython_blas cimport dgemm, sgemm


cdef extern from *:
    """
    /* The own BLAS handle: addresses set once by _kernels.set_own_blas (NULL: none). */
    typedef void (*fastnn_sgemm_t)(const char *, const char *, const int *, const int *,
                                   const int *, const float *, const float *, const int *,
                                   const float *, const int *, const float *, float *,
                                   const int *);
    typedef void (*fastnn_dgemm_t)(const char *, const char *, const int *, const int *,
                                   const int *, const double *, const double *, const int *,
                                   const double *, const int *, const double *, double *,
                                   const int *);
    static fastnn_sgemm_t fastnn_own_sgemm = NULL;
    static fastnn_dgemm_t fastnn_own_dgemm = NULL;
    """
    ctypedef void (*fastnn_sgemm_t)(const char*, const char*, const int*, const int*, const int*,
                             const float*, const float*, const int*, const float*, const int*,
                             const float*, float*, const int*) noexcept nogil
    ctypedef void (*fastnn_dgemm_t)(const char*, const char*, const int*, const int*, const int*,
                             const double*, const double*, const int*, const double*,
                             const int*, const double*, double*, const int*) noexcept nogil
    fastnn_sgemm_t fastnn_own_sgemm
    fastnn_dgemm_t fastnn_own_dgemm


cdef inline bint has_own_blas() noexcept nogil:
    return fastnn_own_sgemm != NULL and fastnn_own_dgemm != NULL


cdef inline void gemm(bint own, bint trans_a, bint trans_b, int m, int n, int kk,
                      floating alpha, const floating* a, int lda, const floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    """Row-major C (m, n) = alpha op(A) op(B) + beta C, op(A) (m, kk), op(B) (kk, n).

    ``lda``, ``ldb``, ``ldc`` are the row strides (in elements) of the arrays as stored.
    ``own``: through the backend's own single-threaded handle when it is set.
    """
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    cdef Py_ssize_t r
    if m <= 0 or n <= 0:
        return
    if kk <= 0:
        # BLAS rejects empty inner dimensions; the product is zero.
        for r in range(m):
            if beta == 0:
                memset(c + r * ldc, 0, n * sizeof(floating))
            else:
                scale(c + r * ldc, n, beta)
        return
    # One read of the handle: a NULL one (never set, or cleared) falls back to scipy's BLAS.
    cdef fastnn_sgemm_t own_s = fastnn_own_sgemm if own else NULL
    cdef fastnn_dgemm_t own_d = fastnn_own_dgemm if own else NULL
    if floating is float:
        if own_s != NULL:
            own_s(&tb, &ta, &n, &m, &kk, &alpha, b, &ldb, a, &lda, &beta, c, &ldc)
        else:
            sgemm(&tb, &ta, &n, &m, &kk, &alpha, <float*>b, &ldb, <float*>a, &lda, &beta, c,
                  &ldc)
    else:
        if own_d != NULL:
            own_d(&tb, &ta, &n, &m, &kk, &alpha, b, &ldb, a, &lda, &beta, c, &ldc)
        else:
            dgemm(&tb, &ta, &n, &m, &kk, &alpha, <double*>b, &ldb, <double*>a, &lda, &beta, c,
                  &ldc)


cdef inline void scale(floating* v, Py_ssize_t n, floating factor) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        v[i] *= factor
