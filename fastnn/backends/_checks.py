"""Argument checks for the compiled kernels' Python entry points.

Compiled code indexes raw memory: a wrong shape there is a segfault or a silently wrong answer,
not an exception. The thin Python wrappers of the Numba and Cython backends call these checks
before any compiled code runs, so every mistake is a ``ValueError``/``TypeError`` naming the
argument. ``train_epoch`` checks once per epoch, not per batch.
"""

from __future__ import annotations

import numpy as np

from .._codes import (
    ACTIVATION_NAMES,
    LOSS_CROSS_ENTROPY,
    LOSS_KERNEL_NAMES,
    N_HYPER,
    NEEDS_PREACTIVATION,
    OPT_ADAM,
    OPT_MOMENTUM,
    OPT_SGD,
    SOFTMAX,
)

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _array(name: str, a: object, ndim: int, dtype: np.dtype | None) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{name} has dtype {a.dtype}, expected {dtype}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    return a


def float_dtype(name: str, a: object) -> np.dtype:
    """The dtype of ``a`` if it is a float32/float64 array, else a TypeError."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {a.dtype}")
    return a.dtype


def _shape(name: str, a: np.ndarray, shape: tuple[int, ...]) -> None:
    if a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}, expected {shape}")


def _act(act: int) -> None:
    if int(act) not in ACTIVATION_NAMES:
        raise ValueError(f"unknown activation code {act}; valid: {sorted(ACTIVATION_NAMES)}")


def _distinct(out_name: str, out: np.ndarray, /, **inputs: np.ndarray | None) -> None:
    """Compiled kernels read inputs while they write outputs: the two must not overlap."""
    for name, a in inputs.items():
        if a is not None and np.may_share_memory(out, a):
            raise ValueError(f"{out_name} overlaps {name}: pass a separate output buffer")


def _preact(name: str, z: object, act: int, shape: tuple[int, ...], dt: np.dtype) -> None:
    if int(act) in NEEDS_PREACTIVATION:
        if z is None:
            raise ValueError(
                f"activation {ACTIVATION_NAMES[int(act)]!r} needs the pre-activation: "
                f"pass {name} of shape {shape}"
            )
        _array(name, z, 2, dt)
        _shape(name, z, shape)


def _backward_outputs_distinct(x, W, z, a, grad, dW_out, db_out, grad_x_out, ndim) -> None:  # noqa: ANN001
    """Every OUT buffer of a backward pass apart from every other buffer it reads or writes."""
    if grad_x_out is not None:
        _array("grad_x_out", grad_x_out, ndim, x.dtype)
        _shape("grad_x_out", grad_x_out, x.shape)
    _distinct("grad", grad, x=x, W=W, a=a, z=z)
    _distinct("dW_out", dW_out, x=x, W=W, z=z, a=a, grad=grad, db_out=db_out)
    _distinct("db_out", db_out, x=x, W=W, z=z, a=a, grad=grad, grad_x_out=grad_x_out)
    if grad_x_out is not None:
        _distinct("grad_x_out", grad_x_out, x=x, W=W, z=z, a=a, grad=grad, dW_out=dW_out)


def check_dense_forward(x, W, b, act, z_out, out) -> None:  # noqa: ANN001
    dt = float_dtype("x", x)
    _array("x", x, 2, dt)
    _array("W", W, 2, dt)
    _array("b", b, 1, dt)
    _array("out", out, 2, dt)
    n, d = x.shape
    if W.shape[0] != d:
        raise ValueError(f"x has {d} features but W has shape {W.shape}")
    k = W.shape[1]
    _shape("b", b, (k,))
    _shape("out", out, (n, k))
    _act(act)
    _preact("z_out", z_out, act, (n, k), dt)
    _distinct("out", out, x=x, W=W, b=b)
    if int(act) in NEEDS_PREACTIVATION:
        _distinct("z_out", z_out, x=x, W=W, b=b, out=out)


def check_dense_backward(x, W, z, a, grad, act, dW_out, db_out, grad_x_out) -> None:  # noqa: ANN001
    dt = float_dtype("x", x)
    for name, arr in (("x", x), ("W", W), ("a", a)):
        _array(name, arr, 2, dt)
    _array("db_out", db_out, 1, dt)
    n, d = x.shape
    if W.shape[0] != d:
        raise ValueError(f"x has {d} features but W has shape {W.shape}")
    k = W.shape[1]
    _shape("a", a, (n, k))
    _shape("db_out", db_out, (k,))
    _act(act)
    _preact("z", z, act, (n, k), dt)
    _array("grad", grad, 2, dt)
    _shape("grad", grad, (n, k))
    _array("dW_out", dW_out, 2, dt)
    _shape("dW_out", dW_out, W.shape)
    _backward_outputs_distinct(x, W, z, a, grad, dW_out, db_out, grad_x_out, 2)


def check_conv2d(x, W, b, stride, padding, act, z, a) -> None:  # noqa: ANN001
    """x (n, C, H, W), W (F, C, kh, kw), b (F,), a (n, F, Ho, Wo) with exact output sizes."""
    shape = _conv_shape(x, W, b, stride, padding, act)
    _array("out", a, 4, x.dtype)
    _shape("out", a, shape)
    if int(act) in NEEDS_PREACTIVATION:
        if z is None:
            raise ValueError(f"activation {ACTIVATION_NAMES[int(act)]!r} needs z of shape {shape}")
        _array("z", z, 4, x.dtype)
        _shape("z", z, shape)


def _conv_shape(x, W, b, stride, padding, act) -> tuple[int, int, int, int]:  # noqa: ANN001
    """The output shape (n, F, Ho, Wo) of a convolution, its arguments checked."""
    dt = float_dtype("x", x)
    _array("x", x, 4, dt)
    _array("W", W, 4, dt)
    _array("b", b, 1, dt)
    n, c, h, w = x.shape
    f, c_w, kh, kw = W.shape
    if c_w != c:
        raise ValueError(f"x has {c} channels but W has shape {W.shape}")
    _shape("b", b, (f,))
    s, p = int(stride), int(padding)
    if s < 1 or p < 0:
        raise ValueError(f"stride must be >= 1 and padding >= 0, got {stride}, {padding}")
    if (h + 2 * p - kh) % s or (w + 2 * p - kw) % s or h + 2 * p < kh or w + 2 * p < kw:
        raise ValueError(f"kernel {kh}x{kw}, stride {s}, padding {p} do not tile {h}x{w}")
    _act(act)
    if int(act) == SOFTMAX:
        raise ValueError("a convolution takes no softmax")
    return (n, f, (h + 2 * p - kh) // s + 1, (w + 2 * p - kw) // s + 1)


def pooled_conv_shape(x, W, b, stride, padding, act) -> tuple[int, int, int, int]:  # noqa: ANN001
    """:func:`_conv_shape` for a convolution fused with the max pooling after it, whose
    backward takes the activation's derivative from the pooled output alone."""
    shape = _conv_shape(x, W, b, stride, padding, act)
    if int(act) in NEEDS_PREACTIVATION:
        raise ValueError(
            f"conv2d_maxpool_* cannot take activation {ACTIVATION_NAMES[int(act)]!r}: its "
            "derivative needs z, which the pooled output does not give; use conv2d_* and "
            "maxpool2d_*"
        )
    return shape


def check_conv2d_maxpool_forward(  # noqa: ANN001
    x, W, b, stride, padding, act, kernel, pool_stride, out, argmax_out
) -> None:
    """out, argmax_out (n, F, Hq, Wq): the pooling of the convolution's (n, F, Ho, Wo)."""
    n, f, ho, wo = pooled_conv_shape(x, W, b, stride, padding, act)
    k, s = int(kernel), int(pool_stride)
    if k < 1 or s < 1 or (ho - k) % s or (wo - k) % s or ho < k or wo < k:
        raise ValueError(f"pool kernel {k}, stride {s} do not tile the convolution's {ho}x{wo}")
    shape = (n, f, (ho - k) // s + 1, (wo - k) // s + 1)
    _array("out", out, 4, x.dtype)
    _shape("out", out, shape)
    _array("argmax_out", argmax_out, 4, np.dtype(np.int64))
    _shape("argmax_out", argmax_out, shape)
    _distinct("out", out, x=x, W=W, b=b, argmax_out=argmax_out)


def check_conv2d_maxpool_backward(  # noqa: ANN001
    x, W, a, argmax, grad, stride, padding, act, dW_out, db_out, grad_x_out
) -> None:
    """a, argmax, grad (n, F, Hq, Wq) of the pooled output; the rest as conv2d_backward."""
    n, f, _, _ = pooled_conv_shape(x, W, db_out, stride, padding, act)
    _array("a", a, 4, x.dtype)
    if a.shape[:2] != (n, f):
        raise ValueError(f"a has shape {a.shape}; the pooled output needs (n, F) = {(n, f)}")
    _array("grad", grad, 4, x.dtype)
    _shape("grad", grad, a.shape)
    _array("argmax", argmax, 4, np.dtype(np.int64))
    _shape("argmax", argmax, a.shape)
    _array("dW_out", dW_out, 4, x.dtype)
    _shape("dW_out", dW_out, W.shape)
    _backward_outputs_distinct(x, W, None, a, grad, dW_out, db_out, grad_x_out, 4)
    _distinct("argmax", argmax, grad=grad, dW_out=dW_out, db_out=db_out, grad_x_out=grad_x_out)


def check_conv2d_forward(x, W, b, stride, padding, act, z_out, out) -> None:  # noqa: ANN001
    check_conv2d(x, W, b, stride, padding, act, z_out, out)
    _distinct("out", out, x=x, W=W, b=b, z_out=z_out)
    if z_out is not None:
        _distinct("z_out", z_out, x=x, W=W, b=b)


def check_conv2d_backward(  # noqa: ANN001
    x, W, z, a, grad, stride, padding, act, dW_out, db_out, grad_x_out
) -> None:
    check_conv2d(x, W, db_out, stride, padding, act, z, a)
    dt = x.dtype
    _array("grad", grad, 4, dt)
    _shape("grad", grad, a.shape)
    _array("dW_out", dW_out, 4, dt)
    _shape("dW_out", dW_out, W.shape)
    _backward_outputs_distinct(x, W, z, a, grad, dW_out, db_out, grad_x_out, 4)


def check_maxpool2d(x, kernel, stride, out, argmax) -> None:  # noqa: ANN001
    """x (n, C, H, W), out and argmax (n, C, Ho, Wo), argmax int64."""
    dt = float_dtype("x", x)
    _array("x", x, 4, dt)
    _array("out", out, 4, dt)
    _array("argmax", argmax, 4, np.dtype(np.int64))
    n, c, h, w = x.shape
    k, s = int(kernel), int(stride)
    if k < 1 or s < 1 or (h - k) % s or (w - k) % s or h < k or w < k:
        raise ValueError(f"kernel {k}, stride {s} do not tile {h}x{w}")
    shape = (n, c, (h - k) // s + 1, (w - k) // s + 1)
    _shape("out", out, shape)
    _shape("argmax", argmax, shape)
    _distinct("out", out, x=x)


def check_maxpool2d_backward(grad, argmax, grad_x_out) -> None:  # noqa: ANN001
    dt = float_dtype("grad", grad)
    _array("grad", grad, 4, dt)
    _array("argmax", argmax, 4, np.dtype(np.int64))
    _shape("argmax", argmax, grad.shape)
    _array("grad_x_out", grad_x_out, 4, dt)
    n, c, h, w = grad_x_out.shape
    if (n, c) != grad.shape[:2]:
        raise ValueError(f"grad_x_out has shape {grad_x_out.shape}, grad {grad.shape}")
    # The indices' range is checked by the compiled scatter itself (see argmax_error): a
    # separate min()/max() pass read the whole array again, ~1.6 ms of a 38 ms CNN batch.
    _distinct("grad_x_out", grad_x_out, grad=grad, argmax=argmax)


def argmax_error(bad: int, size: int) -> ValueError:
    """The error of a max-pool backward whose kernel met ``bad`` indices outside the plane of
    ``size`` pixels (it skipped them: nothing was written out of bounds)."""
    return ValueError(f"argmax must hold indices in [0, {size}) (flat h * W + w in the input "
                      f"plane); {bad} did not")  # fmt: skip


def check_predict_dense(x, weights, biases, acts, alphas, outs, zs) -> None:  # noqa: ANN001
    """A chain of dense layers: x (n, d0); weights[i] (d_i, k_i) with d_{i+1} = k_i; outs[i]
    with >= n rows and k_i columns; zs[i] with >= n rows where acts[i] needs z, else 0 rows."""
    dt = float_dtype("x", x)
    _array("x", x, 2, dt)
    layers = len(weights)
    if not layers or not len(biases) == len(outs) == len(zs) == layers:
        raise ValueError("weights, biases, outs and zs must have one entry per layer")
    _array("acts", acts, 1, np.dtype(np.int64))
    _array("alphas", alphas, 1, np.dtype(np.float64))
    _shape("acts", acts, (layers,))
    _shape("alphas", alphas, (layers,))
    n, width = x.shape
    for i in range(layers):
        W, b, out, z = weights[i], biases[i], outs[i], zs[i]
        for name, a, nd in (("weights", W, 2), ("biases", b, 1), ("outs", out, 2), ("zs", z, 2)):
            _array(f"{name}[{i}]", a, nd, dt)
        if W.shape[0] != width:
            raise ValueError(f"weights[{i}] has {W.shape[0]} inputs, the layer below gives {width}")
        width = W.shape[1]
        _act(acts[i])
        _shape(f"biases[{i}]", b, (width,))
        if out.shape[1] != width or out.shape[0] < n:
            raise ValueError(f"outs[{i}] has shape {out.shape}, needs >= {n} rows of {width}")
        rows = n if int(acts[i]) in NEEDS_PREACTIVATION else 0
        if z.shape[1] != width or (z.shape[0] < rows) or (rows == 0 and z.shape[0] != 0):
            raise ValueError(f"zs[{i}] has shape {z.shape}, needs {rows or '0'} rows of {width}")
        _distinct(f"outs[{i}]", out, x=x, W=W, b=b, z=z)


def check_loss(outputs, targets, grad_out, class_indices: bool) -> None:  # noqa: ANN001
    dt = float_dtype("outputs", outputs)
    _array("outputs", outputs, 2, dt)
    _array("grad_out", grad_out, 2, dt)
    _shape("grad_out", grad_out, outputs.shape)
    _distinct("grad_out", grad_out, outputs=outputs, targets=targets)
    if class_indices:
        _array("targets", targets, 1, np.dtype(np.int64))
        _shape("targets", targets, outputs.shape[:1])
        if targets.size and (targets.min() < 0 or targets.max() >= outputs.shape[1]):
            raise ValueError(
                f"class labels must lie in [0, {outputs.shape[1] - 1}], "
                f"got [{targets.min()}, {targets.max()}]"
            )
    else:
        _array("targets", targets, 2, dt)
        _shape("targets", targets, outputs.shape)


def check_update(param, *state) -> None:  # noqa: ANN001
    dt = float_dtype("param", param)
    _array("param", param, 1, dt)
    arrays: dict = {"param": param}
    for i, s in enumerate(state):
        _array(f"argument {i + 2}", s, 1, dt)
        _shape(f"argument {i + 2}", s, param.shape)
        arrays[f"argument {i + 2}"] = s
    # Every buffer apart from every other: state overwritten while grad is read gives garbage.
    names = list(arrays)
    for i, name in enumerate(names):
        if arrays[name] is not None:
            others = {o: arrays[o] for o in names[i + 1:] if arrays[o] is not None}
            _distinct(name, arrays[name], **others)


def check_workspace(ws) -> None:  # noqa: ANN001
    """Every buffer the compiled epoch indexes without bounds checks must fit the layers."""
    bs, dt = ws.batch_size, ws.dtype
    if not ws.n_layers == len(ws.weights) == len(ws.biases) == len(ws.acts) == len(ws.alphas):
        raise ValueError("weights, biases, acts and alphas must have one entry per layer")
    if ws.optimizer not in (OPT_SGD, OPT_MOMENTUM, OPT_ADAM):
        raise ValueError(f"unknown optimizer code {ws.optimizer}")
    if ws.loss not in LOSS_KERNEL_NAMES:
        raise ValueError(f"unknown loss code {ws.loss}")
    width = ws.weights[0].shape[0]
    for i, W in enumerate(ws.weights):
        if W.shape[0] != width:
            raise ValueError(f"weights[{i}] has {W.shape[0]} inputs, the layer below gives {width}")
        if int(ws.acts[i]) not in ACTIVATION_NAMES:
            raise ValueError(f"unknown activation code {ws.acts[i]} in layer {i}")
        width = W.shape[1]
        expected = {
            "weights": W.shape, "biases": (width,), "dW": W.shape, "db": (width,),
            "outputs": (bs, width), "grads": (bs, width), "state1_w": W.shape,
            "state2_w": W.shape, "state1_b": (width,), "state2_b": (width,),
        }  # fmt: skip
        z_rows = bs if int(ws.acts[i]) in NEEDS_PREACTIVATION else 0
        expected["preacts"] = (z_rows, width)
        for name, shape in expected.items():
            arr = getattr(ws, name)[i]
            if not isinstance(arr, np.ndarray) or arr.dtype != dt or arr.shape != shape:
                raise ValueError(f"ws.{name}[{i}] must be {dt} with shape {shape}")
            if not arr.flags.c_contiguous or not arr.flags.writeable:
                raise ValueError(f"ws.{name}[{i}] must be C-contiguous and writeable")
    y_shape = (bs,) if ws.loss == LOSS_CROSS_ENTROPY else (bs, width)
    y_dtype = np.dtype(np.int64) if ws.loss == LOSS_CROSS_ENTROPY else dt
    buffers = {
        "x_batch": (ws.x_batch, (bs, ws.weights[0].shape[0]), dt),
        "y_batch": (ws.y_batch, y_shape, y_dtype),
        "hyper": (ws.hyper, (N_HYPER,), np.dtype(np.float64)),
    }
    for name, (arr, shape, dtype) in buffers.items():
        if not isinstance(arr, np.ndarray) or arr.dtype != dtype or arr.shape != shape:
            raise ValueError(f"ws.{name} must be {dtype} with shape {shape}")
        if not arr.flags.c_contiguous:
            raise ValueError(f"ws.{name} must be C-contiguous")


def check_train_epoch(ws, X, targets, order, batch_size, batch_losses) -> None:  # noqa: ANN001
    check_workspace(ws)
    dt = ws.dtype
    _array("X", X, 2, dt)
    n = X.shape[0]
    if X.shape[1] != ws.weights[0].shape[0]:
        raise ValueError(
            f"X has {X.shape[1]} features, the network expects {ws.weights[0].shape[0]}"
        )
    if ws.loss == LOSS_CROSS_ENTROPY:
        _array("targets", targets, 1, np.dtype(np.int64))
        _shape("targets", targets, (n,))
        k = ws.weights[-1].shape[1]
        if n and (targets.min() < 0 or targets.max() >= k):
            raise ValueError(f"class labels must lie in [0, {k - 1}]")
    else:
        _array("targets", targets, 2, dt)
        _shape("targets", targets, (n, ws.weights[-1].shape[1]))
    _array("order", order, 1, np.dtype(np.int64))
    if order.size and (order.min() < 0 or order.max() >= n):
        raise ValueError(f"order must hold indices in [0, {n})")
    if not 1 <= batch_size <= ws.batch_size:
        raise ValueError(f"batch_size must lie in [1, {ws.batch_size}], got {batch_size}")
    _array("batch_losses", batch_losses, 1, np.dtype(np.float64))
    _shape("batch_losses", batch_losses, (-(-order.shape[0] // batch_size),))
    for i, (w, b) in enumerate(zip(ws.weights, ws.biases, strict=True)):
        _array(f"weights[{i}]", w, 2, dt)
        _array(f"biases[{i}]", b, 1, dt)
    _distinct("batch_losses", batch_losses, X=X, targets=targets, order=order)
