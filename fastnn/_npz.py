"""Reading the members of a model ``.npz`` with every size checked before anything is inflated.

``numpy.load`` trusts the file: it decompresses a member before looking at it and allocates
whatever shape a member's ``.npy`` header declares. A small file can therefore make it allocate
gigabytes. This reader looks first and reads second:

1. the file must start like a zip (``PK``), else it is not a model file at all;
2. the member names must be unique and of the model's form (``__fastnn__``, ``W<i>``, ``b<i>``,
   ``opt<i>``, each ``.npy``);
3. the record member is small (``RECORD_MAX_BYTES``) and is read alone;
4. the caller compares each member's *declared* uncompressed size with what the record says
   (:func:`check_declared_sizes`), before any array member is decompressed;
5. each array's ``.npy`` header must give the record's dtype and shape before its data is read,
   and exactly that many bytes are read.

``zipfile`` stops inflating at the declared size and then checks the CRC, so a member whose
stream inflates to more than it declares is an error after at most its declared size.
Nothing is unpickled: only float and unicode dtypes are accepted.
"""

from __future__ import annotations

import math
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

RECORD_MAX_BYTES = 16 * 2**20
NPY_HEADER_MAX = 65536 + 16  # a version 1.0 header: at most 65535 bytes after 10 fixed bytes
_NAME = re.compile(r"(?:W|b|opt)\d+")
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a member first, or an empty archive


class NpzError(ValueError):
    """The file is not a well-formed model archive; the message names the problem."""


def check_is_zip(path: Path) -> None:
    """Raise NpzError unless ``path`` starts like a zip archive, saying what it looks like."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:4] in _ZIP_MAGICS:
        return
    if head.startswith(b"\x93NUMPY"):
        raise NpzError(f"{path} is not a fastnn model file (.npy, not .npz)")
    what = "an empty file" if not head else f"it starts with {head[:4]!r}"
    raise NpzError(
        f"{path} is not a fastnn model file: not a zip archive ({what}); "
        "a fastnn model is an .npz written by Sequential.save"
    )


def members(zf: zipfile.ZipFile, path: Path, record_key: str) -> dict[str, zipfile.ZipInfo]:
    """The array members by name (without ``.npy``), with the record's under ``record_key``."""
    found: dict[str, zipfile.ZipInfo] = {}
    for info in zf.infolist():
        name = info.filename
        key = name[:-4] if name.endswith(".npy") else None
        if key in found:
            raise NpzError(f"{path}: member {name!r} appears twice")
        if key is None or not (key == record_key or _NAME.fullmatch(key)):
            if record_key + ".npy" not in zf.namelist():
                raise NpzError(f"{path} is an .npz file but not a fastnn model "
                               f"(no {record_key!r} record)")  # fmt: skip
            raise NpzError(f"{path}: unexpected member {name!r} in a fastnn model file")
        found[key] = info
    if record_key not in found:
        raise NpzError(f"{path} is an .npz file but not a fastnn model (no {record_key!r} record)")
    return found


def _header(f: Any, name: str, path: Path) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    raise NpzError(f"{path}: member {name!r} has .npy format version {version}")


def read_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path,
    dtype_names: tuple[str, ...], shape: tuple[int, ...] | None,
) -> np.ndarray:  # fmt: skip
    """The array of one member, after its header matched ``dtype_names`` and ``shape``.

    ``shape=None`` accepts any shape whose size fits the member's declared size.
    """
    name = info.filename
    with zf.open(info) as f:
        header_shape, fortran, dtype = _header(f, name, path)
        if dtype.name not in dtype_names or dtype.hasobject:
            raise NpzError(f"{path}: member {name!r} holds {dtype}, expected "
                           f"{' or '.join(dtype_names)}")  # fmt: skip
        if shape is not None and tuple(header_shape) != tuple(shape):
            raise NpzError(f"{path}: member {name!r} has shape {tuple(header_shape)}, "
                           f"the record says {tuple(shape)}")  # fmt: skip
        nbytes = math.prod(header_shape) * dtype.itemsize
        if nbytes > info.file_size:
            raise NpzError(f"{path}: member {name!r} declares {info.file_size} bytes, "
                           f"too few for {dtype}{list(header_shape)}")  # fmt: skip
        data = f.read(nbytes)
        if len(data) != nbytes or f.read(1):
            raise NpzError(f"{path}: member {name!r} holds {len(data)} bytes of data, "
                           f"its header declares {nbytes}")  # fmt: skip
    order = "F" if fortran else "C"
    return np.frombuffer(data, dtype=dtype).reshape(header_shape, order=order)


def read_record(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> str:
    """The JSON text of the record member (a 0-d unicode array), size-limited."""
    if info.file_size > RECORD_MAX_BYTES:
        raise NpzError(f"{path}: the record member declares {info.file_size} bytes, "
                       f"more than the {RECORD_MAX_BYTES} a model record may have")  # fmt: skip
    with zf.open(info) as f:
        shape, _, dtype = _header(f, info.filename, path)
    if dtype.kind != "U" or tuple(shape) != ():
        raise NpzError(f"{path}: the record member is not a JSON string")
    return str(read_member(zf, info, path, (dtype.name,), ())[()])


def check_declared_sizes(
    found: dict[str, zipfile.ZipInfo], expected: dict[str, tuple[tuple[int, ...], np.dtype]],
    path: Path, max_bytes: int,
) -> None:  # fmt: skip
    """Compare each member's declared size with the record's shape and dtype, and the total
    with ``max_bytes``, before any array member is decompressed."""
    total = sum(math.prod(shape) * dtype.itemsize for shape, dtype in expected.values())
    if total > max_bytes:
        raise NpzError(
            f"{path}: the record declares {total:,} bytes of arrays, more than "
            f"max_bytes={max_bytes:,}; pass load(..., max_bytes=...) to load a model this large"
        )
    for key, (shape, dtype) in expected.items():
        info = found[key]
        nbytes = math.prod(shape) * dtype.itemsize
        if not nbytes < info.file_size <= nbytes + NPY_HEADER_MAX:
            raise NpzError(
                f"{path}: member {info.filename!r} declares {info.file_size:,} bytes "
                f"uncompressed, but the record's {dtype}{list(shape)} needs {nbytes:,} bytes "
                "plus a header (a damaged or malicious file)"
            )
