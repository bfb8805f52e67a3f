# cython: language_level=3
"""Nonzero patterns of a layer input x (n, d), and the choice of loops they drive.

MNIST pixels are ~81% zeros: the first layer's products need only the nonzero inputs.
``Csr`` lists each row's nonzero features (built once per batch, branch-free), ``Csc`` the rows
where each feature is nonzero (a counting sort, from ``Csr`` or by scanning x). Hidden layers of
tiny batches use ``Csc`` as well: there the loops beat BLAS's call overhead.
"""

from cython cimport floating
from libc.string cimport memset


cdef enum:
    SMALL_ROWS = 8       # batches with fewer rows use the hand-written loops
    SPARSE_PERCENT = 30  # inputs with fewer nonzeros than this (in %) use them too


cdef struct Csr:
    # Nonzero inputs by row: the features of row r that are nonzero are
    # cols[ptr[r]:ptr[r + 1]], ascending.
    Py_ssize_t* ptr
    int* cols


cdef struct Csc:
    # Nonzero pattern of a layer input x (n, d), by feature: the samples whose feature i is
    # nonzero are rows[start[i]:end[i]], ascending. rows holds nnz + d entries (one slack slot
    # per feature lets the fill loop write without a branch).
    Py_ssize_t* start
    Py_ssize_t* end
    int* rows


cdef inline Py_ssize_t count_nonzero(const floating* x, Py_ssize_t size) noexcept nogil:
    cdef Py_ssize_t i, nnz = 0
    for i in range(size):
        nnz += x[i] != 0
    return nnz


cdef inline bint use_row_loops(Py_ssize_t n, Py_ssize_t d, Py_ssize_t nnz) noexcept nogil:
    """The decision between hand-written loops and BLAS, from the batch size and density."""
    return n < SMALL_ROWS or nnz * 100 < SPARSE_PERCENT * n * d


cdef inline void build_csr(const floating* x, Py_ssize_t n, Py_ssize_t d, Csr* csr) noexcept nogil:
    """List the nonzero inputs of every row of x (n, d); cols needs nnz + 1 entries."""
    cdef Py_ssize_t r, i, nnz = 0
    cdef const floating* xr
    csr.ptr[0] = 0
    for r in range(n):
        xr = x + r * d
        for i in range(d):
            # Branch-free: the zero pattern of real images defeats the branch predictor.
            csr.cols[nnz] = <int>i
            nnz += xr[i] != 0
        csr.ptr[r + 1] = nnz


cdef inline void build_csc(const floating* x, Py_ssize_t n, Py_ssize_t d, Csc* csc) noexcept nogil:
    """Fill ``csc`` with the nonzero pattern of x (n, d) by feature (a counting sort)."""
    cdef Py_ssize_t r, i, total = 0
    cdef const floating* xr
    cdef Py_ssize_t* start = csc.start
    cdef Py_ssize_t* end = csc.end
    memset(end, 0, d * sizeof(Py_ssize_t))
    for r in range(n):
        xr = x + r * d
        for i in range(d):
            end[i] += xr[i] != 0
    for i in range(d):
        start[i] = total
        total += end[i] + 1  # + 1: the slack slot
        end[i] = start[i]
    for r in range(n):
        xr = x + r * d
        for i in range(d):
            csc.rows[end[i]] = <int>r
            end[i] += xr[i] != 0


cdef inline void csc_from_csr(const Csr* csr, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t d,
                              Csc* csc) noexcept nogil:
    """The pattern of rows r0..r1 by feature, from the lists by row (no pass over x).

    ``csc.rows`` count from r0.
    """
    cdef Py_ssize_t r, i, q, total = 0
    memset(csc.end, 0, d * sizeof(Py_ssize_t))
    for q in range(csr.ptr[r0], csr.ptr[r1]):
        csc.end[csr.cols[q]] += 1
    for i in range(d):
        csc.start[i] = total
        total += csc.end[i] + 1
        csc.end[i] = csc.start[i]
    for r in range(r0, r1):
        for q in range(csr.ptr[r], csr.ptr[r + 1]):
            i = csr.cols[q]
            csc.rows[csc.end[i]] = <int>(r - r0)
            csc.end[i] += 1
