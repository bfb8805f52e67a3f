"""``fastnn.backends.workspace`` (the buffers of one fit) and ``fastnn.backends.eager`` (the
per-batch loop written once over any backend and any layer kind)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastnn
from fastnn import _codes as C
from fastnn.backends import _checks, eager
from fastnn.backends import numpy as ref
from fastnn.backends.workspace import Workspace, make_slots

ACTS = sorted(C.ACTIVATION_NAMES)
HYPER = np.array([0.1, 0.9, 0.0, 0.0, 0.9, 0.999, 1e-8])  # lr, momentum, ..., eps


def sgd_hyper(lr=0.1):
    h = np.zeros(C.N_HYPER)
    h[C.H_LR] = lr
    return h


# The workspace -------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", [C.LOSS_CROSS_ENTROPY, C.LOSS_MSE])
def test_fields_of_a_dense_stack_every_activation(dense_stack, loss):
    sizes = (7, *range(3, 3 + len(ACTS)), 4)
    acts = [*ACTS, C.IDENTITY]
    layers = dense_stack(sizes, acts, np.float32, alpha=0.25)
    ws = Workspace(layers, acts, loss, C.OPT_ADAM, HYPER, 6, np.float32, step=3)
    assert ws.n_layers == len(layers) and ws.step == 3 and ws.batch_size == 6
    assert ws.acts.dtype == np.int64 and list(ws.acts) == acts
    expected_alphas = [0.25 if a in C.TAKES_ALPHA else 0.0 for a in acts]
    assert ws.alphas.dtype == np.float64 and list(ws.alphas) == expected_alphas
    assert ws.x_batch.shape == (6, 7) and ws.x_batch.dtype == np.float32
    if loss == C.LOSS_CROSS_ENTROPY:
        assert ws.y_batch.shape == (6,) and ws.y_batch.dtype == np.int64
    else:
        assert ws.y_batch.shape == (6, 4) and ws.y_batch.dtype == np.float32
    for i, layer in enumerate(layers):
        k = layer.out_features
        assert ws.weights[i] is layer.W and ws.biases[i] is layer.b  # used in place, not copied
        assert ws.outputs[i].shape == ws.grads[i].shape == (6, k)
        rows = 6 if acts[i] in C.NEEDS_PREACTIVATION else 0
        assert ws.preacts[i].shape == (rows, k) and ws.preacts[i].dtype == np.float32
        for name in ("dW", "state1_w", "state2_w"):
            assert getattr(ws, name)[i].shape == layer.W.shape
        for name in ("db", "state1_b", "state2_b"):
            assert getattr(ws, name)[i].shape == (k,)
    _checks.check_workspace(ws)  # what the workspace builds, the compiled epochs accept


def test_bad_workspace_arguments(dense_stack):
    layers = dense_stack((3, 2), [C.IDENTITY], np.float64)
    with pytest.raises(ValueError, match="optimizer"):
        Workspace(layers, [C.IDENTITY], C.LOSS_MSE, 7, HYPER, 4, np.float64)
    with pytest.raises(ValueError, match="hyper"):
        Workspace(layers, [C.IDENTITY], C.LOSS_MSE, C.OPT_SGD, HYPER[:3], 4, np.float64)
    with pytest.raises(ValueError):
        Workspace(layers, [C.IDENTITY, C.RELU], C.LOSS_MSE, C.OPT_SGD, HYPER, 4, np.float64)


def test_hyper_accessors_read_their_slots(dense_stack):
    hyper = np.arange(1, C.N_HYPER + 1) / 10.0
    ws = Workspace(dense_stack((3, 2), [C.IDENTITY], np.float64), [C.IDENTITY], C.LOSS_MSE,
                   C.OPT_ADAM, hyper, 2, np.float64)  # fmt: skip
    assert ws.lr == hyper[C.H_LR] and ws.momentum == hyper[C.H_MOMENTUM]
    assert ws.nesterov is True and ws.weight_decay == hyper[C.H_WEIGHT_DECAY]
    assert ws.betas == (hyper[C.H_BETA1], hyper[C.H_BETA2]) and ws.eps == hyper[C.H_EPS]


def test_state_arrays_are_in_the_order_of_format_version_1(dense_stack):
    layers = dense_stack((5, 4, 3, 2), [C.RELU, C.TANH, C.IDENTITY], np.float32)
    ws = Workspace(layers, [C.RELU, C.TANH, C.IDENTITY], C.LOSS_MSE, C.OPT_ADAM, HYPER, 4,
                   np.float32)  # fmt: skip
    v1_order = [*ws.state1_w, *ws.state1_b, *ws.state2_w, *ws.state2_b]
    state = ws.state_arrays()
    assert len(state) == len(v1_order) == 12
    assert all(a is b for a, b in zip(state, v1_order, strict=True))
    grads = ws.parameter_gradients()
    assert all(g is w for g, w in zip(grads[0::2], ws.dW, strict=True))
    assert all(g is b for g, b in zip(grads[1::2], ws.db, strict=True))


def test_load_state_round_trips_and_refuses_a_mismatch_before_copying(dense_stack):
    def make():
        layers = dense_stack((5, 4, 3), [C.RELU, C.IDENTITY], np.float64)
        return Workspace(layers, [C.RELU, C.IDENTITY], C.LOSS_MSE, C.OPT_ADAM, HYPER, 4,
                         np.float64)  # fmt: skip

    source, target = make(), make()
    rng = np.random.default_rng(0)
    for a in source.state_arrays():
        a[...] = rng.standard_normal(a.shape)
    saved = [a.copy() for a in source.state_arrays()]
    target.load_state(saved)
    for got, want in zip(target.state_arrays(), saved, strict=True):
        np.testing.assert_array_equal(got, want)
    fresh = make()
    with pytest.raises(ValueError, match="expected 8"):
        fresh.load_state(saved[:-1])
    bad = [*saved[:-1], np.zeros(99)]
    with pytest.raises(ValueError, match="shape"):
        fresh.load_state(bad)
    assert all(not a.any() for a in fresh.state_arrays())  # nothing half-copied


def test_prediction_slots_hold_no_training_buffers(dense_stack):
    act = min(C.NEEDS_PREACTIVATION)
    layers = dense_stack((5, 4, 3), [act, C.IDENTITY], np.float32)
    slots = make_slots(layers, [act, C.IDENTITY], 8, np.float32, training=False)
    for slot, layer in zip(slots, layers, strict=True):
        assert slot.grads == slot.state1 == slot.state2 == []
        assert slot.delta.shape == (0, layer.out_features)
        assert slot.output.shape == (8, layer.out_features)
    assert slots[0].buffers["z"].shape == (8, 4) and slots[1].buffers == {}


def test_a_layer_without_parameters_has_a_slot_and_no_dense_lists(dense_stack, scale_layer):
    first, last = dense_stack((4, 5, 3), [C.RELU, C.IDENTITY], np.float64)
    scale = scale_layer(3.0)
    scale.build((5,), np.random.default_rng(0), np.float64)
    layers = [first, scale, last]
    acts = [C.RELU, C.IDENTITY, C.IDENTITY]
    ws = Workspace(layers, acts, C.LOSS_MSE, C.OPT_ADAM, HYPER, 4, np.float64)
    assert ws.weights == ws.biases == ws.dW == ws.state1_w == []  # not a dense stack
    assert ws.slots[1].params == [] and ws.outputs[1].shape == (4, 5)
    assert ws.preacts[1].shape == (0, 5)
    assert len(ws.state_arrays()) == 8  # the two dense layers' W and b, m and v
    assert ws.parameter_gradients()[0] is ws.slots[0].grads[0]
    assert len(ws.parameter_gradients()) == 4


# The eager loop ------------------------------------------------------------------------------
def test_eager_epoch_equals_the_teaching_path_batch_by_batch(dense_stack):
    """Gather by ``order``, a ragged last batch and an SGD step per batch, against
    ``Sequential.forward``/``backward`` and a loss object with hand-written updates."""
    rng = np.random.default_rng(1)
    n, bs = 11, 4
    X, y = rng.standard_normal((n, 5)), rng.integers(0, 3, n)
    order = rng.permutation(n).astype(np.int64)
    acts = [C.GELU, C.ELU, C.IDENTITY]
    ws = Workspace(dense_stack((5, 6, 4, 3), acts, np.float64), acts, C.LOSS_CROSS_ENTROPY,
                   C.OPT_SGD, sgd_hyper(0.2), bs, np.float64)  # fmt: skip
    losses = np.full(3, np.nan)
    assert eager.eager_epoch(ref, ws, X, y.astype(np.int64), order, bs, losses) == 3
    assert ws.step == 3

    model = fastnn.Sequential(dense_stack((5, 6, 4, 3), acts, np.float64), dtype="float64")
    start_weights = dense_stack((5, 6, 4, 3), acts, np.float64)  # Sequential draws its own
    model.set_weights([p for layer in start_weights for p in layer.parameters()])
    loss = fastnn.losses.CrossEntropy()
    expected = []
    for start in range(0, n, bs):
        idx = order[start : start + bs]
        expected.append(loss.forward(model.forward(X[idx]), y[idx]))
        model.backward(loss.backward())
        for p, g in zip(model.parameters(), model.gradients(), strict=True):
            p -= 0.2 * g
    np.testing.assert_allclose(losses, expected, rtol=1e-12)
    for got, want in zip([p for s in ws.slots for p in s.params], model.parameters(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_the_hook_runs_between_backward_and_update(dense_stack):
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((10, 3)), rng.integers(0, 2, 10).astype(np.int64)
    layers = dense_stack((3, 4, 2), [C.TANH, C.IDENTITY], np.float64)
    before = [layer.W.copy() for layer in layers]
    ws = Workspace(layers, [C.TANH, C.IDENTITY], C.LOSS_CROSS_ENTROPY, C.OPT_SGD, sgd_hyper(),
                   4, np.float64)  # fmt: skip
    calls = []

    def hook(batch, rows):
        calls.append((batch, rows))
        assert all(np.abs(g).sum() > 0 for g in ws.parameter_gradients()[::2])  # after backward
        for g in ws.parameter_gradients():
            g[...] = 0  # before the update: zero gradients mean no step

    done = eager.eager_epoch(ref, ws, X, y, np.arange(10), 4, np.zeros(3), hook)
    assert done == 3 and calls == [(0, 4), (1, 4), (2, 2)] and ws.step == 3
    for layer, W in zip(layers, before, strict=True):
        np.testing.assert_array_equal(layer.W, W)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_a_non_finite_loss_stops_before_its_update(dense_stack):
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((12, 3)), rng.integers(0, 2, 12).astype(np.int64)
    X[5, 0] = np.nan  # the second batch of 4
    layers = dense_stack((3, 2), [C.IDENTITY], np.float64)
    ws = Workspace(layers, [C.IDENTITY], C.LOSS_CROSS_ENTROPY, C.OPT_ADAM, HYPER, 4, np.float64)
    losses = np.full(3, -1.0)
    done = eager.eager_epoch(ref, ws, X, y, np.arange(12, dtype=np.int64), 4, losses)
    assert done == 2 and ws.step == 1 and math.isnan(losses[1]) and losses[2] == -1.0
    assert np.isfinite(layers[0].W).all()


def test_a_layer_without_parameters_trains_through_the_eager_loop(dense_stack, scale_layer):
    """Forward, backward (through the parameter-free layer) and updates of the others."""
    rng = np.random.default_rng(4)
    n = 6
    first, last = dense_stack((4, 5, 3), [C.SILU, C.IDENTITY], np.float64)
    scale = scale_layer(-1.5)
    scale.build((5,), rng, np.float64)
    acts = [C.SILU, C.IDENTITY, C.IDENTITY]
    ws = Workspace([first, scale, last], acts, C.LOSS_MSE, C.OPT_SGD, sgd_hyper(), n, np.float64)
    ws.x_batch[:] = rng.standard_normal(ws.x_batch.shape)
    ws.y_batch[:] = rng.standard_normal(ws.y_batch.shape)
    eager.forward_backward(ref, ws, n)
    analytic = [g.copy() for g in ws.parameter_gradients()]
    params = [p for s in ws.slots for p in s.params]
    for p, a in zip(params, analytic, strict=True):
        numeric = np.zeros_like(p)
        for i in range(p.size):
            old = p.flat[i]
            p.flat[i] = old + 1e-6
            plus = eager.forward_backward(ref, ws, n)
            p.flat[i] = old - 1e-6
            minus = eager.forward_backward(ref, ws, n)
            p.flat[i] = old
            numeric.flat[i] = (plus - minus) / 2e-6
        np.testing.assert_allclose(a, numeric, rtol=1e-6, atol=1e-9)
    X = rng.standard_normal((30, 4))
    Y = np.tanh(X @ rng.standard_normal((4, 3)))  # learnable targets
    losses = [np.zeros(5) for _ in range(30)]
    for epoch_losses in losses:
        eager.eager_epoch(ref, ws, X, Y, np.arange(30, dtype=np.int64), 6, epoch_losses)
    assert losses[-1].mean() < 0.5 * losses[0].mean()
