"""The Cython backend's own BLAS handle: a private, single-threaded OpenBLAS instance.

The epoch's OpenMP team calls BLAS from each of its threads at once, so each call must run on
one thread. OpenBLAS has no per-call or per-thread setting in its pthreads builds (scipy's and
NumPy's wheels; there ``openblas_set_num_threads_local`` sets the same process-wide count), and
threadpoolctl's limit is process-wide and not thread-safe: every other thread's NumPy dropped to
one thread during a fit, and two fits in parallel threads could leave it there for good.

So the backend loads a BLAS of its own: the library of the ``scipy-openblas32`` package, opened
with ``RTLD_LOCAL``. Its soname differs from the copies bundled in NumPy's and SciPy's wheels,
so it is a separate instance with its own thread count, which this module holds at one thread.
Nobody else's BLAS changes. Without the package (or with ``FASTNN_OWN_BLAS=0``) ``load``
returns None and the epoch runs every BLAS product whole, outside the team, on scipy's BLAS
with the threads the process gave it.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

# Exported names in scipy-openblas32 (prefix ``scipy_``), then a plain OpenBLAS build.
_PREFIXES = ("scipy_", "")


@dataclass(frozen=True)
class OwnBlas:
    """A loaded private BLAS: the addresses of its gemm routines and its thread controls."""

    path: str
    sgemm: int
    dgemm: int
    _get_threads: ctypes._CFuncPtr
    _set_threads: ctypes._CFuncPtr
    _lib: ctypes.CDLL

    def hold_one_thread(self) -> None:
        """Back to one thread if something changed it (threadpoolctl limits every library it
        finds, this one too); the instance is ours, so this touches nobody else's BLAS."""
        if self._get_threads() != 1:
            self._set_threads(1)


def _library_path() -> str | None:
    try:
        import scipy_openblas32
    except ImportError:
        return None
    lib_dir = scipy_openblas32.get_lib_dir()
    name = scipy_openblas32.get_library(fullname=True)
    path = os.path.join(lib_dir, name)
    return path if os.path.exists(path) else None


def _symbol(lib: ctypes.CDLL, name: str) -> ctypes._CFuncPtr:
    for prefix in _PREFIXES:
        for suffix in ("", "_"):
            func = getattr(lib, prefix + name + suffix, None)
            if func is not None:
                return func
    raise AttributeError(name)


def load() -> OwnBlas | None:
    """The private BLAS held at one thread, or None when there is none to load."""
    if os.environ.get("FASTNN_OWN_BLAS", "").strip().lower() in ("0", "false", "no"):
        return None
    path = _library_path()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path, mode=os.RTLD_LOCAL)
        sgemm, dgemm = _symbol(lib, "sgemm_"), _symbol(lib, "dgemm_")
        get_threads = _symbol(lib, "openblas_get_num_threads")
        set_threads = _symbol(lib, "openblas_set_num_threads")
    except (OSError, AttributeError):  # not loadable here, or not an OpenBLAS
        return None
    get_threads.restype, get_threads.argtypes = ctypes.c_int, []
    set_threads.restype, set_threads.argtypes = None, [ctypes.c_int]
    own = OwnBlas(
        path=path,
        sgemm=ctypes.cast(sgemm, ctypes.c_void_p).value,
        dgemm=ctypes.cast(dgemm, ctypes.c_void_p).value,
        _get_threads=get_threads,
        _set_threads=set_threads,
        _lib=lib,
    )
    own.hold_one_thread()
    return own
