"""Work arrays kept per calling thread between kernel calls (both compiled backends).

A new array of a few hundred KB per call is fresh pages whose faults cost more than the
kernel at small batches (MNIST_99 at batch 32), so the per-batch conv/pool paths keep theirs,
grown on demand. Kept per Python thread: two fits in two threads never share one.
"""

from __future__ import annotations

import math
import threading

import numpy as np

_local = threading.local()


def scratch(name: str, k: int, shape: tuple, dtype: np.dtype) -> np.ndarray:
    """The calling thread's work array ``name`` for part ``k`` of its calls (a team thread),
    of ``shape`` and ``dtype``. Contents are undefined: zero it where that matters."""
    bufs = _local.__dict__.setdefault("bufs", {})
    key = (name, k, np.dtype(dtype))
    size = math.prod(shape)
    buf = bufs.get(key)
    if buf is None or buf.shape[0] < size:
        buf = bufs[key] = np.empty(max(size, 1), dtype)
    return buf[:size].reshape(shape)
