"""The reference backend (``fastnn.backends.numpy``) against formulas written independently.

The reference is the yardstick of every compiled backend, so it is checked here against naive
formulas (written without its helpers: scipy's normal CDF for GELU, plain ``exp`` for the
sigmoid family) and against central differences in float64, per activation of the registry,
per loss kernel and per optimizer rule. A new activation without a naive formula here fails
loudly until one is written.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import expit, log_softmax, logsumexp
from scipy.stats import norm

from fastnn import _codes as C
from fastnn.backends import numpy as ref

ALPHA = 0.3


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# Forward formulas by name, on float64 (n, k) arrays; alpha is the activation parameter.
NAIVE = {
    "identity": lambda z, alpha: z,
    "sigmoid": lambda z, alpha: expit(z),
    "tanh": lambda z, alpha: np.tanh(z),
    "relu": lambda z, alpha: np.where(z > 0, z, 0.0),
    "leaky_relu": lambda z, alpha: np.where(z > 0, z, alpha * z),
    "softmax": lambda z, alpha: _softmax(z),
    "gelu": lambda z, alpha: z * norm.cdf(z),
    "gelu_tanh": lambda z, alpha: (
        0.5 * z * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3)))
    ),
    "silu": lambda z, alpha: z * expit(z),
    "elu": lambda z, alpha: np.where(z > 0, z, alpha * (np.exp(np.minimum(z, 0)) - 1)),
}
ACTS = sorted(C.ACTIVATION_NAMES)
ACT_IDS = [C.ACTIVATION_NAMES[a] for a in ACTS]


def naive(act):
    name = C.ACTIVATION_NAMES[act]
    assert name in NAIVE, f"activation {name!r} has no independent formula in {__file__}: add one"
    return NAIVE[name]


def away_from_kinks(rng, shape, scale=2.0):
    """Values with |z| >= 0.05, so central differences never straddle a ReLU/ELU kink."""
    z = rng.standard_normal(shape) * scale
    return np.where(np.abs(z) < 0.05, np.copysign(0.05, z) + z, z)


def forward(z, act, alpha=ALPHA):
    a = z.copy()
    ref.activation_forward(a, act, alpha)
    return a


# Activations ---------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ACTS, ids=ACT_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_forward_matches_the_naive_formula(act, dtype):
    z = away_from_kinks(np.random.default_rng(act), (6, 5)).astype(dtype)
    a = forward(z, act)
    assert a.dtype == dtype
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(a, naive(act)(z.astype(np.float64), ALPHA), rtol=tol, atol=tol)


@pytest.mark.parametrize("act", ACTS, ids=ACT_IDS)
def test_activation_derivative_matches_central_differences(act):
    """dL/dz for L = sum(g * act(z)), element by element (row-wise for softmax), float64.

    The derivative gets z only where the contract keeps it (NEEDS_PREACTIVATION); the others
    must work from the output a alone.
    """
    rng = np.random.default_rng(100 + act)
    z = away_from_kinks(rng, (4, 5))
    g = rng.standard_normal(z.shape)
    analytic = g.copy()
    ref.activation_backward(z if act in C.NEEDS_PREACTIVATION else None, forward(z, act),
                            analytic, act, ALPHA)  # fmt: skip
    numeric = np.zeros_like(z)
    h = 1e-6
    for idx in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += h
        zm[idx] -= h
        numeric[idx] = (np.sum(g * forward(zp, act)) - np.sum(g * forward(zm, act))) / (2 * h)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("act", ACTS, ids=ACT_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activations_stay_finite_on_extreme_inputs(act, dtype):
    z = np.array([[-800.0, -60.0, 0.0, 60.0, 800.0]], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        a = forward(z, act)
        grad = np.ones_like(z)
        ref.activation_backward(z if act in C.NEEDS_PREACTIVATION else None, a, grad, act, ALPHA)
    assert np.isfinite(a).all() and np.isfinite(grad).all()
    expected = naive(act)(z.astype(np.float64), ALPHA)
    if C.ACTIVATION_NAMES[act] != "softmax":  # softmax of this row is (0, 0, 0, 0, 1) anyway
        np.testing.assert_allclose(a, expected, rtol=1e-6, atol=1e-12)


def test_unknown_activation_code_raises():
    z = np.zeros((2, 2))
    bad = max(C.ACTIVATION_NAMES) + 1
    with pytest.raises(ValueError, match="unknown activation"):
        ref.activation_forward(z, bad, 0.0)
    with pytest.raises(ValueError, match="unknown activation"):
        ref.activation_backward(z, z, z.copy(), bad, 0.0)


# The dense layer -----------------------------------------------------------------------------
def _dense_value(x, W, b, g, act):
    a = np.empty((x.shape[0], W.shape[1]))
    z = np.empty_like(a) if act in C.NEEDS_PREACTIVATION else None
    ref.dense_forward(x, W, b, act, ALPHA, z, a)
    return float(np.sum(g * a))


@pytest.mark.parametrize("act", ACTS, ids=ACT_IDS)
def test_dense_forward_and_backward_from_first_principles(act):
    rng = np.random.default_rng(200 + act)
    n, d, k = 3, 4, 5
    x, W, b = rng.standard_normal((n, d)), rng.standard_normal((d, k)) / 2, rng.standard_normal(k)
    needs_z = act in C.NEEDS_PREACTIVATION
    a = np.empty((n, k))
    z = np.full((n, k), np.nan) if needs_z else None
    ref.dense_forward(x, W, b, act, ALPHA, z, a)
    np.testing.assert_allclose(a, naive(act)(x @ W + b, ALPHA), rtol=1e-12, atol=1e-14)
    if needs_z:
        np.testing.assert_allclose(z, x @ W + b, rtol=1e-14)

    g = rng.standard_normal((n, k))
    delta, dW, db, gx = g.copy(), np.empty((d, k)), np.empty(k), np.empty((n, d))
    ref.dense_backward(x, W, z, a, delta, act, ALPHA, dW, db, gx)
    h = 1e-6
    for analytic, array in ((dW, W), (db, b), (gx, x)):
        numeric = np.zeros_like(array)
        for idx in np.ndindex(array.shape):
            old = array[idx]
            array[idx] = old + h
            plus = _dense_value(x, W, b, g, act)
            array[idx] = old - h
            minus = _dense_value(x, W, b, g, act)
            array[idx] = old
            numeric[idx] = (plus - minus) / (2 * h)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)
    # The first layer skips the input gradient and gets the same parameter gradients.
    dW2, db2 = np.empty_like(dW), np.empty_like(db)
    ref.dense_backward(x, W, z, a, g.copy(), act, ALPHA, dW2, db2, None)
    np.testing.assert_array_equal(dW2, dW)
    np.testing.assert_array_equal(db2, db)


# Losses --------------------------------------------------------------------------------------
def _naive_loss(name, o, t, stable=False):
    n = o.shape[0]
    if name == "mse":
        return np.mean((o - t) ** 2)
    if name == "softmax_cross_entropy":
        return np.mean(logsumexp(o, axis=1) - o[np.arange(n), t])
    if name == "softmax_cross_entropy_soft":
        return -np.sum(t * log_softmax(o, axis=1)) / n
    if name == "binary_cross_entropy":
        if stable:  # -log sigmoid(o) = log(1 + exp(-o)), as logaddexp, for huge logits
            return np.mean(t * np.logaddexp(0, -o) + (1 - t) * np.logaddexp(0, o))
        p = expit(o)
        return np.mean(-(t * np.log(p) + (1 - t) * np.log1p(-p)))
    if name == "kl_divergence":
        logp = log_softmax(o, axis=1)
        safe = np.where(t > 0, t, 1.0)
        return np.sum(np.where(t > 0, t * (np.log(safe) - logp), 0.0)) / n
    raise AssertionError(f"loss kernel {name!r} has no independent formula in {__file__}")


def _targets(name, rng, n, k):
    if name == "softmax_cross_entropy":
        return rng.integers(0, k, n).astype(np.int64)
    if name == "mse":
        return rng.standard_normal((n, k))
    if name == "binary_cross_entropy":
        return rng.random((n, k))
    t = rng.random((n, k))
    t[0, 0] = 0.0  # 0 log 0 = 0
    return t / t.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("name", sorted(C.LOSS_KERNEL_NAMES.values()))
def test_loss_value_and_gradient_from_first_principles(name):
    rng = np.random.default_rng(len(name))
    n, k = 5, 4
    o, t = rng.standard_normal((n, k)) * 2, _targets(name, rng, n, k)
    grad = np.full((n, k), np.nan)
    value = getattr(ref, name)(o, t, grad)
    assert isinstance(value, float)
    assert value == pytest.approx(_naive_loss(name, o, t), rel=1e-12)
    numeric = np.zeros_like(o)
    h = 1e-6
    for idx in np.ndindex(o.shape):
        op, om = o.copy(), o.copy()
        op[idx] += h
        om[idx] -= h
        numeric[idx] = (_naive_loss(name, op, t) - _naive_loss(name, om, t)) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", sorted(C.LOSS_KERNEL_NAMES.values()))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_losses_are_stable_on_huge_logits(name, dtype):
    rng = np.random.default_rng(1)
    o = np.array([[1000.0, -1000.0, 0.0], [-900.0, 900.0, 5.0]], dtype=dtype)
    t = _targets(name, rng, 2, 3)
    t = t.astype(dtype) if t.dtype.kind == "f" else t
    grad = np.empty_like(o)
    with np.errstate(over="raise", invalid="raise"):
        value = getattr(ref, name)(o, t, grad)
    assert math.isfinite(value) and np.isfinite(grad).all() and grad.dtype == dtype
    assert value == pytest.approx(_naive_loss(name, o.astype(np.float64), t, stable=True), rel=1e-6)


# Optimizers ------------------------------------------------------------------------------------
def _naive_steps(kind, p, grads, hyper):
    """The textbook updates (PyTorch's SGD/Adam, L2 weight decay), float64."""
    p, v, m, s = p.copy(), np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for t, grad in enumerate(grads, start=1):
        g = grad + hyper["weight_decay"] * p
        if kind == "sgd":
            p = p - hyper["lr"] * g
        elif kind == "momentum":
            v = hyper["momentum"] * v + g
            step = g + hyper["momentum"] * v if hyper["nesterov"] else v
            p = p - hyper["lr"] * step
        else:
            b1, b2 = hyper["beta1"], hyper["beta2"]
            m = b1 * m + (1 - b1) * g
            s = b2 * s + (1 - b2) * g * g
            m_hat, s_hat = m / (1 - b1**t), s / (1 - b2**t)
            p = p - hyper["lr"] * m_hat / (np.sqrt(s_hat) + hyper["eps"])
    return p, {"sgd": [], "momentum": [v], "adam": [m, s]}[kind]


RULES = [
    ("sgd", {"lr": 0.1, "weight_decay": 0.0}),
    ("sgd", {"lr": 0.1, "weight_decay": 0.05}),
    ("momentum", {"lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0}),
    ("momentum", {"lr": 0.1, "momentum": 0.8, "nesterov": True, "weight_decay": 0.05}),
    ("adam", {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}),
    ("adam", {"lr": 0.02, "beta1": 0.7, "beta2": 0.9, "eps": 1e-3, "weight_decay": 0.05}),
]


@pytest.mark.parametrize("kind, hyper", RULES, ids=[f"{k}{i}" for i, (k, _) in enumerate(RULES)])
def test_optimizer_updates_match_the_textbook(kind, hyper):
    rng = np.random.default_rng(7)
    p0 = rng.standard_normal(11)
    grads = [rng.standard_normal(11) for _ in range(4)]
    param = p0.copy()
    state = [np.zeros_like(p0) for _ in range({"sgd": 0, "momentum": 1, "adam": 2}[kind])]
    for step, grad in enumerate(grads, start=1):
        extra = {"step": step} if kind == "adam" else {}
        getattr(ref, f"{kind}_update")(param, grad.copy(), *state, **hyper, **extra)
    expected, expected_state = _naive_steps(kind, p0, grads, hyper)
    np.testing.assert_allclose(param, expected, rtol=1e-12, atol=1e-14)
    for got, want in zip(state, expected_state, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind, hyper", RULES[::2], ids=["sgd", "momentum", "adam"])
def test_float32_updates_stay_float32(kind, hyper):
    param = np.ones(5, np.float32)
    state = [np.zeros(5, np.float32) for _ in range({"sgd": 0, "momentum": 1, "adam": 2}[kind])]
    extra = {"step": 1} if kind == "adam" else {}
    getattr(ref, f"{kind}_update")(param, np.full(5, 0.5, np.float32), *state, **hyper, **extra)
    assert param.dtype == np.float32 and all(s.dtype == np.float32 for s in state)
    expected, _ = _naive_steps(kind, np.ones(5), [np.full(5, 0.5)], hyper)
    np.testing.assert_allclose(param, expected, rtol=1e-6)


def test_module_exports_what_it_lists():
    assert ref.NAME == "numpy" and ref.FUSED_LAYERS == frozenset({"dense"})
    missing = [name for name in ref.__all__ if not hasattr(ref, name)]
    assert not missing, f"fastnn.backends.numpy.__all__ lists missing names {missing}"
