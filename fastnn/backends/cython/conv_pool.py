"""Cython: a convolution and the max pooling after it (``conv2d_maxpool_*``), composed.

The contract's fused pair runs here as the backend's own two kernels in turn, through a
full-batch scratch for the convolution's output: the same numbers as the unfused layers at
about the same speed. The Numba backend runs the pair per chunk of images so that output
stays in cache (``numba/conv_pool.py``); the Cython convolutions work on one contiguous
slice of the batch per thread (im2col groups, ``conv.pxd``), and the per-chunk form of them
is not written yet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._scratch import scratch
from ..numpy.conv import conv_output_hw


def _conv_shape(x: np.ndarray, W: np.ndarray, stride: int, padding: int) -> tuple:
    return (x.shape[0], W.shape[0], *conv_output_hw(x.shape, W.shape, stride, padding))


def entry_points(kernels: Any, threaded: Callable[[Callable], Callable]) -> dict[str, Callable]:
    """The trusted ``conv2d_maxpool_forward`` / ``_backward`` over the compiled ``kernels``
    (``threaded`` adds the backend's thread count)."""
    conv_forward = threaded(kernels.conv2d_forward)
    conv_backward = threaded(kernels.conv2d_backward)
    pool_forward = threaded(kernels.maxpool2d_forward)

    def conv2d_maxpool_forward(
        x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int, padding: int, act: int,
        alpha: float, kernel: int, pool_stride: int, out: np.ndarray, argmax_out: np.ndarray,
    ) -> None:  # fmt: skip
        a = scratch("a", 0, _conv_shape(x, W, stride, padding), x.dtype)
        conv_forward(x, W, b, stride, padding, act, alpha, None, a)
        pool_forward(a, kernel, pool_stride, out, argmax_out)

    def conv2d_maxpool_backward(
        x: np.ndarray, W: np.ndarray, a: np.ndarray, argmax: np.ndarray, grad: np.ndarray,
        stride: int, padding: int, act: int, alpha: float, dW_out: np.ndarray,
        db_out: np.ndarray, grad_x_out: np.ndarray | None,
    ) -> int:  # fmt: skip
        shape = _conv_shape(x, W, stride, padding)
        a_conv, g_conv = scratch("a", 0, shape, x.dtype), scratch("g", 0, shape, x.dtype)
        bad = int(kernels.maxpool2d_unpool(a, grad, argmax, a_conv, g_conv))
        if bad:
            return bad  # the caller raises; nothing more is computed
        conv_backward(x, W, None, a_conv, g_conv, stride, padding, act, alpha, dW_out, db_out,
                      grad_x_out)  # fmt: skip
        return 0

    return {"conv2d_maxpool_forward": conv2d_maxpool_forward,
            "conv2d_maxpool_backward": conv2d_maxpool_backward}  # fmt: skip
