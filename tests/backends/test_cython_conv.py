"""The Cython backend's convolution and pooling kernels against the reference.

Every activation of ``fastnn._codes.ACTIVATION_CODES`` except softmax (looped over the
registry), float32 and float64, stride 1 and 2, padding 0 and 1, odd sizes, batch 1, several
channels, ``grad_x_out=None``; batches large enough to be split over the team, on both thread
options (``set_conv_options``) and on one and on several images per product; bad arguments
through the checked front end; and a small CNN ``fit`` equal to the reference's.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import _codes as C
from fastnn.backends import numpy as ref

cy = pytest.importorskip("fastnn.backends.cython", reason="Cython extension not built")

DTYPES = [np.float32, np.float64]
ALPHA = 0.3  # leaky-ReLU slope and ELU alpha: not a default, so a dropped alpha shows
ACTS = [name for name, code in C.ACTIVATION_CODES.items() if code != C.SOFTMAX]
# (n, C, H, W, F, k, stride, padding): odd sizes, batch 1, stride 2 with and without padding,
# kernel 1, a 5x5 kernel with padding 2, and batches big enough for the team to split.
SHAPES = [
    (1, 1, 6, 5, 3, 2, 1, 1),
    (3, 2, 7, 9, 5, 3, 1, 0),
    (2, 3, 9, 9, 4, 3, 2, 1),
    (5, 2, 11, 7, 3, 3, 2, 0),
    (4, 3, 5, 6, 2, 1, 1, 0),
    (40, 3, 12, 12, 8, 5, 1, 2),
    (67, 4, 10, 10, 6, 3, 1, 1),
]
# (n, C, H, W, kernel, stride): 2x2 (its own loop), overlapping 3x3 windows, kernel 1, and
# enough planes for the team to split.
POOL_SHAPES = [(2, 3, 8, 8, 2, 2), (2, 3, 7, 9, 3, 2), (1, 2, 6, 6, 3, 1), (3, 1, 5, 5, 1, 1),
               (70, 5, 12, 12, 2, 2)]  # fmt: skip
# (mode, im2col bytes per product): the team with one image per product, the team with
# several, and one chunk on scipy's BLAS threads with several.
OPTIONS = [(0, 1), (0, 1 << 16), (1, 1 << 20)]


def _tol(dtype):
    return {"rtol": 2e-4, "atol": 2e-4} if dtype == np.float32 else {"rtol": 1e-9, "atol": 1e-10}


@pytest.fixture(params=OPTIONS, ids=["team-1-image", "team-groups", "blas-threads"])
def option(request):
    old = cy._kernels.set_conv_options(*request.param)
    if cy._generic is not cy._kernels:
        cy._generic.set_conv_options(*request.param)
    yield request.param
    cy._kernels.set_conv_options(*old)
    cy._generic.set_conv_options(*old)


def _conv_case(rng, shape, dtype):
    n, c, h, w, f, k, s, p = shape
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    W = (rng.standard_normal((f, c, k, k)) / np.sqrt(c * k * k)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    out_shape = (n, f, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)
    return x, W, b, s, p, out_shape


def _run_conv(B, x, W, b, s, p, act, out_shape, grad, with_grad_x):
    z = np.full(out_shape, np.nan, x.dtype) if act in C.NEEDS_PREACTIVATION else None
    out = np.full(out_shape, np.nan, x.dtype)
    B.conv2d_forward(x, W, b, s, p, act, ALPHA, z, out)
    g = grad.copy()
    dW, db = np.full_like(W, np.nan), np.full_like(b, np.nan)
    gx = np.full_like(x, np.nan) if with_grad_x else None
    B.conv2d_backward(x, W, z, out, g, s, p, act, ALPHA, dW, db, gx)
    return {"out": out, "z": z, "delta": g, "dW": dW, "db": db, "grad_x": gx}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("act_name", ACTS)
def test_conv2d_matches_the_reference(option, dtype, shape, act_name):
    act = C.ACTIVATION_CODES[act_name]
    rng = np.random.default_rng(hash((shape, act_name)) % 2**32)
    x, W, b, s, p, out_shape = _conv_case(rng, shape, dtype)
    grad = rng.standard_normal(out_shape).astype(dtype)
    with_grad_x = shape[0] != 3  # one shape runs as a first layer (no input gradient)
    got = _run_conv(cy, x, W, b, s, p, act, out_shape, grad, with_grad_x)
    want = _run_conv(ref, x, W, b, s, p, act, out_shape, grad, with_grad_x)
    for name, expected in want.items():
        if expected is None:
            assert got[name] is None
            continue
        np.testing.assert_allclose(got[name], expected, err_msg=name, **_tol(dtype))


def test_conv2d_results_do_not_depend_on_threads():
    """The team's split decides the numbers, not whether its chunks ran on threads."""
    rng = np.random.default_rng(1)
    x, W, b, s, p, out_shape = _conv_case(rng, (64, 3, 10, 10, 8, 3, 1, 1), np.float32)
    grad = rng.standard_normal(out_shape).astype(np.float32)
    old = cy.get_num_threads()
    try:
        cy.set_num_threads(2)
        two = _run_conv(cy, x, W, b, s, p, C.RELU, out_shape, grad, True)
        again = _run_conv(cy, x, W, b, s, p, C.RELU, out_shape, grad, True)
        cy.set_num_threads(1)
        one = _run_conv(cy, x, W, b, s, p, C.RELU, out_shape, grad, True)
    finally:
        cy.set_num_threads(old)
    for name in ("out", "delta", "dW", "db", "grad_x"):
        np.testing.assert_array_equal(two[name], again[name], err_msg=name)
        np.testing.assert_allclose(two[name], one[name], rtol=2e-5, atol=2e-5, err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", POOL_SHAPES)
def test_maxpool2d_matches_the_reference(dtype, shape):
    n, c, h, w, k, s = shape
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    x[0, 0, 0, :2] = x[0, 0, 0, 0]  # a tie: the first maximum wins
    x[-1, -1, 1:3, 1:3] = 0.5  # a whole window of ties
    out_shape = (n, c, (h - k) // s + 1, (w - k) // s + 1)
    grad = rng.standard_normal(out_shape).astype(dtype)
    results = []
    for B in (cy, ref):
        out, arg = np.full(out_shape, np.nan, dtype), np.full(out_shape, -1, np.int64)
        B.maxpool2d_forward(x, k, s, out, arg)
        grad_x = np.full_like(x, np.nan)
        B.maxpool2d_backward(grad, arg, grad_x)
        results.append((out, arg, grad_x))
    for got, want in zip(*results, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_maxpool2d_nan_wins_like_argmax():
    x = np.array([[[[1.0, np.nan], [np.nan, 3.0]]]])
    results = []
    for B in (cy, ref):
        out, arg = np.empty((1, 1, 1, 1)), np.empty((1, 1, 1, 1), np.int64)
        B.maxpool2d_forward(x, 2, 2, out, arg)
        results.append((np.isnan(out).all(), int(arg[0, 0, 0, 0])))
    assert results[0] == results[1] == (True, 1)


def test_bad_arguments_raise_through_the_front_end():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 6, 6))
    W, b = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    out = np.empty((2, 4, 4, 4))
    with pytest.raises(ValueError):
        cy.conv2d_forward(x, W, b, 1, 0, C.RELU, 0.0, None, out[:, :2])
    with pytest.raises((TypeError, ValueError)):
        cy.conv2d_forward(x.astype(np.float32), W, b, 1, 0, C.RELU, 0.0, None, out)
    with pytest.raises(ValueError):
        cy.conv2d_forward(x, W, b, 1, 0, C.SOFTMAX, 0.0, None, out)
    with pytest.raises(ValueError):
        cy.conv2d_forward(x, W, b, 1, 0, C.GELU, 0.0, None, out)  # gelu needs z
    with pytest.raises(ValueError):
        cy.conv2d_forward(x, W, b, 2, 0, C.RELU, 0.0, None, out)  # stride does not tile
    with pytest.raises(ValueError):
        cy.maxpool2d_backward(out, np.full(out.shape, 99, np.int64), np.empty_like(x))


def _small_cnn(seed):
    layers = [
        fastnn.Conv2D(1, 4, 3, padding=1, activation="relu"),
        fastnn.MaxPool2D(2),
        fastnn.Conv2D(4, 6, 3, activation="gelu"),
        fastnn.Flatten(),
        fastnn.Dense(6 * 2 * 2, 3),
    ]
    return fastnn.Sequential(layers, seed=seed, dtype="float64", input_shape=(1, 8, 8))


def test_cnn_fit_equals_the_reference():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((96, 1, 8, 8))
    y = rng.integers(0, 3, 96)
    models = {name: _small_cnn(seed=7) for name in ("cython", "numpy")}
    for name, model in models.items():
        model.fit(X, y, optimizer="adam", batch_size=32, epochs=2, seed=0, backend=name)
    for got, want in zip(models["cython"].layers, models["numpy"].layers, strict=True):
        for param in getattr(got, "param_names", ()):
            np.testing.assert_allclose(getattr(got, param), getattr(want, param), rtol=1e-8,
                                       atol=1e-10)  # fmt: skip
