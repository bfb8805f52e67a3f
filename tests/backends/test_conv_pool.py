"""A convolution and its max pooling as one call (``conv2d_maxpool_*``), on every backend.

The reference composes its own two kernels; each backend's fused pair must give what the
reference's unfused layers give: every activation whose derivative the pooled output gives,
float32 and float64, strides, padding, odd sizes, batch 1, overlapping and tiling windows,
receptive-field rows short and long (Numba's dense and sparse backward passes), with and
without the input gradient, one and two threads. Then bad arguments, and the executor:
a fit and a predict through the fused pair against the layers one by one.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import _codes as C
from fastnn.backends import available_backends, load_backend
from fastnn.backends import numpy as ref
from fastnn.layers import Conv2D

ACTS = sorted(a for a in C.ACTIVATION_NAMES if a != C.SOFTMAX and a not in C.NEEDS_PREACTIVATION)
DTYPES = [np.float32, np.float64]
TOL = {np.float32: 2e-4, np.float64: 1e-10}
# (n, C, H, F, k, stride, padding, pool, pool_stride)
SHAPES = [
    (1, 1, 7, 3, 3, 1, 0, 2, 1),  # batch 1, overlapping windows
    (3, 2, 9, 5, 3, 2, 1, 3, 2),  # stride 2, padding 1, 3x3 windows
    (2, 1, 28, 24, 5, 1, 0, 2, 2),  # MNIST_99's first pair
    (4, 24, 12, 32, 3, 1, 0, 2, 2),  # MNIST_99's second pair (long rows: 3 x 24)
    (2, 8, 11, 6, 3, 2, 1, 3, 1),  # long rows, stride 2, 3x3 windows overlapping
    (9, 3, 10, 7, 2, 1, 1, 3, 2),  # short rows, odd sizes, a ragged team split
]
SHAPE_IDS = ["x".join(map(str, s)) for s in SHAPES]
BACKENDS = available_backends()


def case(shape, dtype, seed=0):
    n, c, h, f, k, s, p, pk, ps = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, h)).astype(dtype)
    x[rng.random(x.shape) < 0.3] = 0
    W = (rng.standard_normal((f, c, k, k)) / np.sqrt(c * k * k)).astype(dtype)
    b = (0.1 * rng.standard_normal(f)).astype(dtype)
    ho = (h + 2 * p - k) // s + 1
    hq = (ho - pk) // ps + 1
    return x, W, b, rng.standard_normal((n, f, hq, hq)).astype(dtype)


def unfused(x, W, b, grad, shape, act, want_dx):
    """The reference's layers one by one."""
    n, _, _, f, _, s, p, pk, ps = shape
    ho = (x.shape[2] + 2 * p - W.shape[2]) // s + 1
    a = np.empty((n, f, ho, ho), x.dtype)
    ref.conv2d_forward(x, W, b, s, p, act, 0.3, None, a)
    out, arg = np.empty(grad.shape, x.dtype), np.empty(grad.shape, np.int64)
    ref.maxpool2d_forward(a, pk, ps, out, arg)
    dz = np.empty_like(a)
    ref.maxpool2d_backward(grad, arg, dz)
    dW, db = np.empty_like(W), np.empty_like(b)
    gx = np.empty_like(x) if want_dx else None
    ref.conv2d_backward(x, W, None, a, dz, s, p, act, 0.3, dW, db, gx)
    return {"out": out, "argmax": arg, "dW": dW, "db": db, "grad_x": gx}


def fused(B, x, W, b, grad, shape, act, want_dx):
    _, _, _, _, _, s, p, pk, ps = shape
    out = np.full(grad.shape, 7, x.dtype)
    arg = np.full(grad.shape, -5, np.int64)
    B.conv2d_maxpool_forward(x, W, b, s, p, act, 0.3, pk, ps, out, arg)
    dW, db = np.full(W.shape, np.nan, x.dtype), np.full(b.shape, np.nan, x.dtype)
    gx = np.full(x.shape, np.nan, x.dtype) if want_dx else None
    B.conv2d_maxpool_backward(x, W, out, arg, grad.copy(), s, p, act, 0.3, dW, db, gx)
    return {"out": out, "argmax": arg, "dW": dW, "db": db, "grad_x": gx}


def assert_close(actual, expected, dtype):
    for name, value in expected.items():
        if value is None:
            assert actual[name] is None
        elif name == "argmax":
            np.testing.assert_array_equal(actual[name], value, err_msg=name)
        else:
            scale = 1.0 + float(np.max(np.abs(value)))
            np.testing.assert_allclose(actual[name], value, rtol=TOL[dtype],
                                       atol=TOL[dtype] * scale, err_msg=name)  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("act", ACTS, ids=[C.ACTIVATION_NAMES[a] for a in ACTS])
def test_the_fused_pair_equals_the_layers_one_by_one(backend, dtype, shape, act):
    x, W, b, grad = case(shape, dtype)
    for want_dx in (True, False):
        expected = unfused(x, W, b, grad, shape, act, want_dx)
        assert_close(fused(load_backend(backend), x, W, b, grad, shape, act, want_dx),
                     expected, dtype)  # fmt: skip


@pytest.mark.parametrize("backend", [name for name in BACKENDS if name == "numba"])
def test_the_fused_pair_gives_the_same_bits_on_one_and_two_threads(backend):
    """Numba's chunks keep their own partial sums (Cython's split, one slice per thread,
    moves the sums with the thread count: its tests hold it to a tolerance)."""
    B = load_backend(backend)
    old = fastnn.get_num_threads()
    try:
        for shape in SHAPES[2:4]:
            x, W, b, grad = case((33, *shape[1:]), np.float32, seed=3)
            runs = []
            for threads in (1, 2, 1):
                fastnn.set_num_threads(threads)
                runs.append(fused(B, x, W, b, grad, (33, *shape[1:]), C.RELU, True))
            for other in runs[1:]:
                for name, value in runs[0].items():
                    np.testing.assert_array_equal(other[name], value, err_msg=name)
    finally:
        fastnn.set_num_threads(old)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_arguments_of_the_fused_pair_raise(backend):
    B = load_backend(backend)
    shape = SHAPES[3]
    x, W, b, grad = case(shape, np.float32)
    out, arg = np.empty(grad.shape, np.float32), np.empty(grad.shape, np.int64)
    with pytest.raises(ValueError, match="gelu"):
        B.conv2d_maxpool_forward(x, W, b, 1, 0, C.GELU, 0.0, 2, 2, out, arg)
    if backend == "numpy":
        return  # the reference trusts its callers; its composition raises on the argmax below
    with pytest.raises(ValueError, match="pool kernel 3, stride 3 do not tile"):
        B.conv2d_maxpool_forward(x, W, b, 1, 0, C.RELU, 0.0, 3, 3, out, arg)
    with pytest.raises(ValueError, match="out"):
        B.conv2d_maxpool_forward(x, W, b, 1, 0, C.RELU, 0.0, 2, 1, out, arg)
    B.conv2d_maxpool_forward(x, W, b, 1, 0, C.RELU, 0.0, 2, 2, out, arg)
    for stray in (-1, 100):
        bad = arg.copy()
        bad[-1, -1, -1, -1] = stray
        with pytest.raises(ValueError, match="argmax must hold indices in \\[0, 100\\)"):
            B.conv2d_maxpool_backward(x, W, out, bad, grad.copy(), 1, 0, C.RELU, 0.0,
                                      np.empty_like(W), np.empty_like(b), None)  # fmt: skip


def small_cnn(activation: str) -> fastnn.Sequential:
    return fastnn.Sequential(
        [fastnn.Conv2D(1, 4, 3, activation=activation), fastnn.MaxPool2D(2),
         fastnn.Conv2D(4, 6, 3, padding=1, activation=activation), fastnn.MaxPool2D(2),
         fastnn.Flatten(), fastnn.Dense(6 * 3 * 3, 5)],
        input_shape=(1, 14, 14), seed=0,
    )  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_a_cnn_trains_and_predicts_the_same_through_the_fused_pairs(backend, activation,
                                                                    monkeypatch):  # fmt: skip
    rng = np.random.default_rng(1)
    X = rng.standard_normal((70, 1, 14, 14)).astype(np.float32)
    y = rng.integers(0, 5, 70)
    runs = []
    B = load_backend(backend)
    calls = []
    kernel = B.conv2d_maxpool_backward
    monkeypatch.setattr(B, "conv2d_maxpool_backward", lambda *a: calls.append(1) or kernel(*a))
    # every backend through its pair, whether it uses it by default or not (FUSED_PAIRS)
    monkeypatch.setattr(B, "FUSED_PAIRS", frozenset({("conv2d", "maxpool2d")}))
    expected = 0 if activation == "gelu" else 2 * 10  # 2 pairs x 5 batches x 2 epochs
    for fuse in (True, False):
        if not fuse:
            assert len(calls) == expected
            monkeypatch.setattr(Conv2D, "fuses_with", lambda self, following: False)
        model = small_cnn(activation)
        model.fit(X, y, batch_size=16, epochs=2, optimizer=fastnn.Adam(lr=0.01), backend=backend,
                  verbose=0)  # fmt: skip
        assert model.backend == backend  # predict reuses it
        runs.append((model, model.predict_proba(X)))
    assert len(calls) == expected
    (fused_model, fused_proba), (plain_model, plain_proba) = runs
    for a, b in zip(fused_model.layers, plain_model.layers, strict=True):
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            np.testing.assert_allclose(pa, pb, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(fused_proba, plain_proba, rtol=2e-4, atol=2e-5)
