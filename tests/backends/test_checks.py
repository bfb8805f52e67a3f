"""Bad kernel arguments are an exception naming the problem, never a crash
(``fastnn.backends._checks`` behind ``_frontend.bind``).

Run on the reference behind ``_frontend.bind`` (so the checks are tested even where no
compiled backend loads) and on every compiled backend that loads.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from fastnn import _codes as C
from fastnn.backends import _frontend, available_backends, load_backend
from fastnn.backends import numpy as ref

COMPILED = [name for name in available_backends() if name != "numpy"]
SGD_HYPER = [0.1, 0.0, 0.0, 0.0, 0.9, 0.999, 1e-8]


@pytest.fixture(params=["numpy+bind", *COMPILED])
def checked(request):
    """Every module whose kernels must check their arguments."""
    if request.param == "numpy+bind":  # the reference as a compiled backend publishes it
        return SimpleNamespace(NAME="numpy+bind", **_frontend.bind("numpy", ref))
    return load_backend(request.param)


def test_bad_kernel_arguments_raise(checked):
    B = checked
    f32 = np.zeros((4, 3), np.float32)
    W, b, out = np.zeros((3, 2), np.float32), np.zeros(2, np.float32), np.zeros((4, 2), np.float32)
    z = np.zeros((4, 2), np.float32)
    with pytest.raises(TypeError):
        B.dense_forward(f32.astype(np.float64), W, b, C.RELU, 0.0, None, out)
    with pytest.raises(TypeError):
        B.dense_forward(f32.tolist(), W, b, C.RELU, 0.0, None, out)
    with pytest.raises(ValueError):
        B.dense_forward(f32, np.zeros((4, 2), np.float32), b, C.RELU, 0.0, None, out)
    with pytest.raises(ValueError):
        B.dense_forward(f32, W, b, C.RELU, 0.0, None, np.zeros((5, 2), np.float32))
    with pytest.raises(ValueError):
        B.dense_forward(np.zeros((3, 4), np.float32).T, W, b, C.RELU, 0.0, None, out)
    with pytest.raises(ValueError):
        B.dense_forward(f32, W, b, 99, 0.0, None, out)
    with pytest.raises(ValueError):
        B.dense_backward(f32, W, None, out, out.copy(), C.RELU, 0.0,
                         np.zeros((2, 3), np.float32), b.copy(), None)  # fmt: skip
    with pytest.raises(ValueError):
        B.dense_backward(f32, W, None, out, out.copy(), C.RELU, 0.0, W.copy(), b.copy(),
                         np.zeros((4, 2), np.float32))  # fmt: skip
    with pytest.raises(ValueError):
        B.softmax_cross_entropy(out, np.array([0, 1, 2, 0]), out.copy())
    with pytest.raises(TypeError):
        B.softmax_cross_entropy(out, np.array([0, 1, 1, 0], np.int32), out.copy())
    with pytest.raises(ValueError):
        B.mse(out, np.zeros((4, 3), np.float32), out.copy())
    with pytest.raises(ValueError):
        B.sgd_update(b, np.zeros(3, np.float32), 0.1, 0.0)
    with pytest.raises(TypeError):
        B.adam_update(b, b.copy(), b.copy(), b.astype(np.float64), 0.1, 0.9, 0.9, 1e-8, 0.0, 1)
    # The activations that keep z need a z buffer of the right shape, distinct from out.
    for act in sorted(C.NEEDS_PREACTIVATION):
        with pytest.raises(ValueError, match="pre-activation"):
            B.dense_forward(f32, W, b, act, 0.0, None, out)
        with pytest.raises(ValueError):
            B.dense_forward(f32, W, b, act, 0.0, np.zeros((4, 3), np.float32), out)
        with pytest.raises(ValueError, match="overlaps"):
            B.dense_forward(f32, W, b, act, 0.0, out, out)
        with pytest.raises(ValueError, match="pre-activation"):
            B.dense_backward(f32, W, None, out, out.copy(), act, 0.0, W.copy(), b.copy(), None)
        with pytest.raises(TypeError):
            B.dense_backward(f32, W, z.astype(np.float64), out, out.copy(), act, 0.0, W.copy(),
                             b.copy(), None)  # fmt: skip


def test_bad_epoch_arguments_raise(checked, workspace):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10, 6)).astype(np.float32)
    y = rng.integers(0, 3, 10).astype(np.int64)
    order = np.arange(10, dtype=np.int64)
    optimizer, hyper = C.OPT_SGD, SGD_HYPER
    ws = workspace(np.float32, (6, 5, 3), [C.RELU, C.IDENTITY], C.LOSS_CROSS_ENTROPY, optimizer,
                   4, hyper)  # fmt: skip
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
            checked.train_epoch(ws, *args)
    assert ws.step == 0


def test_a_workspace_with_a_missing_z_buffer_is_rejected(checked, workspace):
    """The compiled epoch writes z without bounds checks: a workspace whose preacts do not fit
    its activations must be refused before any compiled code runs."""
    act = min(C.NEEDS_PREACTIVATION)
    ws = workspace(np.float32, (6, 5, 3), [act, C.IDENTITY], C.LOSS_CROSS_ENTROPY, C.OPT_SGD, 4,
                   SGD_HYPER)  # fmt: skip
    ws.preacts[0] = np.zeros((0, 5), np.float32)
    X = np.zeros((8, 6), np.float32)
    with pytest.raises(ValueError, match="preacts"):
        checked.train_epoch(ws, X, np.zeros(8, np.int64), np.arange(8), 4, np.zeros(2))
    assert ws.step == 0


@pytest.mark.parametrize("index", [-1, 16, 10**6])
def test_maxpool_backward_rejects_an_argmax_outside_the_plane(checked, index):
    """The compiled scatters check the indices themselves (no separate pass): a stray one is
    a ValueError naming argmax, and nothing is written outside grad_x_out."""
    grad = np.ones((2, 3, 2, 2), np.float32)
    argmax = np.zeros((2, 3, 2, 2), np.int64)
    argmax[1, 2, 1, 0] = index
    room = np.full(2 * 3 * 16 + 8, 7.0, np.float32)  # grad_x_out, then a guard band
    with pytest.raises(ValueError, match="argmax must hold indices in \\[0, 16\\)"):
        checked.maxpool2d_backward(grad, argmax, room[:-8].reshape(2, 3, 4, 4))
    assert np.all(room[-8:] == 7.0)

