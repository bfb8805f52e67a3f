"""The one place that sets Numba's JIT flags and the on-disk cache of every fastnn kernel.

Design:

A. ``fastmath`` is a *set of fine flags*, never ``True``: ``True`` includes "nnan" and "ninf",
   which let LLVM assume no NaN/inf exists and compile away the non-finite-loss check that
   stops an epoch. Reassociation and contraction (FMA) are what the loops need to vectorize.
B. Compiled code is cached on disk (:data:`CACHE`), so a second process loads machine code
   instead of recompiling (compiling an epoch takes many seconds; where they go:
   ``benchmarks/numba_cold_start.py``). Numba stamps a cache entry with its own file only,
   yet a kernel inlines code and constants from other files (``fastnn/_codes.py``, the other
   modules of this package): editing those would silently keep stale machine code.
   :func:`kernel` therefore gives every fastnn kernel a cache (:class:`_StampedCache`) whose
   entries carry a hash of all those files (:func:`sources_stamp`) *wherever* the cache
   lives: the package's ``__pycache__``, ``NUMBA_CACHE_DIR`` or the user-wide cache (Numba
   picks the directory as usual). Numba's own locator list is not touched, so other Numba
   code in the process keeps Numba's behaviour.
C. With nothing writable for a cache (read-only install, read-only ``NUMBA_CACHE_DIR`` and
   home), the kernels run uncached: slower to start, same results, and one warning per process
   says so (``@njit(cache=True)`` would raise at import instead).
D. ``error_model="numpy"``: float division by zero gives inf/NaN like NumPy (the loss check
   sees it) instead of a Python ZeroDivisionError, and the division needs no branch.
E. No ``inline="always"``: Numba-level inlining of a helper that takes arrays adds atomic
   reference counting at every call site; hot loops are written out instead.
F. ``parallel`` is off except in :func:`parallel_kernel`: the two thread-split sparse loops
   (:mod:`.sparse`, Design F), compiled only in a process that uses more than one thread. An
   OpenMP ``prange`` next to BLAS calls leaves spinning OpenMP workers that starve the BLAS
   threads (DESIGN.md measured 25x slower at batch 128), so those kernels run only on Numba's
   ``workqueue`` layer, whose workers sleep between regions (:mod:`.team`, Design E), and only
   where the work of a region pays for waking them (~60 us measured per region, so not at
   MNIST batches of 32 or 128). See ``fastnn.backends.numba.set_num_threads``.
G. A kernel that would dispatch on a code at run time (the epoch's loss and optimizer) is
   compiled per code instead, by :func:`specialize`: a copy of the function whose named
   globals are bound to the one kernel the code selects. Numba compiles (and links into the
   caller, which LLVM then optimizes and emits again) every branch of a run-time dispatch;
   bound, only the kernel used is compiled. Each copy's cache entries carry its bindings in the
   index key (:meth:`_StampedCache._index_key`), so copies share the function's cache files
   without ever loading each other's code, and the stamp of Design B still applies. A
   dispatcher passed as an *argument* would specialize too, but its type is keyed by object
   identity and never hits the disk cache (measured: a miss in every process).
   Measured (``benchmarks/numba_cold_start.py``, 784-128-10, CE + SGD, float32, one BLAS thread,
   CPU seconds of the fresh process, same run; the machine was 4x oversubscribed, so every
   figure is about 2x a quiet one; details in ``benchmarks/README.md``, "Numba cold start"):

   ==============================================  ===============  ==========
   change                                          specializations  CPU s
   ==============================================  ===============  ==========
   baseline (run-time loss/optimizer dispatch)     51               45.5, 39.8
   epoch per (loss, optimizer), this point         42               36.6
   + no literal ``False`` into weight_grad_loops   41               31.1
   ==============================================  ===============  ==========
H. Compiled ahead of time at install: ``fastnn compile`` (:mod:`.precompile`) runs the common
   fits once and keeps their machine code in a *store* beside this package
   (:func:`store_dir`). Every kernel's cache (:class:`_StampedCache`) looks there after its
   own cache misses, so the first fit after install loads code instead of compiling it even
   with an empty ``NUMBA_CACHE_DIR`` (the benchmark's cold probe). A store entry is stamped
   with :func:`sources_stamp` alone (no file times, so a checkout that touches the files
   keeps it) and keyed like any cache entry by signature, CPU and Numba version: a store
   built for other sources, another CPU or another Numba is never loaded, only missed. The
   store is only read; nothing a fit compiles is written there. ``FASTNN_NUMBA_PRECOMPILED``
   names another store directory, or turns the store off (``0``/``off``).
I. A kernel that takes one array per layer takes them as a tuple, and a tuple's length is part
   of its Numba type: every depth would compile the epoch (and predict) again. The callers
   therefore pad the tuples of every net but one with empty arrays of the same type to
   :data:`TUPLE_LAYERS` entries (:func:`layer_tuple`), and the kernels take the depth from a
   per-layer array (``acts``), never from ``len`` of a tuple: nets of 0 and of 2 to
   ``TUPLE_LAYERS - 1`` hidden layers share one compiled epoch, so the precompiled store
   (Design H) serves them all. The exception is the two-layer net (one hidden layer), the
   MNIST net of the examples and the benchmark: padded, its batch-1 epochs measured 4-8%
   slower (the layer loop of a fixed-length tuple compiles to straight code, a padded one
   indexes at run time), so it keeps its own tuple of two and its own compiled epoch.
"""

from __future__ import annotations

import hashlib
import os
import types
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numba
import numpy as np
from numba.core.caching import FunctionCache, IndexDataCacheFile
from numba.core.dispatcher import Dispatcher

FASTMATH: frozenset[str] = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})

#: Compile options of every kernel (the disk cache is attached by :func:`kernel`, Design B).
JIT_OPTIONS: dict[str, Any] = {
    "fastmath": set(FASTMATH),
    "error_model": "numpy",
    "nogil": True,
}
#: Cache compiled kernels on disk (Design B); False only compiles in memory.
CACHE = True

PACKAGE = Path(__file__).resolve().parent
CODES = PACKAGE.parent.parent / "_codes.py"
_stamp: str | None = None
_uncached: list[str] = []  # why caching is off in this process (Design C), once
VARIANT = "__fastnn_variant__"  # attribute naming the bindings of a specialize() copy
STORE_ENV = "FASTNN_NUMBA_PRECOMPILED"  # the store's directory, or 0/off (Design H)
# Set only in the process `fastnn compile` runs: its kernels write to the store, never read.
FILLING_ENV = "_FASTNN_NUMBA_FILLING_STORE"


TUPLE_LAYERS = 8  # the length of the per-layer tuples of a shallower net (Design I)
UNPADDED_LAYERS = 2  # the depth that keeps a tuple of its own length (Design I)


def layer_tuple(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
    """One array per layer as the tuple a kernel takes (Design I): as it is for a net of
    :data:`UNPADDED_LAYERS` layers, else padded to at least :data:`TUPLE_LAYERS` entries
    with empty arrays of the first one's dtype and ndim."""
    if len(arrays) == UNPADDED_LAYERS:
        return tuple(arrays)
    pad = np.empty((0,) * arrays[0].ndim, arrays[0].dtype)
    return (*arrays, *(pad,) * (TUPLE_LAYERS - len(arrays)))


def stamped_files() -> list[Path]:
    """Every file a fastnn kernel's machine code can depend on: this package and the codes."""
    return sorted(PACKAGE.glob("*.py")) + [CODES]


def sources_stamp() -> str:
    """Hash of :func:`stamped_files` (computed once per process)."""
    global _stamp
    if _stamp is None:
        digest = hashlib.sha256()
        for path in stamped_files():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        _stamp = digest.hexdigest()
    return _stamp


def store_dir() -> Path | None:
    """The directory of the precompiled store (Design H), or None when it is turned off."""
    value = os.environ.get(STORE_ENV)
    if value is None:
        return PACKAGE / "_precompiled"
    if value.strip().lower() in ("", "0", "off", "false", "no"):
        return None
    return Path(value).expanduser()


class _StampedCache(FunctionCache):
    """Numba's per-function disk cache, its entries stamped with :func:`sources_stamp` too,
    falling back to the precompiled store (Design H) on a miss.

    An index whose stamp differs (any stamped file changed) is discarded and overwritten, as
    Numba does when the function's own file changes.
    """

    def __init__(self, py_func: Callable) -> None:
        super().__init__(py_func)  # picks the directory (raises RuntimeError if none is usable)
        self._cache_file = IndexDataCacheFile(
            cache_path=self._cache_path,
            filename_base=self._impl.filename_base,
            source_stamp=(self._impl.locator.get_source_stamp(), sources_stamp()),
        )
        store = store_dir()
        self._store_file = None if store is None else IndexDataCacheFile(
            cache_path=str(store),
            filename_base=self._impl.filename_base,
            source_stamp=("precompiled", sources_stamp()),
        )  # fmt: skip
        if store is not None and os.environ.get(FILLING_ENV):
            store.mkdir(parents=True, exist_ok=True)
            self._cache_file, self._store_file = self._store_file, None

    def _load_overload(self, sig: Any, target_context: Any) -> Any:
        """The cached code of ``sig``: this cache's, else the precompiled store's."""
        data = super()._load_overload(sig, target_context)
        if data is None and self._enabled and self._store_file is not None:
            data = self._store_file.load(self._index_key(sig, target_context.codegen()))
            if data is not None:
                data = self._impl.rebuild(target_context, data)
        return data

    def _index_key(self, sig: Any, codegen: Any) -> tuple:
        """Numba's key (signature, machine, bytecode hash) plus the bindings of a
        :func:`specialize` copy (Design G), so the copies of one function never collide."""
        return (*super()._index_key(sig, codegen), getattr(self._py_func, VARIANT, None))


def _run_uncached(name: str, reason: BaseException) -> None:
    if not _uncached:
        _uncached.append(f"{name}: {reason}")
        warnings.warn(
            "fastnn's numba kernels run uncached (compiled again in every process, results "
            f"unchanged): no writable cache directory ({reason}). Set NUMBA_CACHE_DIR to a "
            "writable directory to cache them.",
            RuntimeWarning,
            stacklevel=3,
        )


def uncached_reason() -> str | None:
    """Why this process compiles without a disk cache, or None when caching works."""
    return _uncached[0] if _uncached else None


def kernel(func: Callable) -> Callable:
    """Compile ``func`` with fastnn's JIT flags (lazily, on the first call) and disk cache."""
    dispatcher = numba.njit(**JIT_OPTIONS)(func)
    if CACHE and isinstance(dispatcher, Dispatcher):  # not under NUMBA_DISABLE_JIT=1
        try:
            dispatcher._cache = _StampedCache(func)
        except RuntimeError as exc:  # "cannot cache function ...: no locator available"
            _run_uncached(func.__qualname__, exc)
    return dispatcher


def _qualified(func: Callable) -> str:
    py_func = getattr(func, "py_func", func)  # a dispatcher, or the function under DISABLE_JIT
    return f"{py_func.__module__}.{py_func.__qualname__}"


def specialize(func: Callable, **bindings: Callable) -> Callable:
    """Compile a copy of ``func`` whose globals named in ``bindings`` are replaced (Design G).

    ``func`` is a plain function (not yet a kernel) whose body calls the bound names; each
    binding is a kernel. The copy is cached on disk like any :func:`kernel`, keyed by its
    bindings as well (the names of the bound kernels).
    """
    copy = types.FunctionType(
        func.__code__, {**func.__globals__, **bindings}, func.__name__, func.__defaults__,
        func.__closure__,
    )  # fmt: skip
    copy.__qualname__ = func.__qualname__
    copy.__doc__ = func.__doc__
    setattr(copy, VARIANT, tuple(sorted((k, _qualified(v)) for k, v in bindings.items())))
    return kernel(copy)


def parallel_kernel(func: Callable) -> Callable:
    """:func:`kernel` with ``parallel=True``: its ``prange`` loops run on Numba's threading
    layer (Design F). Compiled on its first call only, so one-thread processes never pay it."""
    dispatcher = numba.njit(parallel=True, **JIT_OPTIONS)(func)
    if CACHE and isinstance(dispatcher, Dispatcher):
        try:
            dispatcher._cache = _StampedCache(func)
        except RuntimeError as exc:
            _run_uncached(func.__qualname__, exc)
    return dispatcher
