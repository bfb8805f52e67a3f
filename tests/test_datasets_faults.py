"""load_mnist against a real HTTP server on 127.0.0.1 that misbehaves.

The server (``http.server``, threaded, started per test) serves small generated IDX files whose
checksums are registered in place of MNIST's, under two mirrors ``/a/`` and ``/b/`` given
through ``$FASTNN_MNIST_MIRRORS``. Each file can be served whole, truncated (a full
``Content-Length``, then the connection closes), corrupted (one flipped byte), after a delay
longer than the client's timeout, or trickled byte by byte. Only loopback addresses are ever
contacted: anything else fails the test, and npm is disabled.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from fastnn.datasets import _download, load_mnist, mnist, mnist_cache_dir

STEMS = list(mnist.MNIST_SHA256)
TIMEOUT_S = 0.5  # the client's socket timeout in these tests
HANG_S = 20.0  # a slow handler waits this long, or until the test ends


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + array.tobytes()


def fake_contents(seed: int = 0) -> dict[str, bytes]:
    """Decompressed IDX bytes of a tiny MNIST look-alike: 12 training and 5 test images."""
    rng = np.random.default_rng(seed)
    arrays = []
    for n in (12, 5):
        arrays.append(rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8))
        arrays.append(rng.integers(0, 10, size=n).astype(np.uint8))
    return {stem: idx_bytes(a) for stem, a in zip(STEMS, arrays, strict=True)}


def flip(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.routes[path] = (mode, body)``; 404 for anything else."""

    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        self.server.requests.append(self.path)
        mode, body = self.server.routes.get(self.path, ("missing", b""))
        if mode == "missing":
            self.send_error(404)
            return
        if mode == "slow":  # nothing at all until long after the client's timeout
            self.server.stop.wait(HANG_S)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "ok":
            self.wfile.write(body)
        elif mode == "corrupt":
            self.wfile.write(flip(body))
        elif mode == "truncated":
            self.wfile.write(body[: len(body) // 2])  # then the connection closes
        elif mode == "trickle":  # each byte well within the timeout, the file never done
            for i in range(len(body)):
                if self.server.stop.wait(TIMEOUT_S / 5):
                    return
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture
def server(monkeypatch):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.routes, httpd.requests, httpd.stop = {}, [], threading.Event()
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.mirrors = (f"{base}/a/", f"{base}/b")  # the second without its slash, on purpose
    monkeypatch.setenv("FASTNN_MNIST_MIRRORS", ",".join(httpd.mirrors))
    yield httpd
    httpd.stop.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A private cache, no FASTNN_DATA, no npm, no proxy, loopback only, fake checksums."""
    real_urlopen = urllib.request.urlopen

    def loopback_only(url, timeout):
        assert urllib.parse.urlsplit(url).hostname == "127.0.0.1", f"non-loopback URL {url}"
        return real_urlopen(url, timeout=timeout)

    def no_npm(*args, **kwargs):
        raise AssertionError("a test tried to run npm")

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("FASTNN_DATA", raising=False)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setattr(_download, "_urlopen", loopback_only)
    monkeypatch.setattr(_download, "_run_command", no_npm)
    monkeypatch.setattr(_download.shutil, "which", lambda name: None)
    monkeypatch.setattr(_download, "TIMEOUT_S", TIMEOUT_S)
    monkeypatch.setattr(_download, "DEADLINE_S", 4 * TIMEOUT_S)
    monkeypatch.setattr(mnist, "_verified", set())
    for stem, data in fake_contents().items():
        monkeypatch.setitem(mnist.MNIST_SHA256, stem, hashlib.sha256(data).hexdigest())


def serve(server, mirror: int, mode: str = "ok", stems=STEMS, contents=None) -> None:
    prefix = urllib.parse.urlsplit(server.mirrors[mirror]).path.rstrip("/")
    contents = contents or fake_contents()
    for stem in stems:
        server.routes[f"{prefix}/{stem}.gz"] = (mode, gzip.compress(contents[stem]))


def run_bounded(func, *args, **kwargs):
    """Call ``func``; a call still running after a minute is a hang and fails the test."""
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["value"] = func(*args, **kwargs)
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), f"{func.__name__} hung"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory)) if directory.exists() else []


def assert_loaded(result, seed: int = 0) -> None:
    _, y, _, yt = result
    contents = fake_contents(seed)
    np.testing.assert_array_equal(y, np.frombuffer(contents[STEMS[1]][8:], np.uint8))
    np.testing.assert_array_equal(yt, np.frombuffer(contents[STEMS[3]][8:], np.uint8))


# --------------------------------------------------------------------- serving faults


def test_good_server_fills_the_root(server, tmp_path):
    serve(server, 0)
    assert_loaded(load_mnist(root=tmp_path / "data"))
    assert listing(tmp_path / "data") == sorted(f"{s}.gz" for s in STEMS)
    assert len(server.requests) == 4 and not mnist_cache_dir().exists()


@pytest.mark.parametrize("mode", ["truncated", "corrupt"])
def test_bad_copy_on_one_mirror_is_replaced_by_the_next(server, tmp_path, mode):
    serve(server, 0, mode)
    serve(server, 1)
    assert_loaded(load_mnist(root=tmp_path / "data"))
    assert listing(tmp_path / "data") == sorted(f"{s}.gz" for s in STEMS)  # no .part left
    assert len(server.requests) == 8  # an HTTP answer does not disable a mirror


@pytest.mark.parametrize(
    ("mode", "problem"),
    [("truncated", r"truncated download: \d+ of \d+ bytes"), ("corrupt", "bad gzip|SHA-256")],
)
def test_only_bad_copies_leave_nothing_and_say_why(server, tmp_path, mode, problem):
    serve(server, 0, mode)
    serve(server, 1, mode)
    with pytest.raises(FileNotFoundError, match=problem) as info:
        load_mnist(root=tmp_path / "data")
    assert server.mirrors[0] + STEMS[0] in str(info.value)
    assert listing(tmp_path / "data") == []  # nothing partial under any name


def test_silent_mirror_times_out_and_is_skipped_for_the_other_files(server, tmp_path):
    serve(server, 0, "slow")
    serve(server, 1)
    assert_loaded(run_bounded(load_mnist, root=tmp_path / "data"))
    slow = [r for r in server.requests if r.startswith("/a/")]
    assert len(slow) == 1  # not one timeout per file


def test_timeouts_everywhere_give_a_clear_error(server, tmp_path):
    serve(server, 0, "slow")
    serve(server, 1, "trickle")
    with pytest.raises(FileNotFoundError) as info:
        run_bounded(load_mnist, root=tmp_path / "data")
    message = str(info.value)
    assert f"timed out: nothing received for {TIMEOUT_S:g} s" in message
    assert "timed out: still downloading after 2 s" in message
    assert listing(tmp_path / "data") == []


def test_http_error_is_reported(server, tmp_path):
    with pytest.raises(FileNotFoundError, match="HTTP Error 404"):
        load_mnist(root=tmp_path / "data")


# ----------------------------------------------------------------------- the cache


@pytest.mark.parametrize(
    "damage", [flip, lambda gz: gz[: len(gz) // 2]], ids=["checksum", "truncated"]
)
def test_damaged_cached_file_is_fetched_again(server, damage, capsys):
    serve(server, 0)
    cache = mnist_cache_dir()
    cache.mkdir(parents=True)
    for stem, data in fake_contents().items():
        (cache / f"{stem}.gz").write_bytes(gzip.compress(data))
    bad = cache / f"{STEMS[2]}.gz"
    bad.write_bytes(damage(bad.read_bytes()))
    assert_loaded(load_mnist())
    assert server.requests == [f"/a/{STEMS[2]}.gz"]  # only the damaged file
    assert gzip.decompress(bad.read_bytes()) == fake_contents()[STEMS[2]]
    assert "downloading it again" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("stem", "problem"),
    [(STEMS[2], "SHA-256 .* delete it to download it again"),
     (STEMS[3], "truncated data.* delete it, or pass download=True, to download it again")],
    ids=["checksum", "structure"],
)  # fmt: skip
def test_damaged_cached_file_without_download_is_refused(server, stem, problem):
    cache = mnist_cache_dir()
    cache.mkdir(parents=True)
    for name, data in fake_contents().items():
        (cache / f"{name}.gz").write_bytes(gzip.compress(flip(data) if name == stem else data))
    with pytest.raises(ValueError, match=problem):
        load_mnist(download=False)
    assert server.requests == []


def test_damaged_file_in_a_user_root_is_reported_not_deleted(server, tmp_path):
    serve(server, 0)
    root = tmp_path / "data"
    root.mkdir()
    for stem, data in fake_contents().items():
        (root / f"{stem}.gz").write_bytes(gzip.compress(flip(data)))
    with pytest.raises(ValueError, match="SHA-256"):
        load_mnist(root=root)
    assert listing(root) == sorted(f"{s}.gz" for s in STEMS) and server.requests == []


# -------------------------------------------------------- explicit choices honoured


def test_partial_root_is_never_completed_from_the_cache(server, tmp_path):
    cache = mnist_cache_dir()
    cache.mkdir(parents=True)
    other = fake_contents(seed=1)  # in the cache: not what the root holds
    for stem, data in other.items():
        (cache / f"{stem}.gz").write_bytes(gzip.compress(data))
    root = tmp_path / "data"
    root.mkdir()
    for stem in STEMS[:2]:
        (root / f"{stem}.gz").write_bytes(gzip.compress(fake_contents()[stem]))
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(root=root, download=False)
    first, second = str(info.value).splitlines()[:2]
    assert "t10k-images-idx3-ubyte" in first and "train-images" not in first
    assert str(root) in second and "no other directory" in second
    serve(server, 0)
    assert_loaded(load_mnist(root=root))  # download=True completes the root itself
    assert server.requests == [f"/a/{s}.gz" for s in STEMS[2:]]
    assert len(listing(root)) == 4


def test_verify_false_never_downloads_mnist(server, tmp_path):
    serve(server, 0)
    cache = mnist_cache_dir()
    cache.mkdir(parents=True)
    for stem, data in fake_contents().items():  # MNIST in the cache, as after a download
        (cache / f"{stem}.gz").write_bytes(gzip.compress(data))
    with pytest.raises(FileNotFoundError, match="verify=False") as info:
        load_mnist(root=tmp_path / "fashion-typo", verify=False)
    assert str(tmp_path / "fashion-typo") in str(info.value)
    assert server.requests == []


def test_unwritable_root_says_why_nothing_was_downloaded(server, tmp_path):
    serve(server, 0)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(FileNotFoundError, match="Cannot download into .* not writable"):
        load_mnist(root=blocker / "mnist")
    assert server.requests == []


def test_read_only_root(server, tmp_path):
    # Refused from the mode bits, for root too (who could write there): a shared data
    # directory marked read-only is never written into.
    serve(server, 0)
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o555)
    try:
        with pytest.raises(FileNotFoundError, match=r"not writable \(read-only: mode dr-xr-xr-x"):
            load_mnist(root=root)
        assert list(root.iterdir()) == [] and server.requests == []
    finally:
        root.chmod(0o755)


@pytest.mark.parametrize("value", ["ftp://127.0.0.1/", "127.0.0.1/mnist", "http://", ","])
def test_bad_mirror_list_is_refused(tmp_path, monkeypatch, value):
    monkeypatch.setenv("FASTNN_MNIST_MIRRORS", value)
    with pytest.raises(ValueError, match="FASTNN_MNIST_MIRRORS must hold"):
        load_mnist(root=tmp_path / "data")


def test_stale_part_file_of_a_dead_download_is_removed(server, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    stale = root / f".{STEMS[0]}.gz.999999999.0123abcd.part"  # no such pid
    stale.write_bytes(b"half a download")
    serve(server, 0)
    load_mnist(root=root)
    assert listing(root) == sorted(f"{s}.gz" for s in STEMS)
