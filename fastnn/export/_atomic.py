"""Write a file so that it is either all there or not there at all."""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path


def write_atomic(path: str | os.PathLike[str], data: bytes, what: str) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same directory.

    The temporary file is renamed into place only once it is complete and flushed to disk, so a
    failure at any point (full disk, interrupt, unwritable directory) leaves ``path`` as it was
    and no temporary file behind.

    Parameters
    ----------
    path : str or path-like
        Destination file; an existing file is replaced.
    data : bytes
    what : str
        What the file is ("ONNX file"), for the error messages.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    IsADirectoryError, FileNotFoundError, NotADirectoryError, PermissionError, OSError
        The path cannot be written; the message names it and says why.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(
            errno.EISDIR, f"cannot write the {what}: {str(path)!r} is a directory; "
            f"give a file name such as {str(path / 'model.onnx')!r}",
        )  # fmt: skip
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        # os.open with 0o666 honours the umask, as a plain open() would (mkstemp forces 0o600).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if isinstance(exc, FileNotFoundError):
            reason = f"its directory {str(path.parent)!r} does not exist"
        elif isinstance(exc, NotADirectoryError):
            reason = f"{str(path.parent)!r} is not a directory"
        raise _os_error(exc, f"cannot write the {what} {str(path)!r}: {reason}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # full disk, quota, a target that became a directory, ...
        tmp.unlink(missing_ok=True)
        msg = f"cannot write the {what} {str(path)!r}: {exc.strerror or exc}"
        raise _os_error(exc, msg) from exc
    except BaseException:  # an interrupt: still leave nothing behind
        tmp.unlink(missing_ok=True)
        raise
    return path


def _os_error(exc: OSError, message: str) -> OSError:
    """An error of the same class as ``exc`` (so callers can catch PermissionError etc.)."""
    if exc.errno is None:
        return type(exc)(message)
    return type(exc)(exc.errno, message)
