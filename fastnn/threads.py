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
    threadpool_limits(limits=n)
    for name in backends.available_backends():
        module = backends._try_load(name)
        setter = getattr(module, "set_num_threads", None)
        if setter is not None:
            setter(n)
    _num_threads = n


def get_num_threads() -> int:
    """Threads fastnn was told to use (``set_num_threads``), else the CPU count."""
    return _num_threads or os.cpu_count() or 1


def blas_info() -> list[dict]:
    """The BLAS libraries loaded in this process, as threadpoolctl reports them."""
    return [i for i in threadpool_info() if i.get("user_api") == "blas"]
