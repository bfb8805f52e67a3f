"""fit never copies X whole: parts cast from the user's array train exactly like the
converted array; memmaps and uint8 images with ``input_scale`` train batch by batch."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import fastnn
import fastnn.model as model_module
from fastnn import _feed
from fastnn._validation import check_X_in_place
from fastnn.backends import resolve_backend
from fastnn.datasets import make_blobs

BACKENDS = fastnn.available_backends()
F32 = np.dtype(np.float32)


def mlp(d=6, dtype="float32", seed=0, k=3):
    layers = [fastnn.Dense(d, 16, "relu"), fastnn.Dense(16, 8, "tanh"), fastnn.Dense(8, k)]
    return fastnn.Sequential(layers, seed=seed, dtype=dtype)


def trained(X, y, backend, dtype="float32", **kwargs):
    model = mlp(X.shape[1], dtype, k=int(np.max(y)) + 1)
    history = model.fit(X, y, backend=backend, seed=3, epochs=2, batch_size=kwargs.pop("bs", 7),
                        optimizer=fastnn.Adam(0.01), **kwargs)  # fmt: skip
    return model.get_weights(), history


@pytest.fixture
def small_parts(monkeypatch):
    """Parts of two batches and gathers of three rows: every code path cuts many times."""
    monkeypatch.setattr(_feed, "MIN_FEED_BYTES", 0)
    monkeypatch.setattr(_feed, "FEED_FRACTION", 1e-9)
    monkeypatch.setattr(_feed, "GATHER_BYTES", 1)


@pytest.fixture
def blobs():
    return make_blobs(101, 6, 3, spread=3.0, seed=0, dtype="float64")


def variants(X64):
    """Inputs the kernels cannot read as they are, with the scale they are trained with."""
    wide = np.repeat(X64.astype(np.float32), 2, axis=1)
    pixels = np.clip(X64 * 40 + 128, 0, 255).astype(np.uint8)
    return {
        "float64": (X64, None),
        "fortran32": (np.asfortranarray(X64.astype(np.float32)), None),
        "strided32": (wide[:, ::2], None),
        "uint8/255": (pixels, 1 / 255),
        "int64": ((X64 * 10).astype(np.int64), None),
        "float32*scale": (X64.astype(np.float32), 0.5),
    }


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("path", ["fused", "eager", "progress"])
def test_parts_train_like_the_converted_array(backend, path, blobs, small_parts):
    X64, y = blobs
    extra = {"fused": {}, "eager": {"clip_grad_norm": 1e6}, "progress": {"verbose": 1}}[path]
    for name, (X, scale) in variants(X64).items():
        reference = _feed.convert(X, F32, scale)
        assert _feed.is_direct(reference, F32, None)
        expected, h0 = trained(reference, y, backend, **extra)
        got, h1 = trained(X, y, backend, input_scale=scale, **extra)
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"{backend} {path} {name}")
        assert h1.loss == h0.loss and h1.accuracy == h0.accuracy, name


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch_size", [1, 10, None])
def test_batch_sizes_and_float64_models(backend, batch_size, blobs, small_parts):
    X64, y = blobs
    X = np.asfortranarray(X64)
    for dtype in ("float32", "float64"):
        reference = _feed.convert(X, np.dtype(dtype), None)
        expected, _ = trained(reference, y, backend, dtype, bs=batch_size)
        got, _ = trained(X, y, backend, dtype, bs=batch_size)
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"{backend} {dtype} {batch_size}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_kernels_only_ever_see_the_model_dtype(backend, blobs, monkeypatch):
    """The compiled epoch gets C-contiguous float32 parts for float64/uint8 inputs, and the
    user's array itself (no copy) when it already is C-contiguous float32."""
    B = resolve_backend(backend)
    seen = []
    original = B.train_epoch

    def spy(ws, X, targets, order, batch_size, batch_losses):
        seen.append(X)
        assert X.dtype == ws.dtype and X.flags.c_contiguous
        return original(ws, X, targets, order, batch_size, batch_losses)

    monkeypatch.setattr(B, "train_epoch", spy)
    X64, y = blobs
    for X, scale in variants(X64).values():
        seen.clear()
        trained(X, y, backend, input_scale=scale)
        assert seen and not any(np.shares_memory(part, X) for part in seen)
    X32 = np.ascontiguousarray(X64, dtype=np.float32)
    seen.clear()
    trained(X32, y, backend)
    assert seen and all(part is X32 for part in seen)


def test_part_sizes_are_whole_batches_near_five_percent():
    X = np.zeros((300_000, 784), dtype=np.uint8)  # 235 MB: no page is touched
    rows = _feed.part_rows(X, F32, 128)
    assert rows % 128 == 0 and rows * 784 * 4 <= 0.05 * X.nbytes < (rows + 128) * 784 * 4
    assert _feed.part_rows(X[:10], F32, 128) == 10  # a small X is one part
    assert _feed.part_rows(X, F32, 300_000) == 300_000  # full batch: one buffer of n rows


def test_uint8_over_255_is_what_load_mnist_normalizes():
    """input_scale=1/255 on uint8 gives the float32 values x / 255 exactly (torchvision's and
    load_mnist(normalize=True)'s), for every pixel value."""
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(
        _feed.convert(pixels, F32, 1 / 255), np.divide(pixels, np.float32(255), dtype=np.float32)
    )


def test_real_mnist_as_uint8_trains_like_normalized_floats(mnist_root):
    from fastnn.datasets import load_mnist

    X8, y, X8_test, y_test = load_mnist(root=mnist_root, dtype="uint8", normalize=False)
    X, _, X_test, _ = load_mnist(root=mnist_root)
    assert X8.dtype == np.uint8 and X8.nbytes * 4 == X.nbytes
    w8, h8 = trained(X8[:3000], y[:3000], "numpy", input_scale=1 / 255, bs=64,
                     validation_data=(X8_test[:500], y_test[:500]))  # fmt: skip
    w, h = trained(X[:3000], y[:3000], "numpy", bs=64, validation_data=(X_test[:500], y_test[:500]))
    for a, b in zip(w8, w, strict=True):
        np.testing.assert_array_equal(a, b)
    assert h8.val_loss == h.val_loss and h8.val_accuracy == h.val_accuracy


@pytest.mark.parametrize("backend", BACKENDS)
def test_predict_and_evaluate_cast_per_chunk(backend, blobs, monkeypatch):
    monkeypatch.setattr(model_module, "PREDICT_CHUNK", 16)
    X64, y = blobs
    model = mlp()
    model.fit(X64, y, backend=backend, epochs=2, seed=0)
    for X, scale in variants(X64).values():
        reference = _feed.convert(X, F32, scale)
        np.testing.assert_array_equal(model.predict_proba(X, input_scale=scale),
                                      model.predict_proba(reference))  # fmt: skip
        np.testing.assert_array_equal(model.predict(X, input_scale=scale), model.predict(reference))
        assert model.evaluate(X, y, input_scale=scale) == model.evaluate(reference, y)
        np.testing.assert_array_equal(model.decision_function(X, input_scale=scale),
                                      model.decision_function(reference))  # fmt: skip


def _fit_peak(X, y, **kwargs):
    """Peak bytes NumPy allocated during one fit (tracemalloc sees every array buffer)."""
    model = fastnn.Sequential([fastnn.Dense(X.shape[1], 32, "relu"), fastnn.Dense(32, 3)], seed=0)
    model.fit(X[:64], y[:64], backend="numpy", **kwargs)  # imports and caches outside the count
    tracemalloc.start()
    try:
        model.fit(X, y, backend="numpy", batch_size=64, seed=0, **kwargs)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _data(tmp_path, dtype, n=None, d=512, memmap=False):
    """Random pixel values 0..255 in ``dtype``; by default 16 MB of them."""
    rng = np.random.default_rng(0)
    n = n or (16 << 20) // (d * np.dtype(dtype).itemsize)
    if memmap:
        X = np.lib.format.open_memmap(tmp_path / f"X_{dtype}.npy", "w+", dtype, (n, d))
    else:
        X = np.empty((n, d), dtype=dtype)
    for s in range(0, n, 2000):  # filled in blocks: no temporary of X's size
        X[s : s + 2000] = rng.integers(0, 256, (min(2000, n - s), d))
    if memmap:
        X.flush()
        X = np.load(tmp_path / f"X_{dtype}.npy", mmap_mode="r")
    return X, rng.integers(0, 3, n)


@pytest.mark.parametrize(
    ("dtype", "memmap", "scale"),
    [("float64", False, 1 / 255), ("float32", False, None), ("uint8", False, 1 / 255),
     ("float64", True, 1 / 255), ("float32", True, None), ("uint8", True, 1 / 255)],
)  # fmt: skip
def test_fit_allocates_at_most_a_tenth_of_X(tmp_path, dtype, memmap, scale):
    """Peak allocation of fit <= 10% of X plus 1 MiB (this small net's buffers and the fit's
    bookkeeping: permutation, targets). A memmap is read where the batches point, never whole
    (its pages are the file's, not allocations)."""
    X, y = _data(tmp_path, dtype, memmap=memmap)
    assert isinstance(X, np.memmap) == memmap
    peak = _fit_peak(X, y, input_scale=scale)
    assert peak <= 0.10 * X.nbytes + (1 << 20), f"{peak / X.nbytes:.1%} of X"


@pytest.mark.parametrize("dtype", ["float64", "float32", "uint8"])
def test_memmap_trains_like_the_array_in_memory(tmp_path, small_parts, dtype):
    """Read-only memmaps: cast per part, or (float32) read by the kernels in place."""
    X, y = _data(tmp_path, dtype, n=300, d=6, memmap=True)
    assert not X.flags.writeable
    for backend in BACKENDS:
        expected, _ = trained(np.array(X), y, backend, input_scale=1 / 255)
        got, _ = trained(X, y, backend, input_scale=1 / 255)
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=backend)
        expected, _ = trained(np.array(X, dtype=np.float32), y, backend)
        got, _ = trained(X, y, backend)
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"{backend} unscaled")


def test_finiteness_is_checked_chunk_by_chunk(monkeypatch):
    monkeypatch.setattr(fastnn._validation, "CHECK_BYTES", 64)  # two rows of 4 float64
    X = np.zeros((50, 4))
    X[49, 3], X[0, 0] = np.nan, np.inf  # in the last and the first chunk
    with pytest.raises(ValueError, match=r"X contains 2 NaN or infinite"):
        check_X_in_place(X, 4, F32)
    X[49, 3], X[0, 0] = 1e39, 0.0
    with pytest.raises(ValueError, match=r"1 value\(s\) out of float32 range"):
        check_X_in_place(X, 4, F32)
    assert check_X_in_place(X, 4, np.dtype(np.float64)) is X
    X[49, 3] = 3e38  # finite in float32, but not times 2
    assert check_X_in_place(X, 4, F32) is X
    with pytest.raises(ValueError, match=r"1 value\(s\) out of float32 range times input_scale 2"):
        check_X_in_place(X, 4, F32, scale=2.0)


def test_integers_need_no_pass_unless_the_scale_overflows():
    pixels = np.full((3, 4), 255, dtype=np.uint8)
    assert check_X_in_place(pixels, 4, F32, scale=1e30) is pixels
    with pytest.raises(ValueError, match="out of float32 range times input_scale 1e\\+37"):
        check_X_in_place(pixels, 4, F32, scale=1e37)
    big = np.full((3, 4), 2**62, dtype=np.int64)
    assert check_X_in_place(big, 4, F32) is big


@pytest.mark.parametrize(
    ("scale", "error", "message"),
    [(0, ValueError, "input_scale must be > 0"), (-1 / 255, ValueError, "input_scale must be > 0"),
     (float("nan"), ValueError, "input_scale must be finite"),
     ("1/255", TypeError, "input_scale must be a number"),
     (True, TypeError, "input_scale must be a number")],
)  # fmt: skip
def test_bad_input_scale(blobs, scale, error, message):
    X, y = blobs
    model = mlp()
    with pytest.raises(error, match=message):
        model.fit(X, y, input_scale=scale)
    with pytest.raises(error, match=message):
        model.predict(X, input_scale=scale)
    with pytest.raises(error, match=message):
        model.evaluate(X, y, input_scale=scale)


def test_validation_data_gets_the_scale(blobs):
    X64, y = blobs
    pixels = np.clip(X64 * 40 + 128, 0, 255).astype(np.uint8)
    reference = _feed.convert(pixels, F32, 1 / 255)
    _, h8 = trained(pixels, y, "numpy", input_scale=1 / 255, validation_data=(pixels, y))
    _, h = trained(reference, y, "numpy", validation_data=(reference, y))
    assert h8.val_loss == h.val_loss and h8.val_accuracy == h.val_accuracy
