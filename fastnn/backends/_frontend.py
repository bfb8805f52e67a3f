"""The one validate-cast-call layer in front of every compiled backend.

Compiled code indexes raw memory: a wrong shape there is a segfault or a silently wrong answer,
not an exception. So a compiled backend never exposes its entry points directly: its package
calls :func:`bind` with a namespace ``impl`` holding functions of the contract's names and
parameters that trust their arguments, and publishes what :func:`bind` returns. Each public
function checks every argument (:mod:`fastnn.backends._checks`), turns NumPy scalars into plain
Python ``int``/``float``/``bool`` (so Numba compiles no extra specialization and Cython's typed
arguments always convert), calls ``impl``, and returns a plain Python value. Docstrings are the
reference backend's, so the formulas are written down once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._codes import NEEDS_PREACTIVATION
from . import _checks
from . import numpy as reference
from .workspace import Workspace

LOSS_NAMES: tuple[str, ...] = (
    "mse",
    "softmax_cross_entropy",
    "softmax_cross_entropy_soft",
    "binary_cross_entropy",
    "kl_divergence",
)


def _documented(name: str, func: Callable, backend: str) -> Callable:
    func.__name__ = func.__qualname__ = name
    func.__doc__ = f"{backend} backend: {(getattr(reference, name).__doc__ or '').strip()}"
    return func


def _loss(name: str, impl: Any) -> Callable:
    kernel = getattr(impl, name)
    class_indices = name == "softmax_cross_entropy"

    def loss(outputs: np.ndarray, targets: np.ndarray, grad_out: np.ndarray) -> float:
        _checks.check_loss(outputs, targets, grad_out, class_indices=class_indices)
        return float(kernel(outputs, targets, grad_out))

    return loss


def bind(backend: str, impl: Any) -> dict[str, Callable]:
    """The public kernels of a compiled backend, checked in front of ``impl``.

    Parameters
    ----------
    backend : str
        The backend's name (for the docstrings).
    impl : module or namespace
        Functions ``dense_forward``, ``dense_backward``, the five losses, ``sgd_update``,
        ``momentum_update``, ``adam_update`` and ``train_epoch``, with the parameters of the
        kernel contract (:mod:`fastnn.backends`), trusting their arguments.

    Returns
    -------
    dict of str to callable
        The same names, each validating, casting and calling through.
    """

    def dense_forward(
        x: np.ndarray,
        W: np.ndarray,
        b: np.ndarray,
        act: int,
        alpha: float,
        z_out: np.ndarray | None,
        out: np.ndarray,
    ) -> None:
        _checks.check_dense_forward(x, W, b, act, z_out, out)
        impl.dense_forward(x, W, b, int(act), float(alpha), z_out, out)

    def dense_backward(
        x: np.ndarray,
        W: np.ndarray,
        z: np.ndarray | None,
        a: np.ndarray,
        grad: np.ndarray,
        act: int,
        alpha: float,
        dW_out: np.ndarray,
        db_out: np.ndarray,
        grad_x_out: np.ndarray | None,
    ) -> None:
        _checks.check_dense_backward(x, W, z, a, grad, act, dW_out, db_out, grad_x_out)
        impl.dense_backward(x, W, z, a, grad, int(act), float(alpha), dW_out, db_out, grad_x_out)

    def sgd_update(param: np.ndarray, grad: np.ndarray, lr: float, weight_decay: float) -> None:
        _checks.check_update(param, grad)
        impl.sgd_update(param, grad, float(lr), float(weight_decay))

    def momentum_update(
        param: np.ndarray,
        grad: np.ndarray,
        velocity: np.ndarray,
        lr: float,
        momentum: float,
        nesterov: bool,
        weight_decay: float,
    ) -> None:
        _checks.check_update(param, grad, velocity)
        impl.momentum_update(
            param, grad, velocity, float(lr), float(momentum), bool(nesterov), float(weight_decay)
        )

    def adam_update(
        param: np.ndarray,
        grad: np.ndarray,
        m: np.ndarray,
        v: np.ndarray,
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
        weight_decay: float,
        step: int,
    ) -> None:
        _checks.check_update(param, grad, m, v)
        impl.adam_update(
            param, grad, m, v, float(lr), float(beta1), float(beta2), float(eps),
            float(weight_decay), int(step),
        )  # fmt: skip

    def train_epoch(
        ws: Workspace,
        X: np.ndarray,
        targets: np.ndarray,
        order: np.ndarray,
        batch_size: int,
        batch_losses: np.ndarray,
    ) -> int:
        _checks.check_train_epoch(ws, X, targets, order, int(batch_size), batch_losses)
        return int(impl.train_epoch(ws, X, targets, order, int(batch_size), batch_losses))

    public: dict[str, Callable] = {
        **_conv_kernels(impl),
        **_predict_kernel(impl),
        "dense_forward": dense_forward,
        "dense_backward": dense_backward,
        "sgd_update": sgd_update,
        "momentum_update": momentum_update,
        "adam_update": adam_update,
        "train_epoch": train_epoch,
    }
    public.update({name: _loss(name, impl) for name in LOSS_NAMES})
    return {
        name: func if name in OPTIONAL_NAMES else _documented(name, func, backend)
        for name, func in public.items()
    }


def _conv_kernels(impl: Any) -> dict[str, Callable]:
    """The checked convolution and pooling kernels (for a backend that has them)."""
    if not hasattr(impl, "conv2d_forward"):
        return {}

    def conv2d_forward(
        x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int, padding: int, act: int,
        alpha: float, z_out: np.ndarray | None, out: np.ndarray,
    ) -> None:  # fmt: skip
        _checks.check_conv2d_forward(x, W, b, stride, padding, act, z_out, out)
        impl.conv2d_forward(x, W, b, int(stride), int(padding), int(act), float(alpha), z_out, out)

    def conv2d_backward(
        x: np.ndarray, W: np.ndarray, z: np.ndarray | None, a: np.ndarray, grad: np.ndarray,
        stride: int, padding: int, act: int, alpha: float, dW_out: np.ndarray,
        db_out: np.ndarray, grad_x_out: np.ndarray | None,
    ) -> None:  # fmt: skip
        _checks.check_conv2d_backward(
            x, W, z, a, grad, stride, padding, act, dW_out, db_out, grad_x_out
        )
        impl.conv2d_backward(
            x, W, z, a, grad, int(stride), int(padding), int(act), float(alpha), dW_out,
            db_out, grad_x_out,
        )  # fmt: skip

    def maxpool2d_forward(
        x: np.ndarray, kernel: int, stride: int, out: np.ndarray, argmax_out: np.ndarray
    ) -> None:
        _checks.check_maxpool2d(x, kernel, stride, out, argmax_out)
        impl.maxpool2d_forward(x, int(kernel), int(stride), out, argmax_out)

    def maxpool2d_backward(grad: np.ndarray, argmax: np.ndarray, grad_x_out: np.ndarray) -> None:
        _checks.check_maxpool2d_backward(grad, argmax, grad_x_out)
        bad = impl.maxpool2d_backward(grad, argmax, grad_x_out)  # indices out of the plane
        if bad:
            raise _checks.argmax_error(bad, grad_x_out.shape[2] * grad_x_out.shape[3])

    def conv2d_maxpool_forward(
        x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int, padding: int, act: int,
        alpha: float, kernel: int, pool_stride: int, out: np.ndarray, argmax_out: np.ndarray,
    ) -> None:  # fmt: skip
        _checks.check_conv2d_maxpool_forward(
            x, W, b, stride, padding, act, kernel, pool_stride, out, argmax_out
        )
        impl.conv2d_maxpool_forward(
            x, W, b, int(stride), int(padding), int(act), float(alpha), int(kernel),
            int(pool_stride), out, argmax_out,
        )  # fmt: skip

    def conv2d_maxpool_backward(
        x: np.ndarray, W: np.ndarray, a: np.ndarray, argmax: np.ndarray, grad: np.ndarray,
        stride: int, padding: int, act: int, alpha: float, dW_out: np.ndarray,
        db_out: np.ndarray, grad_x_out: np.ndarray | None,
    ) -> None:  # fmt: skip
        _checks.check_conv2d_maxpool_backward(
            x, W, a, argmax, grad, stride, padding, act, dW_out, db_out, grad_x_out
        )
        bad = impl.conv2d_maxpool_backward(
            x, W, a, argmax, grad, int(stride), int(padding), int(act), float(alpha), dW_out,
            db_out, grad_x_out,
        )  # fmt: skip
        if bad:
            ho, wo = reference.conv.conv_output_hw(x.shape, W.shape, int(stride), int(padding))
            raise _checks.argmax_error(bad, ho * wo)

    return {
        "conv2d_maxpool_forward": conv2d_maxpool_forward,
        "conv2d_maxpool_backward": conv2d_maxpool_backward,
        "conv2d_forward": conv2d_forward,
        "conv2d_backward": conv2d_backward,
        "maxpool2d_forward": maxpool2d_forward,
        "maxpool2d_backward": maxpool2d_backward,
    }


def _predict_kernel(impl: Any) -> dict[str, Callable]:
    """The optional whole-forward kernel, prepared once per model and batch capacity."""
    if not hasattr(impl, "prepare_predict_dense"):
        return {}

    def prepare_predict_dense(
        weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], acts: Sequence[int],
        alphas: Sequence[float], rows: int,
    ) -> Callable[[np.ndarray], np.ndarray | None]:  # fmt: skip
        """A function ``x (n, d0) -> (n, k_last)`` running every dense layer in one compiled
        call, for ``n <= rows``. The parameters and buffers are checked here, once; each call
        checks only ``x``, its shape and dtype here and its values in the compiled pass: it
        returns None, having computed nothing, when ``x`` holds NaN or infinite values. The
        returned array is a view of a buffer the next call overwrites."""
        weights, biases = tuple(weights), tuple(biases)
        dt = weights[0].dtype
        acts_arr = np.ascontiguousarray(acts, dtype=np.int64)
        alphas_arr = np.ascontiguousarray(alphas, dtype=np.float64)
        outs = tuple(np.empty((rows, W.shape[1]), dt) for W in weights)
        zs = tuple(np.empty((rows if int(a) in NEEDS_PREACTIVATION else 0, W.shape[1]), dt)
                   for W, a in zip(weights, acts_arr, strict=True))  # fmt: skip
        probe = np.zeros((rows, weights[0].shape[0]), dt)
        _checks.check_predict_dense(probe, weights, biases, acts_arr, alphas_arr, outs, zs)
        d0 = weights[0].shape[0]
        run = impl.prepare_predict_dense(weights, biases, acts_arr, alphas_arr, outs, zs)

        def predict(x: np.ndarray) -> np.ndarray:
            if not (
                isinstance(x, np.ndarray)
                and x.dtype == dt
                and x.ndim == 2
                and x.shape[1] == d0
                and x.shape[0] <= rows
                and x.flags.c_contiguous
            ):
                raise ValueError(f"x must be a C-contiguous {dt} array of shape (<= {rows}, {d0})")
            if run(x):
                return None
            return outs[-1][: x.shape[0]]

        return predict

    return {"prepare_predict_dense": prepare_predict_dense}


def contract_names() -> tuple[str, ...]:
    """Every function name of the kernel contract (tests check each backend has them all)."""
    return ("dense_forward", "dense_backward", *LOSS_NAMES, "sgd_update", "momentum_update",
            "adam_update", "train_epoch", *CONV_NAMES)  # fmt: skip


#: Kernels a backend may add for speed (the reference does without them).
OPTIONAL_NAMES: tuple[str, ...] = ("prepare_predict_dense",)
#: The convolution and pooling kernels of the contract.
CONV_NAMES: tuple[str, ...] = (
    "conv2d_forward", "conv2d_backward", "maxpool2d_forward", "maxpool2d_backward",
    "conv2d_maxpool_forward", "conv2d_maxpool_backward",
)  # fmt: skip
