"""The one place that sets Numba's JIT flags for every fastnn kernel.

Design:

A. ``fastmath`` is a *set of fine flags*, never ``True``: ``True`` includes "nnan" and "ninf",
   which let LLVM assume no NaN/inf exists and compile away the non-finite-loss check that
   stops an epoch. Reassociation and contraction (FMA) are what the loops need to vectorize.
B. ``cache=True`` so a second process loads machine code from ``__pycache__`` instead of
   recompiling (cold compile of the whole backend takes several seconds).
C. ``error_model="numpy"``: float division by zero gives inf/NaN like NumPy (the loss check
   sees it) instead of a Python ZeroDivisionError, and the division needs no branch.
D. No ``inline="always"``: Numba-level inlining of a helper that takes arrays adds atomic
   reference counting at every call site; hot loops are written out instead.
E. ``parallel`` is off: no ``prange`` anywhere. The only multi-threaded work is BLAS (scipy's
   OpenBLAS, reached through ``np.dot``). An OpenMP ``prange`` next to BLAS calls leaves spinning
   OpenMP workers that starve the BLAS threads (DESIGN.md measured 25x slower at batch 128);
   the sparse first-layer loops, the only place where ``prange`` could help, are already
   several times faster than the dense product they replace, so one pool (BLAS) is kept.
   See ``fastnn.backends.numba.set_num_threads``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba

FASTMATH: frozenset[str] = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})

JIT_OPTIONS: dict[str, Any] = {
    "cache": True,
    "fastmath": set(FASTMATH),
    "error_model": "numpy",
    "nogil": True,
}


def kernel(func: Callable) -> Callable:
    """Compile ``func`` with fastnn's JIT flags (lazily, on the first call)."""
    return numba.njit(**JIT_OPTIONS)(func)
