"""The convolution and max-pooling kernels of ``fastnn.backends.numba`` against the reference.

Every activation of the registry (except softmax, which a convolution refuses), float32 and
float64, stride 1 and 2, padding 0 and 1, odd and non-square sizes, batch 1, several channels,
filter counts that are not a multiple of the vector length, with and without the input
gradient; shapes chosen so both kernel families run (NCHW rows and NHWC blocks, see
``fastnn.backends.numba.conv``). Then the thread team, bad arguments through the checked
front end, a CNN ``fit`` against the NumPy backend, and the kernels as plain Python.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

pytest.importorskip("numba")

import fastnn  # noqa: E402
from fastnn import _codes as C  # noqa: E402
from fastnn.backends import numba as nb  # noqa: E402
from fastnn.backends import numpy as ref  # noqa: E402
from fastnn.backends.numba import conv, team  # noqa: E402

ACTS = sorted(a for a in C.ACTIVATION_NAMES if a != C.SOFTMAX)
DTYPES = [np.float32, np.float64]
TOL = {np.float32: (2e-4, 2e-4), np.float64: (1e-10, 1e-10)}  # rtol, atol (of the scale)
# (n, C, H, W, F, kh, kw, stride, padding)
SHAPES = [
    (1, 1, 7, 7, 3, 3, 3, 1, 0),  # batch 1, odd sizes
    (3, 2, 9, 9, 5, 3, 3, 2, 1),  # stride 2, padding 1
    (2, 3, 8, 10, 17, 3, 2, 1, 1),  # non-square image and kernel, F past a whole block
    (4, 24, 12, 12, 32, 3, 3, 1, 0),  # MNIST_99's second convolution
    (2, 1, 28, 28, 24, 5, 5, 1, 0),  # MNIST_99's first convolution (rows of 24 pixels)
    (2, 3, 16, 16, 10, 3, 3, 1, 1),  # rows with padding and an input gradient
    (5, 2, 8, 8, 6, 2, 2, 2, 0),  # stride 2, even kernel
    (3, 9, 6, 6, 33, 1, 1, 1, 0),  # 1x1 kernel, F and C not multiples of the lanes
    (2, 16, 6, 6, 48, 3, 3, 1, 1),  # 512-bit blocks of filters, 2 + 1 (input gradient: 1)
]
SHAPE_IDS = ["x".join(map(str, s)) for s in SHAPES]


def conv_pass(B, x, W, b, stride, padding, act, grad, want_dx):
    """Forward then backward through backend B; every output starts as garbage."""
    n, F = x.shape[0], W.shape[0]
    out = np.full(grad.shape, 7, x.dtype)
    z = np.full(grad.shape, np.nan, x.dtype) if act in C.NEEDS_PREACTIVATION else None
    B.conv2d_forward(x, W, b, stride, padding, act, 0.3, z, out)
    g = grad.copy()
    dW, db = np.full(W.shape, np.nan, x.dtype), np.full(F, np.nan, x.dtype)
    gx = np.full(x.shape, np.nan, x.dtype) if want_dx else None
    B.conv2d_backward(x, W, z, out, g, stride, padding, act, 0.3, dW, db, gx)
    assert n == out.shape[0]
    return {"out": out, "z": z, "delta": g, "dW": dW, "db": db, "grad_x": gx}


def random_case(shape, dtype, seed):
    n, c, h, w, f, kh, kw, s, p = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    x[rng.random(x.shape) < 0.3] = 0  # zeros, as in images and ReLU outputs
    W = (rng.standard_normal((f, c, kh, kw)) / np.sqrt(c * kh * kw)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    ho, wo = (h + 2 * p - kh) // s + 1, (w + 2 * p - kw) // s + 1
    grad = rng.standard_normal((n, f, ho, wo)).astype(dtype)
    return x, W, b, grad


def close(actual, expected, dtype, name):
    rtol, atol = TOL[dtype]
    scale = 1.0 + float(np.max(np.abs(expected)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale, err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_conv2d_matches_the_reference(shape, dtype):
    x, W, b, grad = random_case(shape, dtype, seed=sum(shape))
    s, p = shape[7], shape[8]
    for act in ACTS:
        for want_dx in (True, False):
            expected = conv_pass(ref, x, W, b, s, p, act, grad, want_dx)
            actual = conv_pass(nb, x, W, b, s, p, act, grad, want_dx)
            for name, value in expected.items():
                if value is None:
                    assert actual[name] is None
                    continue
                close(actual[name], value, dtype, f"{C.ACTIVATION_NAMES[act]} {name}")


def test_the_backend_binds_every_conv_kernel_of_the_contract():
    from fastnn.backends._frontend import CONV_NAMES

    for name in CONV_NAMES:
        assert vars(nb)[name].__doc__.startswith("numba backend:"), name


def test_the_shapes_run_both_kernel_families():
    """The parity cases reach the NCHW row kernels and the NHWC blocks, forward and backward."""
    seen = set()
    for dtype in DTYPES:
        for n, c, h, w, _, _, kw, s, p in SHAPES:
            wo = (w + 2 * p - kw) // s + 1
            x = np.empty((n, c, h, w), dtype)
            seen.add(("forward", conv.use_rows(x, wo, s, False)))
            seen.add(("backward", conv.use_rows(x, wo, s, True)))
    assert seen == {(d, r) for d in ("forward", "backward") for r in (True, False)}


POOLS = [(3, 2, 8, 8, 2, 2), (2, 3, 9, 7, 3, 2), (1, 1, 5, 5, 2, 1), (4, 24, 24, 24, 2, 2),
         (2, 2, 6, 6, 3, 3), (2, 1, 7, 7, 1, 1)]  # fmt: skip


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", POOLS, ids=["x".join(map(str, c)) for c in POOLS])
def test_maxpool2d_matches_the_reference(case, dtype):
    n, c, h, w, k, s = case
    rng = np.random.default_rng(h * w + k)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    x[:, :, ::2, ::3] = x[:, :, 1::2, ::3][:, :, : x[:, :, ::2, ::3].shape[2]].min()  # ties
    x[0, 0, :2, :2] = 1.5  # a window of equal values: the first one wins
    results = []
    for B in (ref, nb):
        shape = (n, c, (h - k) // s + 1, (w - k) // s + 1)
        out, arg = np.full(shape, 7, dtype), np.full(shape, -1, np.int64)
        B.maxpool2d_forward(x, k, s, out, arg)
        gx = np.full(x.shape, np.nan, dtype)
        B.maxpool2d_backward(np.arange(out.size, dtype=dtype).reshape(shape), arg, gx)
        results.append((out, arg, gx))
    for actual, expected in zip(results[1], results[0], strict=True):
        np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize(("kernel", "size"), [(2, 6), (3, 7), (2, 20)])  # 20: vector windows
def test_maxpool2d_keeps_the_first_nan_of_a_window(kernel, size):
    x = np.arange(2 * 3 * size * size, dtype=np.float64).reshape(2, 3, size, size)
    x[1, 2, 1, 0] = np.nan
    x[1, 2, 1, 1] = np.nan
    x[0, 1, 4, 4] = np.nan
    shape = (2, 3, (size - kernel) // 2 + 1, (size - kernel) // 2 + 1)
    outs = []
    for B in (ref, nb):
        out, arg = np.empty(shape), np.empty(shape, np.int64)
        B.maxpool2d_forward(x, kernel, 2, out, arg)
        outs.append((out, arg))
    np.testing.assert_array_equal(outs[1][0], outs[0][0])  # NaN where the reference has NaN
    np.testing.assert_array_equal(outs[1][1], outs[0][1])


@pytest.fixture
def threads():
    """Set the numba backend's threads; restore them afterwards."""
    before = nb.get_num_threads()
    yield nb.set_num_threads
    nb.set_num_threads(before)


@pytest.mark.parametrize("shape", [SHAPES[3], SHAPES[4], SHAPES[1]], ids=["nhwc", "rows", "s2"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_two_threads_give_the_results_of_one_bit_for_bit(shape, dtype, threads):
    """Chunks of images, each with its own partial dW, summed in chunk order: the result
    does not depend on the number of threads nor on which thread took which chunk."""
    n = 2 * team.CHUNK + 3  # three chunks, the last one ragged
    shape = (n, *shape[1:])
    x, W, b, grad = random_case(shape, dtype, seed=3)
    results = []
    for count in (1, 2, 1, 2):
        threads(count)
        results.append(conv_pass(nb, x, W, b, shape[7], shape[8], C.GELU, grad, True))
        pooled = np.empty((n, shape[1], shape[2] - 1, shape[3] - 1), dtype)
        arg = np.empty(pooled.shape, np.int64)
        nb.maxpool2d_forward(x, 2, 1, pooled, arg)
        results[-1]["pooled"] = pooled
    for other in results[1:]:
        for name, value in results[0].items():
            np.testing.assert_array_equal(other[name], value, err_msg=name)


def test_the_team_serves_two_callers_and_reraises():
    squad = team.Team()
    cells = np.zeros(8)

    def work(i0, i1):
        cells[i0:i1] += 1

    callers = [threading.Thread(target=squad.run, args=(work, [(0, 4), (4, 8)])) for _ in range(4)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    np.testing.assert_array_equal(cells, 4)

    def fail(k):
        if k == 1:
            raise RuntimeError("part 1 failed")

    with pytest.raises(RuntimeError, match="part 1 failed"):
        squad.run(fail, [(0,), (1,)])
    squad.run(work, [(0, 4), (4, 8)])  # the worker is still there and in step
    np.testing.assert_array_equal(cells, 5)


def test_bad_arguments_raise_through_the_front_end():
    x, W, b, grad = random_case(SHAPES[3], np.float32, seed=1)
    out = np.empty(grad.shape, np.float32)
    with pytest.raises(ValueError, match="channels"):
        nb.conv2d_forward(np.ascontiguousarray(x[:, :5]), W, b, 1, 0, C.RELU, 0.0, None, out)
    with pytest.raises(ValueError, match="tile"):
        nb.conv2d_forward(x, W, b, 2, 0, C.RELU, 0.0, None, out)
    with pytest.raises(ValueError, match="softmax"):
        nb.conv2d_forward(x, W, b, 1, 0, C.SOFTMAX, 0.0, None, out)
    with pytest.raises(ValueError, match="needs z"):
        nb.conv2d_forward(x, W, b, 1, 0, C.GELU, 0.0, None, out)
    with pytest.raises((ValueError, TypeError)):
        nb.conv2d_forward(x.astype(np.float64), W, b, 1, 0, C.RELU, 0.0, None, out)
    dW, db = np.empty_like(W), np.empty_like(b)
    with pytest.raises(ValueError, match="grad_x_out"):
        nb.conv2d_backward(x, W, None, out, grad, 1, 0, C.RELU, 0.0, dW, db, x[:1].copy())
    pooled, arg = np.empty((4, 24, 6, 6), np.float32), np.zeros((4, 24, 6, 6), np.int64)
    with pytest.raises(ValueError, match="tile"):
        nb.maxpool2d_forward(x, 5, 5, pooled, arg)
    arg[0, 0, 0, 0] = 144
    with pytest.raises(ValueError, match="argmax"):
        nb.maxpool2d_backward(pooled, arg, np.empty_like(x))


def test_a_cnn_fit_equals_the_numpy_backend():
    """A small CNN trains to the same weights on numba as on the reference (float64)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 2, 10, 10))
    y = (X[:, 0, :5].mean(axis=(1, 2)) > X[:, 1, 5:].mean(axis=(1, 2))).astype(np.int64)
    models = []
    for backend in ("numpy", "numba"):
        model = fastnn.Sequential(
            [fastnn.Conv2D(2, 4, 3, padding=1, activation="relu"), fastnn.MaxPool2D(2),
             fastnn.Conv2D(4, 6, 3, stride=2, activation="silu"), fastnn.Flatten(),
             fastnn.Dense(24, 2)],
            seed=1, dtype="float64", input_shape=(2, 10, 10),
        )  # fmt: skip
        model.fit(X, y, loss="cross_entropy", optimizer="adam", batch_size=16, epochs=2,
                  seed=0, backend=backend, track_accuracy=False)  # fmt: skip
        models.append(model)
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-11)


def test_the_conv_kernels_are_valid_python_without_jit():
    """With NUMBA_DISABLE_JIT=1 the conv and pooling kernels (and their SIMD helpers) run as
    plain Python and still match the reference, in both kernel families (and the pooling's
    full and half vectors)."""
    code = """
        import numpy as np
        from fastnn import _codes as C
        from fastnn.backends import numba as nb, numpy as ref
        from fastnn.backends.numba import conv_nhwc
        assert not hasattr(conv_nhwc.correlate, "py_func")  # really not compiled
        rng = np.random.default_rng(0)
        for shape, s, p in (((2, 2, 7, 5), 2, 1), ((1, 1, 14, 14), 1, 0)):  # pools 1, 6 wide
            x = rng.standard_normal(shape)
            W, b = rng.standard_normal((3, shape[1], 3, 3)), rng.standard_normal(3)
            ho, wo = (shape[2] + 2 * p - 3) // s + 1, (shape[3] + 2 * p - 3) // s + 1
            g0 = rng.standard_normal((shape[0], 3, ho, wo))
            outs = []
            for B in (ref, nb):
                out, z = np.empty(g0.shape), np.empty(g0.shape)
                B.conv2d_forward(x, W, b, s, p, C.GELU, 0.0, z, out)
                g, dW, db, gx = g0.copy(), np.empty(W.shape), np.empty(3), np.empty(x.shape)
                B.conv2d_backward(x, W, z, out, g, s, p, C.GELU, 0.0, dW, db, gx)
                pooled, arg = np.empty((shape[0], 3, ho // 2, wo // 2)), None
                arg = np.empty(pooled.shape, np.int64)
                B.maxpool2d_forward(out[:, :, : 2 * (ho // 2), : 2 * (wo // 2)].copy(), 2, 2,
                                    pooled, arg)
                outs.append((out, z, g, dW, db, gx, pooled, arg))
            for u, v in zip(*outs):
                np.testing.assert_allclose(v, u, rtol=1e-10, atol=1e-12)
        print("ok")
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, "NUMBA_DISABLE_JIT": "1"}, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
