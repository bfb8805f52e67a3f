"""Training with denormals flushed to zero, as TensorFlow does by default.

A float32 below 1.2e-38 in magnitude (a *subnormal*, or denormal) costs a microcode assist of
about a hundred cycles on many x86 CPUs, for every operation that reads or makes one, and
training makes them in bulk: the moments of Adam and the velocity of momentum decay
geometrically for weights that rarely get a gradient, and squares of tiny gradients land below
the normal range at once. Measured on an Intel Xeon (AVX-512) host: one Adam step over 205,000
weights took 8.65 ms with most of its second moment subnormal and 0.19 ms with them flushed;
the MNIST_99 CNN trained 1.47x faster at batch 32. Flushing changes values below 1.2e-38
(2.2e-308 in float64) to zero, far below anything a weight update can see.

So ``fit`` runs its epochs with the x86 control register's FTZ (subnormal results become 0)
and DAZ (subnormal inputs read as 0) bits set, on the calling thread and on every thread of
the compiled backends' teams, and puts the caller's bits back after each epoch. Callbacks at
the epoch boundaries run outside it; per-iteration callbacks (schedules) run inside. Every
backend trains under the same mode, the NumPy reference included, so they stay comparable.
``predict`` is left alone: a forward pass makes no decaying state. The worker threads of a
multi-threaded BLAS (NumPy's, SciPy's) keep their own register; what they make is read as zero
by the flushed threads.

``set_flush_denormals(False)``, or ``FASTNN_FLUSH_DENORMALS=0`` in the environment, turns it
off (``torch.set_flush_denormal`` is the PyTorch equivalent, off by default there). It needs a
compiled helper: the Cython extension, else Numba; a NumPy-only install on x86-64, or any
other architecture, trains with the register as the caller left it, and
``flush_denormals_supported()`` says so.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ._codes import FLUSH_BITS  # MXCSR FTZ + DAZ, the value every backend uses

_enabled: bool | None = None  # None: flush where supported (the default)


@functools.lru_cache(maxsize=1)
def _swapper() -> Callable[[int], int] | None:
    """``swap(bits) -> old bits`` of the calling thread, from a compiled backend, or None.

    Cython first: its extension imports in milliseconds, where Numba takes half a second.
    """
    from .backends import load_backend

    for name in ("cython", "numba"):
        module = load_backend(name)
        if module is not None and getattr(module, "FP_MODE_SUPPORTED", False):
            return module.swap_fp_mode
    return None


def flush_denormals_supported() -> bool:
    """Whether fastnn can flush denormals on this machine and install (x86-64, with the Cython
    extension or Numba)."""
    return _swapper() is not None


def set_flush_denormals(enabled: bool) -> None:
    """Train with denormals flushed to zero (the default where supported) or not.

    Parameters
    ----------
    enabled : bool

    Raises
    ------
    RuntimeError
        ``enabled`` is True and this machine or install cannot flush (see
        :func:`flush_denormals_supported`).
    """
    global _enabled
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {type(enabled).__name__}")
    if enabled and not flush_denormals_supported():
        raise RuntimeError(
            "cannot flush denormals here: it needs an x86-64 CPU and the Cython extension or "
            "Numba (pip install 'fastnn[numba]')"
        )
    _enabled = enabled


def get_flush_denormals() -> bool:
    """Whether ``fit`` flushes denormals: the setting, else ``FASTNN_FLUSH_DENORMALS``, else
    True where supported."""
    if _enabled is not None:
        return _enabled
    env = os.environ.get("FASTNN_FLUSH_DENORMALS", "").strip().lower()
    if env in ("0", "false", "no", "off"):
        return False
    return flush_denormals_supported()


@contextmanager
def training_mode() -> Iterator[None]:
    """Within the block this thread flushes denormals when :func:`get_flush_denormals`; the
    thread's own bits come back at the end."""
    swap = _swapper() if get_flush_denormals() else None
    if swap is None:
        yield
        return
    old = swap(FLUSH_BITS)
    try:
        yield
    finally:
        swap(old)
