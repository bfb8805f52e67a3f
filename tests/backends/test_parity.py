"""Every compiled backend against the NumPy reference, kernel by kernel and epoch by epoch.

Parametrized over ``available_backends()`` minus "numpy", so a backend that loads is tested for
free; the kernels loop over the registries ``fastnn._codes.ACTIVATION_CODES`` and
``LOSS_KERNEL_NAMES``, so a new activation or loss is tested without new code. Shapes cover
batch 1, odd sizes, sparse inputs (the loops paths) and inputs dense and large enough for BLAS;
float64 is compared tightly, float32 loosely. The argument checks: ``test_checks.py``.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

from fastnn import _codes as C
from fastnn.backends import _frontend, available_backends, load_backend
from fastnn.backends import numpy as ref

COMPILED = [name for name in available_backends() if name != "numpy"]
ACTS = sorted(C.ACTIVATION_NAMES)
ACT_IDS = [C.ACTIVATION_NAMES[a] for a in ACTS]
LOSSES = sorted(C.LOSS_KERNEL_NAMES)
LOSS_IDS = [C.LOSS_KERNEL_NAMES[code] for code in LOSSES]
ALPHA = 0.1  # leaky-ReLU slope and ELU alpha of the kernel tests
TOL = {np.float32: {"rtol": 2e-4, "atol": 2e-5}, np.float64: {"rtol": 1e-10, "atol": 1e-12}}
# (n, d, k, fraction of zero inputs): batch 1, odd sizes, sparse rows, dense enough for BLAS.
SHAPES = [(1, 7, 5, 0.0), (1, 30, 9, 0.8), (13, 9, 3, 0.0), (13, 40, 6, 0.8), (96, 150, 70, 0.0)]
NO_COMPILED = [pytest.param(None, marks=pytest.mark.skip("no compiled backend loads"))]


@pytest.fixture(params=COMPILED or NO_COMPILED)
def backend(request):
    return load_backend(request.param)


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


def z_buffer(act, n, k, dtype, fill=None):
    """A z buffer where the activation needs one, else None (the contract's two cases)."""
    if act not in C.NEEDS_PREACTIVATION:
        return None
    return np.empty((n, k), dtype) if fill is None else np.full((n, k), fill, dtype)


# The contract itself -------------------------------------------------------------------------
# Known gaps of a backend: kernels of the contract it does not have yet (strict: the marker
# must go when the gap closes).
NOT_YET: dict[str, tuple[str, ...]] = {}


@pytest.mark.parametrize("name", available_backends())
def test_every_backend_has_the_whole_contract(request, name):
    if name in NOT_YET:
        request.applymarker(pytest.mark.xfail(strict=True, reason=(
            f"{name} has no {', '.join(NOT_YET[name])} yet: a model with those layers crashes "
            f"with AttributeError on it, and 'auto' picks it")))  # fmt: skip
    B = load_backend(name)
    assert B.NAME == name
    assert "dense" in B.FUSED_LAYERS
    for fn in _frontend.contract_names():
        assert callable(getattr(B, fn, None)), f"{name} lacks {fn}"
        params = list(inspect.signature(getattr(B, fn)).parameters)
        assert params == list(inspect.signature(getattr(ref, fn)).parameters), fn
    if name != "numpy":
        assert callable(B.set_num_threads) and callable(B.get_num_threads)


def test_contract_names_cover_every_loss_kernel():
    assert set(C.LOSS_KERNEL_NAMES.values()) <= set(_frontend.contract_names())


def _compiled_code_table(backend):
    """Every ``{name: int}`` pair a compiled backend reports as compiled in, or None."""
    table = getattr(backend, "CODES", None)
    if table is None:
        table = getattr(getattr(backend, "_kernels", None), "CODES", None)
    if table is None:
        return None
    found, todo = {}, [table]
    while todo:
        entries = todo.pop()
        for key, value in entries.items():
            if isinstance(value, dict):
                todo.append(value)
            elif isinstance(key, str) and isinstance(value, int) and not isinstance(value, bool):
                found[key] = value
    return found


def test_compiled_code_table_matches_fastnn_codes_by_name(backend):
    """A compiled-in copy of the codes must equal ``fastnn._codes`` name by name, the
    hyper-parameter slots included (a stale build or a hand-edited enum fails here)."""
    compiled = _compiled_code_table(backend)
    if compiled is None:
        pytest.skip(f"{backend.NAME} reports no compiled code table")
    expected = C.int_constants()
    names = {**expected, **C.ACTIVATION_CODES}
    assert {k: v for k, v in compiled.items() if k in names} == {
        k: names[k] for k in compiled if k in names
    }
    missing = sorted(set(expected) - set(compiled))
    assert not missing, f"{backend.NAME} does not report {missing}"


# Dense layer ---------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ACTS, ids=ACT_IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{n}x{d}x{k}z{z}" for n, d, k, z in SHAPES])
def test_dense_forward_backward(backend, dtype, act, shape):
    n, d, k, zeros = shape
    rng = np.random.default_rng(n * d + act)
    x = inputs(rng, n, d, zeros, dtype)
    W = (rng.standard_normal((d, k)) / math.sqrt(d)).astype(dtype)
    b = rng.standard_normal(k).astype(dtype)
    a_ref, a_new = np.empty((n, k), dtype), np.full((n, k), 7, dtype)
    z_ref, z_new = z_buffer(act, n, k, dtype), z_buffer(act, n, k, dtype, fill=7)
    ref.dense_forward(x, W, b, act, ALPHA, z_ref, a_ref)
    backend.dense_forward(x, W, b, act, ALPHA, z_new, a_new)
    close(a_new, a_ref, dtype)
    if z_ref is not None:
        close(z_new, z_ref, dtype)

    grad = rng.standard_normal((n, k)).astype(dtype)
    results = []
    for module in (ref, backend):
        out = [
            grad.copy(),
            np.full((d, k), 7, dtype),
            np.full(k, 7, dtype),
            np.full((n, d), 7, dtype),
        ]
        module.dense_backward(x, W, z_ref, a_ref, out[0], act, ALPHA, out[1], out[2], out[3])
        skipped = np.full((d, k), 7, dtype)  # first layer: no input gradient
        module.dense_backward(
            x, W, z_ref, a_ref, grad.copy(), act, ALPHA, skipped, out[2].copy(), None
        )
        results.append([*out, skipped])
    for new, expected in zip(results[1], results[0], strict=True):
        close(new, expected, dtype, scale=10.0)


# Losses ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
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
HYPER = {  # lr, momentum, nesterov, weight_decay, beta1, beta2, eps
    "sgd": (C.OPT_SGD, [0.1, 0.0, 0.0, 0.0, 0.9, 0.999, 1e-8]),
    "sgd-wd": (C.OPT_SGD, [0.1, 0.0, 0.0, 1e-3, 0.9, 0.999, 1e-8]),
    "momentum": (C.OPT_MOMENTUM, [0.05, 0.9, 0.0, 0.0, 0.9, 0.999, 1e-8]),
    "nesterov-wd": (C.OPT_MOMENTUM, [0.05, 0.9, 1.0, 1e-3, 0.9, 0.999, 1e-8]),
    "adam": (C.OPT_ADAM, [0.01, 0.0, 0.0, 0.0, 0.9, 0.999, 1e-8]),
    "adam-wd": (C.OPT_ADAM, [0.01, 0.0, 0.0, 1e-3, 0.8, 0.99, 1e-7]),
}


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
    names = ("weights", "biases", "dW", "db", "state1_w", "state1_b", "state2_w", "state2_b",
             "preacts")  # fmt: skip
    for name in names:
        for got, want in zip(getattr(new, name), getattr(expected, name), strict=True):
            close(got, want, dtype, scale)


@pytest.mark.parametrize("opt", list(HYPER))
@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
def test_train_epoch_matches_reference(backend, dtype, workspace, loss, opt):
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
def test_train_epoch_dense_layers_every_activation(backend, dtype, workspace, batch_size):
    """Dense inputs wide enough for BLAS, one hidden layer per activation of the registry."""
    rng = np.random.default_rng(batch_size)
    n, widths = 60, (64, 48, 32, 40)
    sizes = (90, *(widths[i % len(widths)] for i in range(len(ACTS))), 5)
    X = inputs(rng, n, sizes[0], 0.0, dtype)
    y = rng.integers(0, sizes[-1], n).astype(np.int64)
    acts = [*ACTS, C.IDENTITY]
    order = rng.permutation(n).astype(np.int64)
    optimizer, hyper = HYPER["sgd"]

    def make_ws():
        return workspace(dtype, sizes, acts, C.LOSS_CROSS_ENTROPY, optimizer, 60, hyper)

    (ws_ref, l_ref, _), (ws_new, l_new, _) = run_both(backend, make_ws, X, y, batch_size, order)
    close(l_new, l_ref, dtype, scale=10.0)
    assert_same_workspace(ws_new, ws_ref, dtype, scale=50.0)


@pytest.mark.parametrize("act", sorted(C.NEEDS_PREACTIVATION | C.TAKES_ALPHA),
                         ids=lambda a: C.ACTIVATION_NAMES[a])  # fmt: skip
def test_train_epoch_sparse_inputs_new_activations(backend, dtype, workspace, act):
    """The activations that keep z or read alpha, on the sparse (loops) path, with Adam."""
    rng = np.random.default_rng(act)
    n, sizes = 19, (24, 10, 8, 3)
    X = inputs(rng, n, sizes[0], 0.8, dtype)
    y = rng.integers(0, 3, n).astype(np.int64)
    optimizer, hyper = HYPER["adam-wd"]

    def make_ws():
        return workspace(dtype, sizes, [act, act, C.IDENTITY], C.LOSS_CROSS_ENTROPY, optimizer, 4,
                         hyper)  # fmt: skip

    order = rng.permutation(n).astype(np.int64)
    (ws_ref, l_ref, _), (ws_new, l_new, _) = run_both(backend, make_ws, X, y, 4, order)
    close(l_new, l_ref, dtype, scale=10.0)
    assert_same_workspace(ws_new, ws_ref, dtype, scale=20.0)


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_train_epoch_in_slices_of_one_permutation(backend, dtype, workspace, opt):
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
def test_non_finite_loss_stops_before_its_update(backend, dtype, workspace):
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
