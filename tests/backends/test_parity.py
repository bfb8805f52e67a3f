"""Every compiled backend against the NumPy reference, kernel by kernel and epoch by epoch.

Parametrized over ``available_backends()`` minus "numpy", so a backend that loads is tested for
free. Shapes cover batch 1, odd sizes, sparse inputs (the loops paths) and inputs dense and large
enough for BLAS; float64 is compared tightly, float32 loosely.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastnn import _codes as C
from fastnn.backends import _try_load, available_backends
from fastnn.backends import numpy as ref
from fastnn.backends._workspace import Workspace

COMPILED = [name for name in available_backends() if name != "numpy"]
ACTS = sorted(C.ACTIVATION_NAMES)
LOSSES = [C.LOSS_MSE, C.LOSS_CROSS_ENTROPY, C.LOSS_CROSS_ENTROPY_SOFT,
          C.LOSS_BINARY_CROSS_ENTROPY, C.LOSS_KL_DIVERGENCE]  # fmt: skip
TOL = {np.float32: {"rtol": 2e-4, "atol": 2e-5}, np.float64: {"rtol": 1e-10, "atol": 1e-12}}
# (n, d, k, fraction of zero inputs): batch 1, odd sizes, sparse rows, dense enough for BLAS.
SHAPES = [(1, 7, 5, 0.0), (1, 30, 9, 0.8), (13, 9, 3, 0.0), (13, 40, 6, 0.8), (96, 150, 70, 0.0)]


@pytest.fixture(
    params=COMPILED or [pytest.param(None, marks=pytest.mark.skip("no compiled backend"))]
)
def backend(request):
    return _try_load(request.param)


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return request.param


def inputs(rng, n, d, zeros, dtype):
    x = rng.standard_normal((n, d)).astype(dtype)
    x[rng.random((n, d)) < zeros] = 0
    return x


def targets_for(loss, rng, n, k, dtype):
    if loss == C.LOSS_CROSS_ENTROPY:
        return rng.integers(0, k, n).astype(np.int64)
    if loss == C.LOSS_MSE:
        return rng.standard_normal((n, k)).astype(dtype)
    t = rng.random((n, k)).astype(dtype)
    if loss == C.LOSS_BINARY_CROSS_ENTROPY:
        return t
    t[rng.random((n, k)) < 0.3] = 0  # exercise 0 log 0 = 0
    t[:, 0] += 0.1
    return (t / t.sum(axis=1, keepdims=True)).astype(dtype)


def close(actual, expected, dtype, scale=1.0):
    tol = TOL[dtype]
    np.testing.assert_allclose(actual, expected, rtol=tol["rtol"] * scale, atol=tol["atol"] * scale)


# Dense layer ---------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ACTS, ids=[C.ACTIVATION_NAMES[a] for a in ACTS])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{n}x{d}x{k}z{z}" for n, d, k, z in SHAPES])
def test_dense_forward_backward(backend, dtype, act, shape):
    n, d, k, zeros = shape
    rng = np.random.default_rng(n * d + act)
    x = inputs(rng, n, d, zeros, dtype)
    W = (rng.standard_normal((d, k)) / math.sqrt(d)).astype(dtype)
    b = rng.standard_normal(k).astype(dtype)
    a_ref, a_new = np.empty((n, k), dtype), np.full((n, k), 7, dtype)
    ref.dense_forward(x, W, b, act, 0.1, a_ref)
    backend.dense_forward(x, W, b, act, 0.1, a_new)
    close(a_new, a_ref, dtype)

    grad = rng.standard_normal((n, k)).astype(dtype)
    results = []
    for module in (ref, backend):
        out = [
            grad.copy(),
            np.full((d, k), 7, dtype),
            np.full(k, 7, dtype),
            np.full((n, d), 7, dtype),
        ]
        module.dense_backward(x, W, a_ref, out[0], act, 0.1, out[1], out[2], out[3])
        skipped = np.full((d, k), 7, dtype)  # first layer: no input gradient
        module.dense_backward(x, W, a_ref, grad.copy(), act, 0.1, skipped, out[2].copy(), None)
        results.append([*out, skipped])
    for new, expected in zip(results[1], results[0], strict=True):
        close(new, expected, dtype, scale=10.0)


# Losses ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", LOSSES, ids=[C.LOSS_KERNEL_NAMES[code] for code in LOSSES])
@pytest.mark.parametrize("n, k", [(1, 3), (17, 10)])
def test_losses(backend, dtype, loss, n, k):
    rng = np.random.default_rng(loss + n)
    outputs = (3 * rng.standard_normal((n, k))).astype(dtype)
    outputs[0, 0] = 60  # large logit: the log-sum-exp must stay finite
    targets = targets_for(loss, rng, n, k, dtype)
    name = C.LOSS_KERNEL_NAMES[loss]
    g_ref, g_new = np.empty((n, k), dtype), np.full((n, k), 7, dtype)
    value_ref = getattr(ref, name)(outputs, targets, g_ref)
    value_new = getattr(backend, name)(outputs, targets, g_new)
    assert isinstance(value_new, float) and math.isfinite(value_new)
    assert value_new == pytest.approx(value_ref, rel=1e-6 if dtype == np.float32 else 1e-12)
    close(g_new, g_ref, dtype)


# Optimizers ------------------------------------------------------------------------------------
UPDATES = [
    ("sgd", {"lr": 0.1, "weight_decay": 0.0}),
    ("sgd", {"lr": 0.1, "weight_decay": 0.01}),
    ("momentum", {"lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0}),
    ("momentum", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("adam", {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}),
    ("adam", {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.01}),
]


@pytest.mark.parametrize(
    "kind, hyper", UPDATES, ids=[f"{k}{i}" for i, (k, _) in enumerate(UPDATES)]
)
def test_updates(backend, dtype, kind, hyper):
    rng = np.random.default_rng(len(kind))
    p0 = rng.standard_normal(37).astype(dtype)
    n_state = {"sgd": 0, "momentum": 1, "adam": 2}[kind]
    results = []
    for module in (ref, backend):
        param, state = p0.copy(), [np.zeros_like(p0) for _ in range(n_state)]
        for step in range(1, 4):
            grad = np.random.default_rng(step).standard_normal(37).astype(dtype)
            extra = {"step": step} if kind == "adam" else {}
            getattr(module, f"{kind}_update")(param, grad, *state, **hyper, **extra)
        results.append([param, *state])
    for new, expected in zip(results[1], results[0], strict=True):
        close(new, expected, dtype)


# The epoch -----------------------------------------------------------------------------------
def workspace(dtype, sizes, acts, loss, optimizer, batch_size, hyper, seed=0):
    rng = np.random.default_rng(seed)
    weights = [(rng.standard_normal((a, b)) / math.sqrt(a)).astype(dtype)
               for a, b in zip(sizes[:-1], sizes[1:], strict=True)]  # fmt: skip
    biases = [(0.1 * rng.standard_normal(b)).astype(dtype) for b in sizes[1:]]
    return Workspace(weights, biases, acts, [0.05] * len(acts), loss, optimizer,
                     np.asarray(hyper, dtype=np.float64), batch_size)  # fmt: skip


def run_both(backend, make_ws, X, y, batch_size, order):
    out = []
    for module in (ref, backend):
        ws = make_ws()
        losses = np.full(-(-X.shape[0] // batch_size), np.nan)
        done = module.train_epoch(ws, X, y, order, batch_size, losses)
        out.append((ws, losses, done))
    return out


def assert_same_workspace(new, expected, dtype, scale):
    assert new.step == expected.step
    for name in ("weights", "biases", "dW", "db", "state1_w", "state1_b", "state2_w", "state2_b"):
        for got, want in zip(getattr(new, name), getattr(expected, name), strict=True):
            close(got, want, dtype, scale)


HYPER = {  # lr, momentum, nesterov, weight_decay, beta1, beta2, eps
    "sgd": (C.OPT_SGD, [0.1, 0.0, 0.0, 0.0, 0.9, 0.999, 1e-8]),
    "sgd-wd": (C.OPT_SGD, [0.1, 0.0, 0.0, 1e-3, 0.9, 0.999, 1e-8]),
    "momentum": (C.OPT_MOMENTUM, [0.05, 0.9, 0.0, 0.0, 0.9, 0.999, 1e-8]),
    "nesterov-wd": (C.OPT_MOMENTUM, [0.05, 0.9, 1.0, 1e-3, 0.9, 0.999, 1e-8]),
    "adam": (C.OPT_ADAM, [0.01, 0.0, 0.0, 0.0, 0.9, 0.999, 1e-8]),
    "adam-wd": (C.OPT_ADAM, [0.01, 0.0, 0.0, 1e-3, 0.8, 0.99, 1e-7]),
}


@pytest.mark.parametrize("opt", list(HYPER))
@pytest.mark.parametrize("loss", LOSSES, ids=[C.LOSS_KERNEL_NAMES[code] for code in LOSSES])
def test_train_epoch_matches_reference(backend, dtype, loss, opt):
    """Sparse inputs (loops), a ragged last batch, every loss and optimizer."""
    rng = np.random.default_rng(loss)
    n, sizes = 23, (20, 12, 4)
    X = inputs(rng, n, sizes[0], 0.7, dtype)
    y = targets_for(loss, rng, n, sizes[-1], dtype)
    optimizer, hyper = HYPER[opt]
    out_act = C.IDENTITY if loss != C.LOSS_MSE else C.TANH

    def make_ws():
        return workspace(dtype, sizes, [C.RELU, out_act], loss, optimizer, 5, hyper)

    for batch_size in (1, 5):
        order = rng.permutation(n).astype(np.int64)
        (ws_ref, l_ref, d_ref), (ws_new, l_new, d_new) = run_both(
            backend, make_ws, X, y, batch_size, order
        )
        assert d_new == d_ref == len(l_ref)
        close(l_new, l_ref, dtype, scale=10.0)
        assert_same_workspace(ws_new, ws_ref, dtype, scale=20.0)


@pytest.mark.parametrize("batch_size", [1, 7, 60])
def test_train_epoch_dense_layers_every_activation(backend, dtype, batch_size):
    """Dense inputs wide enough for BLAS, three layers, every hidden activation once."""
    rng = np.random.default_rng(batch_size)
    n, sizes = 60, (90, 64, 48, 32, 40, 5)
    X = inputs(rng, n, sizes[0], 0.0, dtype)
    y = rng.integers(0, sizes[-1], n).astype(np.int64)
    acts = [C.SIGMOID, C.TANH, C.LEAKY_RELU, C.SOFTMAX, C.IDENTITY]
    order = rng.permutation(n).astype(np.int64)
    optimizer, hyper = HYPER["sgd"]

    def make_ws():
        return workspace(dtype, sizes, acts, C.LOSS_CROSS_ENTROPY, optimizer, 60, hyper)

    (ws_ref, l_ref, _), (ws_new, l_new, _) = run_both(backend, make_ws, X, y, batch_size, order)
    close(l_new, l_ref, dtype, scale=10.0)
    assert_same_workspace(ws_new, ws_ref, dtype, scale=50.0)


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_train_epoch_in_slices_of_one_permutation(backend, dtype, opt):
    """The API may cut an epoch's order at multiples of batch_size to report progress."""
    rng = np.random.default_rng(5)
    n, sizes = 30, (16, 8, 3)
    X = inputs(rng, n, sizes[0], 0.6, dtype)
    y = rng.integers(0, 3, n).astype(np.int64)
    order = rng.permutation(n).astype(np.int64)
    optimizer, hyper = HYPER[opt]
    results = []
    for module in (ref, backend):
        ws = workspace(
            dtype, sizes, [C.RELU, C.IDENTITY], C.LOSS_CROSS_ENTROPY, optimizer, 4, hyper
        )
        losses = [np.zeros(3), np.zeros(5)]
        assert module.train_epoch(ws, X, y, order[:12], 4, losses[0]) == 3
        assert module.train_epoch(ws, X, y, order[12:], 4, losses[1]) == 5
        results.append((ws, np.concatenate(losses)))
    close(results[1][1], results[0][1], dtype, scale=10.0)
    assert_same_workspace(results[1][0], results[0][0], dtype, scale=20.0)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_non_finite_loss_stops_before_its_update(backend, dtype):
    rng = np.random.default_rng(3)
    n, sizes = 20, (6, 5, 3)
    X = inputs(rng, n, sizes[0], 0.0, dtype)
    y = rng.integers(0, 3, n).astype(np.int64)
    order = np.arange(n, dtype=np.int64)
    X[9, 2] = np.inf  # sample 9 is in the third batch of 4
    optimizer, hyper = HYPER["adam"]

    def make_ws():
        return workspace(
            dtype, sizes, [C.RELU, C.IDENTITY], C.LOSS_CROSS_ENTROPY, optimizer, 4, hyper
        )

    (ws_ref, l_ref, d_ref), (ws_new, l_new, d_new) = run_both(backend, make_ws, X, y, 4, order)
    assert d_ref == d_new == 3
    assert ws_new.step == ws_ref.step == 2
    assert not math.isfinite(l_new[2]) and np.isnan(l_new[3:]).all()
    close(l_new[:2], l_ref[:2], dtype)
    for got, want in zip(
        ws_new.weights + ws_new.biases, ws_ref.weights + ws_ref.biases, strict=True
    ):
        close(got, want, dtype)


# Bad input is an exception, never a crash -----------------------------------------------------
def test_bad_kernel_arguments_raise(backend):
    f32 = np.zeros((4, 3), np.float32)
    W, b, out = np.zeros((3, 2), np.float32), np.zeros(2, np.float32), np.zeros((4, 2), np.float32)
    with pytest.raises(TypeError):
        backend.dense_forward(f32.astype(np.float64), W, b, C.RELU, 0.0, out)
    with pytest.raises(TypeError):
        backend.dense_forward(f32.tolist(), W, b, C.RELU, 0.0, out)
    with pytest.raises(ValueError):
        backend.dense_forward(f32, np.zeros((4, 2), np.float32), b, C.RELU, 0.0, out)
    with pytest.raises(ValueError):
        backend.dense_forward(f32, W, b, C.RELU, 0.0, np.zeros((5, 2), np.float32))
    with pytest.raises(ValueError):
        backend.dense_forward(np.zeros((3, 4), np.float32).T, W, b, C.RELU, 0.0, out)
    with pytest.raises(ValueError):
        backend.dense_forward(f32, W, b, 99, 0.0, out)
    with pytest.raises(ValueError):
        backend.dense_backward(f32, W, out, out.copy(), C.RELU, 0.0, np.zeros((2, 3), np.float32),
                               b.copy(), None)  # fmt: skip
    with pytest.raises(ValueError):
        backend.dense_backward(f32, W, out, out.copy(), C.RELU, 0.0, W.copy(), b.copy(),
                               np.zeros((4, 2), np.float32))  # fmt: skip
    with pytest.raises(ValueError):
        backend.softmax_cross_entropy(out, np.array([0, 1, 2, 0]), out.copy())
    with pytest.raises(TypeError):
        backend.softmax_cross_entropy(out, np.array([0, 1, 1, 0], np.int32), out.copy())
    with pytest.raises(ValueError):
        backend.mse(out, np.zeros((4, 3), np.float32), out.copy())
    with pytest.raises(ValueError):
        backend.sgd_update(b, np.zeros(3, np.float32), 0.1, 0.0)
    with pytest.raises(TypeError):
        backend.adam_update(
            b, b.copy(), b.copy(), b.astype(np.float64), 0.1, 0.9, 0.9, 1e-8, 0.0, 1
        )


def test_bad_epoch_arguments_raise(backend):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10, 6)).astype(np.float32)
    y = rng.integers(0, 3, 10).astype(np.int64)
    order = np.arange(10, dtype=np.int64)
    optimizer, hyper = HYPER["sgd"]
    ws = workspace(np.float32, (6, 5, 3), [C.RELU, C.IDENTITY], C.LOSS_CROSS_ENTROPY, optimizer, 4,
                   hyper)  # fmt: skip
    losses = np.zeros(3)
    bad_calls = [
        (ValueError, (X[:, :5].copy(), y, order, 4, losses)),  # wrong width
        (TypeError, (X.astype(np.float64), y, order, 4, losses)),  # wrong dtype
        (ValueError, (X, y + 3, order, 4, losses)),  # label out of range
        (ValueError, (X, y, order + 1, 4, losses)),  # order out of range
        (TypeError, (X, y, order.astype(np.int32), 4, losses)),
        (ValueError, (X, y, order[:5], 4, losses)),  # 2 batches, not 3
        (ValueError, (X, y, order, 5, losses)),  # larger than the workspace's batch
        (ValueError, (X, y, order, 0, losses)),
        (ValueError, (X, y, order, 4, np.zeros(2))),  # batch_losses too short
    ]
    for error, args in bad_calls:
        with pytest.raises(error):
            backend.train_epoch(ws, *args)
    assert ws.step == 0
