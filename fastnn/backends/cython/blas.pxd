# cython: language_level=3
"""Row-major matrix products through scipy's BLAS (``scipy.linalg.cython_blas``).

A C-contiguous (rows, cols) array is, to Fortran BLAS, a column-major (cols, rows) matrix: its
transpose. So the row-major product C = op(A) op(B) is the column-major product
C^T = op(B)^T op(A)^T: swap the operands and keep their transpose flags. No operand is copied.
"""

from cython cimport floating
from libc.string cimport memset
from scipy.linalg.cython_blas cimport dgemm, sgemm


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int kk, floating alpha,
                      const floating* a, int lda, const floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    """Row-major C (m, n) = alpha op(A) op(B) + beta C, op(A) (m, kk), op(B) (kk, n).

    ``lda``, ``ldb``, ``ldc`` are the row strides (in elements) of the arrays as stored.
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
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &kk, &alpha, <float*>b, &ldb, <float*>a, &lda, &beta, c, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &kk, &alpha, <double*>b, &ldb, <double*>a, &lda, &beta, c, &ldc)


cdef inline void scale(floating* v, Py_ssize_t n, floating factor) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        v[i] *= factor
