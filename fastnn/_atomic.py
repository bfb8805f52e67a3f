"""Writing a file so that readers see the old or the new content, never a part, and no debris.

Two ways, best first:

- **Anonymous file (Linux).** ``open(dir, O_TMPFILE)`` creates a file with no name in the target
  directory. It is written and synced, then given a temporary name with ``linkat`` (through
  ``/proc/self/fd``) and renamed over the target with ``os.replace``. A process killed while
  writing leaves nothing: the kernel frees a file that has no name. Only the instant between
  the link and the rename leaves a name behind.
- **Named temporary file (elsewhere, or where the file system has no ``O_TMPFILE``).** The
  file is written under a temporary name beside the target, then renamed. A kill while writing
  leaves that temporary file behind.

Temporary names are ``.<target name>.<pid>.<8 hex digits><suffix>``. The pid lets a later write
of the same target tell debris (its process no longer runs) from a write in progress (it
does), and :func:`remove_stale` deletes the debris. On systems without POSIX signals (Windows,
where ``os.kill(pid, 0)`` would end the process) nothing is deleted.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

# A module attribute, so that tests can exercise the named-temporary-file fallback on Linux.
USE_O_TMPFILE = sys.platform.startswith("linux") and hasattr(os, "O_TMPFILE")
_BINARY = getattr(os, "O_BINARY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def temp_path(final: Path, suffix: str = ".tmp") -> Path:
    """A fresh temporary name for ``final``, in its directory, carrying this process's pid."""
    return final.with_name(f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another thread of this process may be writing
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, under another user
        return True
    return True


def remove_stale(final: Path, suffix: str = ".tmp") -> list[Path]:
    """Delete the temporary files of ``final`` whose writing process no longer runs.

    Parameters
    ----------
    final : Path
        The target file; its directory is scanned.
    suffix : str
        The suffix given to :func:`temp_path`.

    Returns
    -------
    list of Path
        The files deleted.
    """
    if os.name != "posix":
        return []
    pattern = re.compile(re.escape(f".{final.name}.") + r"(\d+)\.[0-9a-f]{8}" + re.escape(suffix))
    removed = []
    try:
        entries = list(os.scandir(final.parent))
    except OSError:
        return []
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):  # gone already, or not ours to delete
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable; a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY | _CLOEXEC)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _replace(tmp: Path, final: Path) -> None:
    try:
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_anonymous(final: Path, write: Callable[[BinaryIO], None]) -> bool:
    """Write through an ``O_TMPFILE`` file; False if this file system cannot (nothing written)."""
    try:
        # 0o666 honours the umask, as a plain open() would.
        fd = os.open(final.parent, os.O_TMPFILE | os.O_WRONLY | _CLOEXEC, 0o666)
    except OSError:  # EOPNOTSUPP, EISDIR (old kernels), ...: the named fallback says what is wrong
        return False
    tmp = temp_path(final)
    with os.fdopen(fd, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
        dir_fd = os.open(final.parent, os.O_RDONLY | _CLOEXEC)
        try:
            # dst_dir_fd makes Python call linkat(AT_SYMLINK_FOLLOW), which links the file the
            # /proc entry points to; plain link() would try to link the /proc symlink itself.
            os.link(f"/proc/self/fd/{f.fileno()}", tmp.name, dst_dir_fd=dir_fd,
                    follow_symlinks=True)  # fmt: skip
        except OSError:  # no /proc: write again under a name
            return False
        finally:
            os.close(dir_fd)
    _replace(tmp, final)
    return True


def _write_named(final: Path, write: Callable[[BinaryIO], None]) -> None:
    tmp = temp_path(final)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _BINARY | _CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _replace(tmp, final)


def write_atomic(final: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> None:
    """Replace ``final`` with what ``write(f)`` writes, atomically, leaving no debris.

    Temporary files of ``final`` left by dead processes are deleted first.

    Parameters
    ----------
    final : str or path-like
        The target file. Its directory must exist.
    write : callable
        ``write(f)`` writes the whole content to the binary file ``f``. It may be called twice
        (when the anonymous file cannot be linked), so it must not consume a stream.
    """
    final = Path(final)
    remove_stale(final)
    if not (USE_O_TMPFILE and _write_anonymous(final, write)):
        _write_named(final, write)
    _fsync_dir(final.parent)


def not_writable(directory: Path) -> str | None:
    """Why files cannot be written to ``directory`` (created if missing), or None.

    A directory without any write permission bit counts as read-only even where this process
    could write into it anyway (root ignores the bits): its owner marked it so, as a shared,
    read-only data directory is."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        mode = directory.stat().st_mode
        if not mode & 0o222:
            return f"read-only: mode {stat.filemode(mode)}"
        with tempfile.TemporaryFile(dir=directory):
            pass  # a real write, so read-only mounts are caught as well as permissions
    except OSError as exc:
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    return None
