"""Inputs cast batch by batch from the user's array: ``fit`` never holds a converted copy of X.

Design:

A. The kernels take C-contiguous arrays of the model dtype. An ``X`` that already is one (and
   has no ``input_scale``) goes to them as it is: no copy at all.
B. Any other ``X`` (float64 or uint8 for a float32 model, a Fortran-ordered or strided view, a
   ``numpy.memmap`` of another dtype, or any ``X`` with an ``input_scale``) stays the caller's
   array. Each epoch's permutation is cut into parts of whole batches; a part's rows are
   gathered and cast into one buffer of the model dtype, allocated once per ``fit`` and sized
   at about ``FEED_FRACTION`` of X's bytes, and the kernels train on that buffer with the
   identity order. The same batches in the same order give bit-identical weights to training
   on the converted array (:func:`convert`).
C. A gather reads at most ``GATHER_BYTES`` of X's dtype, and a quarter of the part, at a
   time (``X[rows]`` makes a temporary of that size; a float64 ``X`` gathered whole would
   double the buffer).
D. The cast is ``dtype(X)``, or ``dtype(float64(X) * input_scale)`` with a scale: for uint8
   pixels and ``input_scale=1/255`` that is exactly ``dtype(X) / 255`` in float32, what
   ``load_mnist(normalize=True)`` holds.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

#: Size of the per-fit input buffer, as a fraction of X's bytes (at least one batch).
FEED_FRACTION = 0.05
#: Floor of that buffer, so a small X is one part per epoch, not one call per batch.
MIN_FEED_BYTES = 256 << 10
#: Largest temporary of X's own dtype that one gather makes.
GATHER_BYTES = 1 << 20


def is_direct(X: np.ndarray, dtype: np.dtype, scale: float | None) -> bool:
    """True when the kernels can read ``X`` itself (C-contiguous, ``dtype``, no scale)."""
    return scale is None and X.dtype == dtype and X.flags.c_contiguous and X.flags.aligned


def cast_into(X: np.ndarray, rows: np.ndarray | slice, out: np.ndarray, scale: float | None):
    """``out[...] = X[rows]`` cast to ``out.dtype`` (times ``scale``), in bounded pieces.

    Parameters
    ----------
    X : ndarray, shape (n, *sample_shape)
        Any real dtype and layout (a memmap is read only where ``rows`` point).
    rows : ndarray of int, shape (m,), or slice
        The rows of ``X`` to read, in order.
    out : ndarray, shape (m, *sample_shape)
        OUT, of the model dtype.
    scale : float or None
        Factor applied in float64 before the cast to ``out.dtype``.
    """
    m = out.shape[0]
    # At most GATHER_BYTES, and a quarter of the part: the temporary stays small beside it.
    step = max(1, min(GATHER_BYTES // max(1, X[:1].nbytes), -(-m // 4)))
    first = rows.indices(X.shape[0])[0] if isinstance(rows, slice) else 0
    if isinstance(rows, slice) and rows.indices(X.shape[0])[2] != 1:
        rows = np.arange(*rows.indices(X.shape[0]))
    for s in range(0, m, step):
        # A slice of consecutive rows is a view; an index array gathers a bounded temporary.
        sub = (
            slice(first + s, first + min(s + step, m))
            if isinstance(rows, slice)
            else rows[s : s + step]
        )
        block = X[sub]
        if scale is None:
            out[s : s + step] = block  # the rounding of astype
        else:
            np.multiply(block, scale, out=out[s : s + step], dtype=np.float64, casting="unsafe")
        del block  # else the next gather runs while this one is alive: twice the temporary


def convert(X: np.ndarray, dtype: np.dtype, scale: float | None = None) -> np.ndarray:
    """All of ``X`` as the model sees it: C-contiguous ``dtype``, cast as :func:`cast_into`.

    A full copy: for small arrays and for the tests that compare with the per-part path.
    """
    out = np.empty(X.shape, dtype=dtype)
    cast_into(X, slice(None), out, scale)
    return out


class Feed:
    """The training inputs of one ``fit`` as the epoch kernels take them.

    Parameters
    ----------
    X : ndarray, shape (n, *input_shape)
        The caller's array, checked (finite) but not converted.
    targets : ndarray, shape (n,) or (n, k)
        Already in the dtype the loss kernel takes.
    dtype : numpy dtype
        The model dtype.
    scale : float or None
        ``input_scale``.
    batch_size : int
        Every part but the last of an epoch holds whole batches.

    Attributes
    ----------
    direct : bool
        The kernels read ``X`` itself (no buffer).
    rows : int
        Rows of one part (a multiple of ``batch_size``, or n).
    """

    def __init__(
        self,
        X: np.ndarray,
        targets: np.ndarray,
        dtype: np.dtype,
        scale: float | None,
        batch_size: int,
    ) -> None:
        self.X, self.targets, self.scale = X, targets, scale
        n = X.shape[0]
        self.direct = is_direct(X, dtype, scale)
        self.rows = n if self.direct else part_rows(X, dtype, batch_size)
        if not self.direct:
            self.x_buffer = np.empty((self.rows, *X.shape[1:]), dtype=dtype)
            self.t_buffer = np.empty((self.rows, *targets.shape[1:]), dtype=targets.dtype)
            self.identity = np.arange(self.rows, dtype=np.int64)

    def parts(self, order: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(X, targets, order)`` to hand to ``train_epoch`` in turn for the rows ``order``.

        Direct: one part, the arrays themselves. Otherwise each part is ``rows`` rows of
        ``order`` gathered into the buffers (valid until the next part), with the identity
        order. ``order`` must be cut at multiples of ``batch_size`` by the caller.
        """
        if self.direct:
            yield self.X, self.targets, order
            return
        for start in range(0, order.shape[0], self.rows):
            idx = order[start : start + self.rows]
            m = idx.shape[0]
            cast_into(self.X, idx, self.x_buffer[:m], self.scale)
            np.take(self.targets, idx, axis=0, out=self.t_buffer[:m])
            yield self.x_buffer[:m], self.t_buffer[:m], self.identity[:m]


def part_rows(X: np.ndarray, dtype: np.dtype, batch_size: int) -> int:
    """Rows of one part: whole batches whose buffer is about ``FEED_FRACTION`` of X's bytes."""
    n = X.shape[0]
    row_bytes = max(1, int(np.prod(X.shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize)
    budget = max(FEED_FRACTION * X.nbytes, MIN_FEED_BYTES)
    rows = max(1, int(budget // row_bytes) // batch_size) * batch_size
    return min(rows, n)
