"""The one place that sets Numba's JIT flags for every fastnn kernel.

Design:

A. ``fastmath`` is a *set of fine flags*, never ``True``: ``True`` includes "nnan" and "ninf",
   which let LLVM assume no NaN/inf exists and compile away the non-finite-loss check that
   stops an epoch. Reassociation and contraction (FMA) are what the loops need to vectorize.
B. ``cache=True`` so a second process loads machine code from ``__pycache__`` instead of
   recompiling (cold compile of one epoch specialization takes ~15 s on the project machine).
   Numba checks a cached function only against its own file, yet a kernel inlines code and
   constants from other files (``_codes``, the other ``_numba_*`` modules): editing those
   would silently keep stale machine code. :class:`_FastnnCacheLocator` therefore stamps
   every fastnn cache entry with a hash of all those files.
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

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba

FASTMATH: frozenset[str] = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})

JIT_OPTIONS: dict[str, Any] = {
    "cache": True,
    "fastmath": set(FASTMATH),
    "error_model": "numpy",
    "nogil": True,
}


_BACKENDS = Path(__file__).resolve().parent
_stamp: str | None = None


def sources_stamp() -> str:
    """Hash of every source file a fastnn kernel can depend on (computed once)."""
    global _stamp
    if _stamp is None:
        files = sorted(_BACKENDS.glob("_numba_*.py")) + [_BACKENDS / "_jit.py"]
        files.append(_BACKENDS.parent / "_codes.py")
        digest = hashlib.sha256()
        for path in files:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        _stamp = digest.hexdigest()
    return _stamp


def _install_cache_locator() -> type | None:
    """Put :class:`_FastnnCacheLocator` before Numba's in-tree locator (Design B).

    Uses Numba's cache internals; if they change, caching silently falls back to Numba's
    own per-file stamps.
    """
    try:
        from numba.core import caching
    except ImportError:  # pragma: no cover - other Numba versions
        return None
    # Public names in recent Numba, underscored in older releases.
    base = getattr(caching, "InTreeCacheLocator", getattr(caching, "_InTreeCacheLocator", None))
    impl = getattr(caching, "CacheImpl", getattr(caching, "_CacheImpl", None))
    classes = getattr(impl, "_locator_classes", None)
    if base is None or not isinstance(classes, list):  # pragma: no cover
        return None

    class _FastnnCacheLocator(base):
        def get_source_stamp(self):  # noqa: ANN202
            return (super().get_source_stamp(), sources_stamp())

        @classmethod
        def from_function(cls, py_func, py_file):  # noqa: ANN001, ANN206
            if Path(os.path.abspath(py_file)).parent != _BACKENDS:
                return None
            return super().from_function(py_func, py_file)

    if not any(c.__name__ == "_FastnnCacheLocator" for c in classes):
        position = classes.index(base) if base in classes else 0
        classes.insert(position, _FastnnCacheLocator)
    return _FastnnCacheLocator


_install_cache_locator()


def kernel(func: Callable) -> Callable:
    """Compile ``func`` with fastnn's JIT flags (lazily, on the first call)."""
    return numba.njit(**JIT_OPTIONS)(func)
