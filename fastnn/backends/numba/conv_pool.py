"""A convolution and the max pooling after it, as one pass over each chunk of images.

Formulas: :func:`fastnn.backends.numpy.conv.conv2d_maxpool_forward` and
``conv2d_maxpool_backward`` (the reference).

Design:

A. The unfused layers write the convolution's whole (n, F, Ho, Wo) output to memory, read it
   back to pool it, read it again for the activation's derivative, and write and read the
   same size again for its gradient: for MNIST_99's first convolution at batch 256 that is
   14 MB each way, five times per batch (the pooling alone took ~4 ms forward and ~2 ms
   backward of a ~38 ms batch). Here each thread takes a chunk of images from the shared
   counter and runs the very same kernels of :mod:`.conv` and :mod:`.pool` on that chunk
   alone, through its own (CHUNK, F, Ho, Wo) scratch, which stays in L2 (442 KB for that
   layer) between the convolution and the pooling. Same arithmetic in the same order: the
   results are those of the unfused layers, bit for bit.
B. Backward, per chunk: the activation's derivative is applied to the pooled gradient (at a
   window's maximum the pooled output is the convolution's output), which is then scattered
   to each window's maximum in a zeroed scratch plane (elsewhere the gradient is zero), and
   the convolution's backward kernel runs on the chunk as for the identity, its partial dW
   and db going to the chunk's own part (as unfused). The scatter checks every index
   against the plane and counts the strays. (For tiling windows the numbers are the
   unfused layers' bit for bit; overlapping windows multiply before they add.)
D. Where a receptive-field row is long (``kw * C >= SPARSE_ROW``: MNIST_99's second
   convolution, 3 x 24 = 72), the backward pass works from the pooled gradient alone: only
   each window's maximum has a gradient, so the convolution's backward needs 1/k^2 of its
   products (1/4 for 2 x 2 pooling, about 1/8 after ReLU's zeros, which are skipped). Per
   image and filter, the windows with a non-zero gradient are listed (branch-free), and
   each adds ``d * x`` over its receptive field to dW and ``d * W[f]`` to the input
   gradient: ``kh`` contiguous rows of ``kw * C`` (NHWC), which LLVM vectorizes. dW
   accumulates in filter-major rows (F, kh, kw*C) per chunk, as the dense kernels' parts.
   For short rows (a first convolution over one channel: 5) the dense kernels of Design B
   stay faster.
C. The convolution kernel is bound per formulation (rows or NHWC, :func:`.conv.forward_plan`)
   with :func:`.jit.specialize`, and called with the plan's argument tuples (``*head``).
"""

from __future__ import annotations

import math

import numpy as np

from ..._codes import IDENTITY, NEEDS_PREACTIVATION
from .._scratch import scratch
from ..numpy.conv import conv_output_hw
from . import conv_nchw as nchw
from . import conv_nhwc as nhwc
from .activations import act_backward_row
from .blas import blas_threads
from .conv import backward_plan, forward_plan
from .conv_sparse import sparse_backward
from .jit import specialize
from .pool import maxpool_backward_images, maxpool_forward_images
from .simd import fetch_add
from .team import CHUNK, run_chunked

SPARSE_ROW = 16  # shortest receptive-field row (kw * C) for the sparse backward (Design D)


def _forward_pooled(x, head, tail, conv_out, pool, pool_stride, out, argmax, counter, chunk,
                    local):  # fmt: skip
    """out, argmax (n, F, Hq, Wq) of the chunks this thread takes from ``counter``: ``conv``
    into conv_out (chunk, F, Ho, Wo), then pooled (Design A)."""
    n = x.shape[0]
    while True:
        i0 = fetch_add(counter, 1) * chunk
        if i0 >= n:
            return
        i1 = min(i0 + chunk, n)
        local[0] = 0
        conv(x[i0:i1], *head, conv_out[: i1 - i0], local, chunk, *tail)  # noqa: F821 (bound)
        local[0] = 0
        maxpool_forward_images(conv_out[: i1 - i0], pool, pool_stride, out[i0:i1],
                               argmax[i0:i1], local, chunk)  # fmt: skip


def _backward_pooled(x, head, a, argmax, grad, padding, act, alpha, want_dx, grad_x, mid,
                     dws, dbs, tail, g_conv, rowsum, counter, chunk, local, bad):  # fmt: skip
    """dW, db parts and grad_x of the chunks this thread takes from ``counter`` (Design B)."""
    n = x.shape[0]
    g2, a2 = grad.reshape((n, grad.size // max(n, 1))), a.reshape((n, a.size // max(n, 1)))
    while True:
        part = fetch_add(counter, 1)
        i0 = part * chunk
        if i0 >= n:
            return
        i1 = min(i0 + chunk, n)
        m = i1 - i0
        for i in range(i0, i1):  # dL/dz at the maxima, from the pooled output
            act_backward_row(a2[:0], a2, g2, i, act, alpha, rowsum)
        local[0] = 0  # the max-pool backward's scatter, on this chunk alone
        maxpool_backward_images(grad[i0:i1], argmax[i0:i1], g_conv[:m], local, chunk, bad)
        local[0] = 0
        conv_backward(x[i0:i1], *head, g_conv[:0], g_conv[:m], g_conv[:m], padding, IDENTITY,  # noqa: F821
                      alpha, want_dx, grad_x[i0:i1], local, chunk, *mid,
                      dws[part : part + 1], dbs[part : part + 1], *tail)  # fmt: skip


_FORWARD = {
    nchw.forward_rows_images: specialize(_forward_pooled, conv=nchw.forward_rows_images),
    nhwc.forward_images: specialize(_forward_pooled, conv=nhwc.forward_images),
}
_BACKWARD = {
    nchw.backward_rows_images: specialize(
        _backward_pooled, conv_backward=nchw.backward_rows_images
    ),
    nhwc.backward_images: specialize(_backward_pooled, conv_backward=nhwc.backward_images),
}


# Trusted entry points of the kernel contract (fastnn.backends._frontend checked the arguments).
def conv2d_maxpool_forward(
    x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int, padding: int, act: int,
    alpha: float, kernel: int, pool_stride: int, out: np.ndarray, argmax_out: np.ndarray,
) -> None:  # fmt: skip
    """out, argmax_out (n, F, Hq, Wq): the max pooling of act(conv(x, W) + b) (Design A)."""
    assert act not in NEEDS_PREACTIVATION  # the checks refuse it
    shape = (x.shape[0], W.shape[0], *conv_output_hw(x.shape, W.shape, stride, padding))
    plan = forward_plan(x, W, b, stride, padding, act, alpha, np.empty((0, *shape[1:]), x.dtype),
                        shape)  # fmt: skip
    run_chunked(_FORWARD[plan.kernel], x.shape[0], lambda k, counter: (
        x, plan.head, plan.tail_of(), scratch("conv", k, (CHUNK, *shape[1:]), x.dtype), kernel,
        pool_stride, out, argmax_out, counter, CHUNK, np.zeros(1, np.int64)))  # fmt: skip


def conv2d_maxpool_backward(
    x: np.ndarray, W: np.ndarray, a: np.ndarray, argmax: np.ndarray, grad: np.ndarray,
    stride: int, padding: int, act: int, alpha: float, dW_out: np.ndarray,
    db_out: np.ndarray, grad_x_out: np.ndarray | None,
) -> int:  # fmt: skip
    """Backward of :func:`conv2d_maxpool_forward` (Design B); returns the argmax indices
    outside the convolution's planes (skipped; the caller raises)."""
    shape = (x.shape[0], W.shape[0], *conv_output_hw(x.shape, W.shape, stride, padding))
    want_dx = grad_x_out is not None
    grad_x = grad_x_out if want_dx else x[:0]
    if W.shape[1] * W.shape[3] >= SPARSE_ROW:
        return sparse_backward(x, W, a, argmax, grad, shape[3], stride, padding, act, alpha,
                               dW_out, db_out, grad_x)  # fmt: skip
    plan = backward_plan(x, W, shape, stride, padding, want_dx, dW_out, db_out)
    bad = np.zeros((blas_threads(), 1), np.int64)
    dws, dbs = plan.parts
    run_chunked(_BACKWARD[plan.kernel], x.shape[0], lambda k, counter: (
        x, plan.head, a, argmax, grad, padding, act, alpha, want_dx, grad_x, plan.mid_of(),
        dws, dbs, plan.tail_of(), scratch("grad", k, (CHUNK, *shape[1:]), x.dtype),
        np.empty(math.prod(a.shape[1:]), x.dtype), counter, CHUNK, np.zeros(1, np.int64),
        bad[k]))  # fmt: skip
    total = int(bad.sum())
    if not total:
        plan.finish()
    return total

