"""fastnn._npz through fastnn.load: names and sizes are checked before anything is inflated.

A zip bomb (a small file with a huge deflated member) must be rejected without the memory or
the time that inflating it would take; tracemalloc measures the memory (NumPy reports its
allocations to it). No test asserts a time.
"""

from __future__ import annotations

import io
import json
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest

import fastnn
from fastnn.io import ModelFileError

BOMB_BYTES = 64 * 2**20  # inflated size of the bomb member; it deflates to about 64 KB


@pytest.fixture
def saved(tmp_path):
    model = fastnn.Sequential([fastnn.Dense(6, 5, "relu"), fastnn.Dense(5, 3)], seed=0)
    path = tmp_path / "model.npz"
    model.save(path)
    return model, path


def members_of(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def write_zip(path, members: list[tuple[str, bytes]], deflate: bool = False) -> None:
    mode = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=mode) as zf:
        for name, data in members:
            zf.writestr(name, data)


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array)
    return buf.getvalue()


def load_peak_bytes(path, **kwargs) -> tuple[BaseException | None, int]:
    tracemalloc.start()
    try:
        fastnn.load(path, **kwargs)
        error = None
    except ModelFileError as exc:
        error = exc
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return error, peak


def test_zip_bomb_member_is_rejected_before_inflating(saved, tmp_path):
    _, path = saved
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members_of(path).items():
            if name != "W0.npy":
                zf.writestr(name, data)
        with zf.open("W0.npy", "w") as f:  # a valid header, then 64 MB of zeros
            f.write(npy_bytes(np.zeros((6, 5), np.float32))[:128])
            chunk = bytes(2**20)
            for _ in range(BOMB_BYTES // len(chunk)):
                f.write(chunk)
    assert bomb.stat().st_size < BOMB_BYTES // 100  # small on disk
    error, peak = load_peak_bytes(bomb)
    assert error is not None and "W0.npy" in str(error) and "declares" in str(error)
    assert peak < BOMB_BYTES // 16  # nothing near the inflated size was allocated


def test_record_declaring_huge_arrays_is_refused_unless_max_bytes_allows(saved, tmp_path):
    _, path = saved
    error, _ = load_peak_bytes(path, max_bytes=100)
    assert error is not None and "max_bytes=100" in str(error)
    assert "pass load(..., max_bytes=...)" in str(error)
    assert fastnn.load(path, max_bytes=10**6).layers[0].W.shape == (6, 5)
    # A record that claims 80 GB of weights is refused before any member is read.
    parts = members_of(path)
    meta = json.loads(str(np.load(io.BytesIO(parts["__fastnn__.npy"]))))
    meta["arrays"]["W0"]["shape"] = [100_000, 100_000]
    parts["__fastnn__.npy"] = npy_bytes(np.array(json.dumps(meta)))
    huge = tmp_path / "huge.npz"
    write_zip(huge, list(parts.items()))
    with pytest.raises(ModelFileError, match=r"40,000,000,\d+ bytes of arrays, more than"):
        fastnn.load(huge)


def test_npy_header_declaring_another_shape_is_rejected_before_reading(saved, tmp_path):
    _, path = saved
    parts = members_of(path)
    size = len(parts["W0.npy"])
    buf = io.BytesIO()
    fields = {"descr": "<f4", "fortran_order": False, "shape": (100_000, 100_000)}
    np.lib.format.write_array_header_1_0(buf, fields)
    header = buf.getvalue()
    parts["W0.npy"] = header + bytes(size - len(header))
    bad = tmp_path / "liar.npz"
    write_zip(bad, list(parts.items()))
    error, peak = load_peak_bytes(bad)
    assert error is not None and "has shape (100000, 100000), the record says (6, 5)" in str(error)
    assert peak < 2**20


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p + [("W0.npy", p[1][1])], "appears twice"),
        (lambda p: p + [("../evil.npy", b"x")], "unexpected member '../evil.npy'"),
        (lambda p: p + [("extra/", b"")], "unexpected member 'extra/'"),
        (lambda p: p + [("W9.npy", npy_bytes(np.zeros(2, np.float32)))], "do not match the rec"),
        (lambda p: [m for m in p if m[0] != "b1.npy"], "do not match the record"),
        (lambda p: [(n, d[:-4] if n == "b0.npy" else d) for n, d in p], "declares"),
    ],
    ids=["duplicate", "path", "directory", "extra-array", "missing-array", "short-member"],
)
def test_member_names_and_sizes_must_match_the_record(saved, tmp_path, edit, message):
    _, path = saved
    parts = list(members_of(path).items())
    bad = tmp_path / "bad.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate name
        write_zip(bad, edit(parts))
    with pytest.raises(ModelFileError, match=message):
        fastnn.load(bad)


def test_deflated_model_file_still_loads(saved, tmp_path):
    # fastnn writes stored members; a file recompressed by a zip tool is still a model.
    model, path = saved
    packed = tmp_path / "deflated.npz"
    write_zip(packed, list(members_of(path).items()), deflate=True)
    loaded = fastnn.load(packed)
    for a, b in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a zip archive \\(an empty file\\)"),
        (b"hello world", "not a zip archive \\(it starts with b'hell'\\)"),
        (b"\x80\x04\x95 pickled", "not a fastnn model file: not a zip"),
        (b"\x93NUMPY\x01\x00", "\\.npy, not \\.npz"),
    ],
    ids=["empty", "text", "pickle", "npy"],
)
def test_not_a_zip_says_so(tmp_path, content, message):
    path = tmp_path / "model.npz"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=message):
        fastnn.load(path)


def test_a_directory_and_a_bad_max_bytes(tmp_path, saved):
    with pytest.raises(IsADirectoryError, match="is a directory"):
        fastnn.load(tmp_path)
    with pytest.raises(ValueError, match="max_bytes must be > 0"):
        fastnn.load(saved[1], max_bytes=0)


def test_wrong_shape_optimizer_state_is_rejected(tmp_path):
    X = np.random.default_rng(0).standard_normal((20, 6))
    y = np.arange(20) % 3
    model = fastnn.Sequential([fastnn.Dense(6, 5, "relu"), fastnn.Dense(5, 3)], seed=0)
    model.fit(X, y, optimizer=fastnn.Adam(), backend="numpy")
    model.optimizer.state[0] = model.optimizer.state[0][:, :4].copy()
    path = tmp_path / "state.npz"
    model.save(path)
    with pytest.raises(ModelFileError, match="optimizer state shapes"):
        fastnn.load(path)
