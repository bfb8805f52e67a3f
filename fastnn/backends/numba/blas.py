"""The threads of the BLAS that ``np.dot`` reaches in compiled code (SciPy's OpenBLAS).

The loops-or-BLAS cost model (:mod:`.dense`) and the thread teams (:mod:`.team`) both ask how
many threads that BLAS runs; this module answers, below both of them.
"""

from __future__ import annotations

# Threads of the BLAS that np.dot reaches in Numba (scipy's OpenBLAS), for the cost model;
# looked up once (threadpoolctl takes milliseconds), then kept by set_blas_threads.
_blas_thread_count: int | None = None


def blas_threads() -> int:
    """Threads of the BLAS library that ``np.dot`` calls in compiled code."""
    global _blas_thread_count
    if _blas_thread_count is None:
        import scipy.linalg.cython_blas  # noqa: F401  (loads the library first)
        from threadpoolctl import threadpool_info

        blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        scipy_blas = [i for i in blas if "scipy.libs" in i.get("filepath", "")]
        _blas_thread_count = max([i["num_threads"] for i in scipy_blas or blas] or [1])
    return _blas_thread_count


def set_blas_threads(n: int) -> None:
    """Record that BLAS now runs ``n`` threads (the caller has set it)."""
    global _blas_thread_count
    _blas_thread_count = int(n)
