"""Loss objects (``fastnn.losses``): names, targets, kernel codes, and the object API
(``forward``/``backward``) against formulas and central differences.

The loss kernels themselves are checked in ``tests/backends/test_numpy.py`` (reference) and
``tests/backends/test_parity.py`` (compiled backends).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, log_softmax

from fastnn import _codes as C
from fastnn.losses import LOSSES, CrossEntropy, Loss, get_loss


def _probabilities(rng, n, k):
    p = rng.random((n, k)) + 0.05
    return p / p.sum(axis=1, keepdims=True)


# What each loss takes and what it is: targets for (n=6, k=3) and the mean loss of logits o.
CASES = {
    "mse": (lambda rng: rng.standard_normal((6, 3)),
            lambda o, t: np.mean((o - t) ** 2)),
    "cross_entropy": (lambda rng: rng.integers(0, 3, 6),
                      lambda o, t: -np.mean(log_softmax(o, axis=1)[np.arange(6), t])),
    "binary_cross_entropy": (lambda rng: rng.random((6, 3)),
                             lambda o, t: -np.mean(t * np.log(expit(o))
                                                   + (1 - t) * np.log(1 - expit(o)))),
    "kl_divergence": (lambda rng: _probabilities(rng, 6, 3),
                      lambda o, t: np.sum(t * (np.log(t) - log_softmax(o, axis=1))) / 6),
}  # fmt: skip


def test_every_loss_has_a_case_and_a_kernel():
    assert set(LOSSES) == set(CASES), "add the new loss to CASES in tests/test_losses.py"
    for name, cls in LOSSES.items():
        loss = get_loss(name)
        assert isinstance(loss, cls) and loss.name == name
        for act in loss.fused_activations:
            assert act in C.ACTIVATION_CODES


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_is_the_formula_and_backward_its_gradient(name):
    rng = np.random.default_rng(len(name))
    make_targets, formula = CASES[name]
    o, t = rng.standard_normal((6, 3)), make_targets(rng)
    loss = get_loss(name)
    assert loss.forward(o, t) == pytest.approx(formula(o, t), rel=1e-12)
    grad = loss.backward()
    numeric = np.zeros_like(o)
    for idx in np.ndindex(o.shape):
        op, om = o.copy(), o.copy()
        op[idx] += 1e-6
        om[idx] -= 1e-6
        numeric[idx] = (formula(op, t) - formula(om, t)) / 2e-6
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_probabilities_in_are_the_same_loss_as_logits_in():
    rng = np.random.default_rng(0)
    o, y = rng.standard_normal((5, 4)), rng.integers(0, 4, 5)
    from_logits = CrossEntropy()
    value = from_logits.forward(o, y)
    p = np.exp(log_softmax(o, axis=1))
    from_proba = CrossEntropy(from_logits=False)
    assert from_proba.forward(p, y) == pytest.approx(value, rel=1e-10)
    numeric = np.zeros_like(p)  # dL/dp by central differences on L(p) = -mean log p[y]
    for idx in np.ndindex(p.shape):
        pp, pm = p.copy(), p.copy()
        pp[idx] += 1e-7
        pm[idx] -= 1e-7
        numeric[idx] = CrossEntropy(False).forward(pp, y) - CrossEntropy(False).forward(pm, y)
    np.testing.assert_allclose(from_proba.backward(), numeric / 2e-7, rtol=1e-5, atol=1e-8)


def test_kernel_codes_follow_the_targets():
    ce = CrossEntropy()
    assert ce.code(np.zeros(3, np.int64)) == C.LOSS_CROSS_ENTROPY
    assert ce.code(np.zeros((3, 2))) == C.LOSS_CROSS_ENTROPY_SOFT
    assert get_loss("mse").code(np.zeros((3, 2))) == C.LOSS_MSE
    assert get_loss("binary_cross_entropy").code(np.zeros((3, 1))) == C.LOSS_BINARY_CROSS_ENTROPY
    assert get_loss("kl_divergence").code(np.zeros((3, 2))) == C.LOSS_KL_DIVERGENCE


def test_targets_are_prepared_for_the_kernels():
    f32 = np.dtype(np.float32)
    labels = np.array([2, 0, 1])
    mse = get_loss("mse").prepare_targets(labels, 3, f32)
    np.testing.assert_array_equal(mse, np.eye(3, dtype=np.float32)[labels])  # one-hot
    assert get_loss("mse").prepare_targets(np.array([0.5, 2.0]), 1, f32).shape == (2, 1)
    ce = CrossEntropy().prepare_targets(labels.astype(float), 3, f32)
    assert ce.dtype == np.int64 and list(ce) == [2, 0, 1]
    kl = get_loss("kl_divergence").prepare_targets(labels, 3, f32)
    assert kl.dtype == np.float32 and kl.shape == (3, 3)
    bce = get_loss("binary_cross_entropy").prepare_targets([0, 1, 1], 1, f32)
    assert bce.shape == (3, 1) and bce.dtype == np.float32


@pytest.mark.parametrize(
    ("name", "y", "n_outputs", "message"),
    [
        ("cross_entropy", [0, 1], 1, "binary_cross_entropy"),
        ("cross_entropy", [0, 3], 3, r"0\.\.2"),
        ("cross_entropy", [[0.5, 0.6], [0.5, 0.5]], 2, "probabilities"),
        ("binary_cross_entropy", [[1.5], [0.0]], 1, r"\[0, 1\]"),
        ("mse", [[1.0, 2.0]], 3, r"shape \(n, 3\)"),
        ("mse", [[np.inf, 1.0, 0.0]], 3, "NaN or infinite"),
        ("kl_divergence", [[-0.5, 1.5]], 2, "probabilities"),
    ],
)
def test_bad_targets(name, y, n_outputs, message):
    with pytest.raises(ValueError, match=message):
        get_loss(name).prepare_targets(np.asarray(y), n_outputs, np.dtype(np.float64))


def test_object_api_errors():
    loss = CrossEntropy()
    with pytest.raises(RuntimeError, match="before forward"):
        loss.backward()
    with pytest.raises(ValueError, match="2-D"):
        loss.forward(np.zeros(3), [0, 1, 2])
    with pytest.raises(ValueError, match="3 targets for 2 outputs"):
        loss.forward(np.zeros((2, 3)), [0, 1, 2])
    with pytest.raises(ValueError, match="unknown loss 'hinge'.*cross_entropy"):
        get_loss("hinge")
    assert get_loss("MSE").name == "mse" and get_loss(loss) is loss
    with pytest.raises(NotImplementedError):
        Loss().code(np.zeros(2))
