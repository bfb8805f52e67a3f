"""Convolution and max pooling of the reference backend: im2col plus one matrix product.

Notation (NCHW, PyTorch's layout): ``x`` input (n, C, H, W), ``W`` filters (F, C, kh, kw),
``b`` bias (F,), stride ``s``, zero padding ``p``; output size ``Ho = (H + 2p - kh) / s + 1``
and ``Wo = (W + 2p - kw) / s + 1`` (the layers check that the division is exact).

im2col writes every receptive field as one row: ``cols[(i, y, x), (c, u, v)] =
xpad[i, c, s*y + u, s*x + v]``, shape (n*Ho*Wo, C*kh*kw). Then the convolution (a
cross-correlation, as in every deep-learning library) is one product,
``z[i, f, y, x] = sum_{c,u,v} W[f, c, u, v] * xpad[i, c, s*y + u, s*x + v] + b[f]``,
i.e. ``z = cols @ W.reshape(F, -1).T + b``, and its gradients are products too:
``dL/dW = delta.T @ cols``, ``dL/db = sum of delta``, ``dL/dcols = delta @ W`` folded back
onto the input by col2im (a sum over the fields that overlap each pixel).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ... import _codes as C
from .. import _checks
from .activations import activation_backward, activation_forward


def conv_output_hw(x_shape: tuple, W_shape: tuple, stride: int, padding: int) -> tuple[int, int]:
    """(Ho, Wo) of a convolution of images x_shape (n, C, H, W) by filters (F, C, kh, kw)."""
    (h, w), (kh, kw) = x_shape[2:], W_shape[2:]
    return (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1


def im2col(x: np.ndarray, kh: int, kw: int, stride: int, padding: int) -> np.ndarray:
    """Receptive fields of ``x`` (n, C, H, W) as rows: (n*Ho*Wo, C*kh*kw), a new array."""
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    n, c, ho, wo = windows.shape[:4]
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * kh * kw)


def col2im(
    dcols: np.ndarray, x_shape: tuple[int, ...], kh: int, kw: int, stride: int, padding: int
) -> np.ndarray:
    """The adjoint of :func:`im2col`: add every field's row back onto its pixels, (n, C, H, W)."""
    n, c, h, w = x_shape
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (w + 2 * padding - kw) // stride + 1
    fields = dcols.reshape(n, ho, wo, c, kh, kw)
    out = np.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=dcols.dtype)
    for u in range(kh):
        for v in range(kw):
            # Kernel offset (u, v) of every field lands on a strided grid of pixels.
            rows = slice(u, u + stride * ho, stride)
            cols = slice(v, v + stride * wo, stride)
            out[:, :, rows, cols] += fields[:, :, :, :, u, v].transpose(0, 3, 1, 2)
    return out[:, :, padding : padding + h, padding : padding + w]


def conv2d_forward(
    x: np.ndarray,
    W: np.ndarray,
    b: np.ndarray,
    stride: int,
    padding: int,
    act: int,
    alpha: float,
    z_out: np.ndarray | None,
    out: np.ndarray,
) -> None:
    """out = act(conv(x, W) + b), (n, F, Ho, Wo); z_out = conv(x, W) + b where act needs it."""
    n = x.shape[0]
    F, _, kh, kw = W.shape
    cols = im2col(x, kh, kw, stride, padding)
    z = cols @ W.reshape(F, -1).T  # (n*Ho*Wo, F)
    z += b
    out[...] = z.reshape(n, out.shape[2], out.shape[3], F).transpose(0, 3, 1, 2)
    if act in C.NEEDS_PREACTIVATION:
        z_out[...] = out
    activation_forward(out, act, alpha)


def conv2d_backward(
    x: np.ndarray,
    W: np.ndarray,
    z: np.ndarray | None,
    a: np.ndarray,
    grad: np.ndarray,
    stride: int,
    padding: int,
    act: int,
    alpha: float,
    dW_out: np.ndarray,
    db_out: np.ndarray,
    grad_x_out: np.ndarray | None,
) -> None:
    """Backpropagation through one convolution.

    delta = grad * act'(z) (written into ``grad``); dL/dW = delta.T @ cols (reshaped to
    (F, C, kh, kw)); dL/db = sum of delta over n, Ho, Wo; dL/dx = col2im(delta @ W) (skipped
    when ``grad_x_out`` is None).
    """
    activation_backward(z, a, grad, act, alpha)
    F, _, kh, kw = W.shape
    delta = grad.transpose(0, 2, 3, 1).reshape(-1, F)  # (n*Ho*Wo, F)
    cols = im2col(x, kh, kw, stride, padding)
    dW_out[...] = (delta.T @ cols).reshape(W.shape)
    np.sum(grad, axis=(0, 2, 3), out=db_out)
    if grad_x_out is not None:
        grad_x_out[...] = col2im(delta @ W.reshape(F, -1), x.shape, kh, kw, stride, padding)


def maxpool2d_forward(
    x: np.ndarray, kernel: int, stride: int, out: np.ndarray, argmax_out: np.ndarray
) -> None:
    """out[i, c, y, x] = max over the kernel x kernel window at (s*y, s*x) of x (n, C, H, W).

    ``argmax_out`` (n, C, Ho, Wo) int64 receives the flat index ``h * W + w`` of each maximum
    in its input plane (the first one on ties), which is all the backward pass needs.
    """
    n, c, h, w = x.shape
    windows = sliding_window_view(x, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride]
    ho, wo = windows.shape[2:4]
    flat = windows.reshape(n, c, ho, wo, kernel * kernel)
    best = np.argmax(flat, axis=-1)
    out[...] = np.take_along_axis(flat, best[..., None], axis=-1)[..., 0]
    rows = stride * np.arange(ho)[:, None] + best // kernel
    cols = stride * np.arange(wo)[None, :] + best % kernel
    argmax_out[...] = rows * w + cols


def maxpool2d_backward(grad: np.ndarray, argmax: np.ndarray, grad_x_out: np.ndarray) -> int:
    """dL/dx (n, C, H, W): each output's gradient added at the input pixel that was its max.

    Returns 0; an index of ``argmax`` outside the input plane raises ValueError (compiled
    backends return the number of such indices, and their checked wrappers raise).
    """
    n, c = grad.shape[:2]
    planes = grad_x_out.reshape(n * c, -1)
    index = argmax.reshape(n * c, -1)
    bad = int(np.count_nonzero((index < 0) | (index >= planes.shape[1])))
    if bad:
        raise _checks.argmax_error(bad, planes.shape[1])
    planes[...] = 0
    rows = np.repeat(np.arange(n * c), index.shape[1])
    np.add.at(planes, (rows, index.reshape(-1)), grad.reshape(-1))
    return 0


def conv2d_maxpool_forward(
    x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int, padding: int, act: int,
    alpha: float, kernel: int, pool_stride: int, out: np.ndarray, argmax_out: np.ndarray,
) -> None:  # fmt: skip
    """A convolution and the max pooling after it as one call (the layer pair of a CNN).

    out, argmax_out (n, F, Hq, Wq) = ``maxpool2d_forward(a, kernel, pool_stride)`` of
    a (n, F, Ho, Wo) = ``conv2d_forward(x, W, b, stride, padding, act, alpha)``, with argmax
    the flat index ``y * Wo + x`` in a's planes. Compiled backends never write ``a`` to
    memory: it stays in cache between the two. ``act`` must not need the pre-activation
    (the backward pass gets the derivative from the pooled output).
    """
    _checks.pooled_conv_shape(x, W, b, stride, padding, act)  # refuses gelu, silu
    n, F = x.shape[0], W.shape[0]
    ho, wo = conv_output_hw(x.shape, W.shape, stride, padding)
    a = np.empty((n, F, ho, wo), x.dtype)
    conv2d_forward(x, W, b, stride, padding, act, alpha, None, a)
    maxpool2d_forward(a, kernel, pool_stride, out, argmax_out)


def conv2d_maxpool_backward(
    x: np.ndarray, W: np.ndarray, a: np.ndarray, argmax: np.ndarray, grad: np.ndarray,
    stride: int, padding: int, act: int, alpha: float, dW_out: np.ndarray,
    db_out: np.ndarray, grad_x_out: np.ndarray | None,
) -> int:  # fmt: skip
    """Backward of :func:`conv2d_maxpool_forward`: a, argmax, grad (n, F, Hq, Wq) are its
    pooled output, its argmax and dL/d(pooled output); dW_out, db_out, grad_x_out as
    :func:`conv2d_backward` (``grad`` may be overwritten).

    It is ``maxpool2d_backward`` into the convolution's (n, F, Ho, Wo), then
    ``conv2d_backward`` with ``a`` placed at each window's maximum: the activation's
    derivative is only needed where the gradient is not zero, and there the pooled output
    is the convolution's output. Returns 0 (an argmax outside the plane raises ValueError).
    """
    _checks.pooled_conv_shape(x, W, db_out, stride, padding, act)
    n, F = x.shape[0], W.shape[0]
    ho, wo = conv_output_hw(x.shape, W.shape, stride, padding)
    dz = np.empty((n, F, ho, wo), x.dtype)
    maxpool2d_backward(grad, argmax, dz)
    a_full = np.zeros((n * F, ho * wo), x.dtype)
    np.put_along_axis(a_full, argmax.reshape(n * F, -1), a.reshape(n * F, -1), axis=1)
    conv2d_backward(x, W, None, a_full.reshape(dz.shape), dz, stride, padding, act, alpha,
                    dW_out, db_out, grad_x_out)  # fmt: skip
    return 0

