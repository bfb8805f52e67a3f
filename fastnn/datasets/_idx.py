"""The IDX file format (the format of MNIST), gzip-compressed or raw.

An IDX file is a header followed by one array in C order, big-endian::

    bytes 0-1   0x00 0x00          (the first half of the "magic number")
    byte  2     dtype code         0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                                   0x0D float32, 0x0E float64
    byte  3     ndim               number of dimensions
    4*ndim      sizes              one big-endian uint32 per dimension
    rest        data               prod(sizes) items of the dtype, nothing after them

The whole file is read into memory and checked against its header before any array is
built, so a damaged file is a ``ValueError`` naming the file and the problem, never a
wrongly shaped array or a huge allocation driven by a garbage header.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["read_idx"]

IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"


def read_content(path: str | os.PathLike[str]) -> bytes:
    """The bytes of ``path``, decompressed when it is gzip.

    A file is taken as gzip when it starts with the gzip magic number or its name ends in
    ``.gz`` (so a ``.gz`` file that is not gzip is reported as such, not parsed as IDX).
    gzip checks the CRC-32 and length stored in its trailer, which catches corruption
    inside the compressed stream.

    Raises
    ------
    ValueError
        The file is named or looks like gzip but does not decompress.
    OSError
        The file cannot be read (missing, permissions).
    """
    path = Path(path)
    raw = path.read_bytes()
    if not (raw[:2] == GZIP_MAGIC or path.name.endswith(".gz")):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise ValueError(f"{path}: bad gzip data ({exc})") from None


def parse_idx(data: bytes, name: str | os.PathLike[str]) -> np.ndarray:
    """The array held by the IDX bytes ``data``, as a read-only big-endian view of them.

    Parameters
    ----------
    data : bytes
        A whole decompressed IDX file.
    name : str or path
        The file name, for error messages.

    Returns
    -------
    ndarray, shape given by the header
        A view of ``data`` (no copy), with the header's big-endian dtype.

    Raises
    ------
    ValueError
        Wrong magic number, unknown dtype code, no dimensions, truncated header or data, or
        bytes after the data.
    """
    if len(data) < 4:
        raise ValueError(f"{name}: too short for an IDX header ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"{name}: wrong magic number 0x{data[:4].hex()} "
            "(an IDX file starts with two zero bytes)"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise ValueError(f"{name}: unknown IDX dtype code 0x{code:02X} (known: {known})")
    if ndim == 0:
        raise ValueError(f"{name}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"{name}: truncated IDX header ({len(data)} bytes, {header} needed for {ndim} sizes)"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = IDX_DTYPES[code]
    count = math.prod(shape)
    # Python ints: a garbage header cannot overflow this product.
    expected = header + count * dtype.itemsize
    if len(data) < expected:
        raise ValueError(
            f"{name}: truncated data: header declares shape {shape} of {dtype.name} "
            f"({expected - header} bytes) but only {len(data) - header} bytes follow it"
        )
    if len(data) > expected:
        raise ValueError(
            f"{name}: trailing garbage: {len(data) - expected} bytes after the data "
            f"of shape {shape} declared by the header"
        )
    return np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(shape)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file, gzip-compressed or raw.

    Parameters
    ----------
    path : str or path-like
        The file, e.g. ``train-images-idx3-ubyte.gz`` or ``t10k-labels-idx1-ubyte``.

    Returns
    -------
    ndarray, shape ``(d0, d1, ...)`` as declared by the header
        A new writable array in native byte order, with the dtype the header declares
        (uint8 for MNIST: images ``(n, 28, 28)``, labels ``(n,)``).

    Raises
    ------
    ValueError
        Bad gzip data, wrong magic number, unknown dtype code, truncated header or data,
        or trailing bytes; the message names the file and the problem.
    OSError
        The file cannot be read.

    Examples
    --------
    >>> labels = read_idx("data/mnist/t10k-labels-idx1-ubyte.gz")  # doctest: +SKIP
    >>> labels.shape, labels.dtype
    ((10000,), dtype('uint8'))
    """
    view = parse_idx(read_content(path), path)
    # astype copies: the result owns writable memory instead of viewing immutable bytes.
    return view.astype(view.dtype.newbyteorder("="))
