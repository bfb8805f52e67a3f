"""SciPy's OpenBLAS, the BLAS of both compiled backends, loaded with idle workers that sleep.

Design:

A. OpenBLAS's worker threads spin for a while after every threaded call (``2**28`` cycles by
   default, ~0.1 s here: a whole core, measured with ``time.process_time`` across a sleep).
   Next to the backends' own threads (the Numba conv team, the Cython OpenMP team) that
   spinning worker takes the core the other thread needed: MNIST_99's CNN at batch 256 ran
   40 ms per batch so, 28 ms with BLAS held to one thread (``numba/conv.py``, Design C).
B. OpenBLAS reads ``OPENBLAS_THREAD_TIMEOUT`` (log2 of the spin cycles, 4..30) once, when the
   library loads. :func:`load_scipy_blas` sets it to ``IDLE_TIMEOUT`` for that moment only
   and restores the environment: SciPy's OpenBLAS then parks its workers at once, while
   NumPy's own OpenBLAS (the reference's, loaded with NumPy) and every other library keep
   their settings. Back-to-back products measured the same with either setting (waking a
   parked worker costs microseconds; a 128x784x128 product takes ~350).
C. Nothing is changed when the user set the variable, or when SciPy's BLAS was loaded before
   fastnn (``scipy_blas_idle()`` then says what is in force, for ``fastnn info``).
"""

from __future__ import annotations

import os
import sys

VARIABLE = "OPENBLAS_THREAD_TIMEOUT"
IDLE_TIMEOUT = "4"  # 2**4 cycles: park at once (OpenBLAS's smallest accepted value)
_state: dict[str, str] = {}


def load_scipy_blas() -> None:
    """Import ``scipy.linalg.cython_blas`` (its OpenBLAS) with sleeping idle workers (Design B)."""
    if "scipy.linalg.cython_blas" in sys.modules or _scipy_blas_loaded():
        _state.setdefault("idle", "as loaded before fastnn (OpenBLAS's default: they spin)")
        return
    user = os.environ.get(VARIABLE)
    if user is not None:
        _state.setdefault("idle", f"{VARIABLE}={user} (the user's)")
    else:
        os.environ[VARIABLE] = IDLE_TIMEOUT
    try:
        import scipy.linalg.cython_blas  # noqa: F401
    finally:
        if user is None:
            del os.environ[VARIABLE]
    _state.setdefault("idle", f"workers park at once ({VARIABLE}={IDLE_TIMEOUT} at load)")


def _scipy_blas_loaded() -> bool:
    """True when a module imported before fastnn (scipy.special, scikit-learn...) loaded it."""
    if not any(name.startswith("scipy.") for name in sys.modules):
        return False  # the cheap answer (threadpoolctl takes ~10 ms)
    from threadpoolctl import threadpool_info

    return any("scipy.libs" in i.get("filepath", "") for i in threadpool_info())


def scipy_blas_idle() -> str | None:
    """How SciPy's OpenBLAS workers wait, when fastnn loaded it (None before that)."""
    return _state.get("idle")
