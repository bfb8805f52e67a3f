"""One knob for every thread pool fastnn uses: BLAS (through threadpoolctl) and the backends'."""

from __future__ import annotations

import os

from threadpoolctl import threadpool_info, threadpool_limits

from . import backends

_num_threads: int | None = None


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in BLAS and in every loaded backend that has a thread pool.

    Parameters
    ----------
    n : int
        Number of threads, >= 1.
    """
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"number of threads must be an integer >= 1, got {n!r}")
    for name in backends.available_backends():
        module = backends.load_backend(name)
        setter = getattr(module, "set_num_threads", None)
        if setter is not None:
            setter(n)
    # After the backends: Numba's first set_num_threads starts its OpenMP pool at every core,
    # which this limit then brings back to n.
    threadpool_limits(limits=n)
    _num_threads = n


def get_num_threads() -> int:
    """Threads fastnn was told to use (``set_num_threads``), else the CPU count."""
    return _num_threads or os.cpu_count() or 1


POOL_KEYS = ("user_api", "internal_api", "version", "num_threads", "threading_layer",
             "architecture", "prefix", "filepath")


def thread_pools(load_blas: bool = False) -> list[dict]:
    """The thread pools (BLAS, OpenMP) loaded in this process, as threadpoolctl reports them.

    Parameters
    ----------
    load_blas : bool, default False
        Load NumPy's and SciPy's BLAS first (threadpoolctl only sees loaded libraries). Leave
        it off to describe exactly what this process has loaded so far.

    Returns
    -------
    list of dict
        One dict per library with the keys of ``POOL_KEYS`` that threadpoolctl knows.
    """
    if load_blas:
        try:
            import scipy.linalg  # noqa: F401  (its BLAS, besides NumPy's)
        except ImportError:
            pass
    return [{k: p[k] for k in POOL_KEYS if p.get(k) is not None} for p in threadpool_info()]
