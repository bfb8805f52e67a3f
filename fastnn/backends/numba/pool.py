"""Numba max pooling (NCHW): one pass per plane, the batch split over the backend's threads.

Formulas: :mod:`fastnn.backends.numpy.conv` (the reference).

Design:

A. The forward pass records the flat index ``h * W + w`` of each window's maximum (the first
   on ties, and the first NaN if any, as ``np.argmax``: a diverging network keeps its NaN).
B. The backward pass zeroes each input plane and adds each output's gradient at its argmax,
   plane by plane, so the zeroing and the scatter touch the plane while it is in cache.
C. Like the convolutions, the threads of :mod:`.team` take chunks of images (pooling reads and
   writes every activation of the first convolution: a memory-bound pass worth two cores).
D. 2 x 2 windows (the common case) take a branch-free path: max() for the value and the
   index of the maximum in integer arithmetic (a tree of three comparisons). The general
   loop's data-dependent branch mispredicts on every other window (8-9 ms against 2-3 ms
   measured for the first pooling of MNIST_99 at batch 256). max() does not follow NaN's
   rule, so a plane that met a NaN is done again by the general loop. Tiling windows
   (stride 2) take V at a time in registers (:func:`.simd.vpool2`, 3-4x faster than the
   scalar loop; the same values and indices).
E. The backward scatter checks each index against its plane and counts the strays (the
   caller raises): one predictable branch, where a separate ``argmax.min()``/``max()`` in
   the argument checks read the whole array again (~1.6 ms of a 38 ms MNIST_99 batch).
"""

from __future__ import annotations

import numpy as np

from .blas import blas_threads
from .jit import kernel
from .simd import fetch_add, half_vpool2, lanes, vpool2
from .team import CHUNK, run_chunked


@kernel
def _pool_plane(x, i, c, kernel_size, stride, out, argmax):
    """Plane (i, c): any window, in index order, NaN first (Design A)."""
    W = x.shape[3]
    for y in range(out.shape[2]):
        for xo in range(out.shape[3]):
            h0, w0 = stride * y, stride * xo
            best = x[i, c, h0, w0]
            arg = h0 * W + w0
            for u in range(kernel_size):
                for v in range(kernel_size):
                    val = x[i, c, h0 + u, w0 + v]
                    if val > best or (val != val and best == best):
                        best = val
                        arg = (h0 + u) * W + w0 + v
            out[i, c, y, xo] = best
            argmax[i, c, y, xo] = arg


@kernel
def _pool2_at(x, i, c, y, xo, stride, out, argmax):
    """Window (y, xo) of plane (i, c), 2 x 2, without branches; True if it met a NaN."""
    W = x.shape[3]
    h, w = stride * y, stride * xo
    a, b = x[i, c, h, w], x[i, c, h, w + 1]
    d, e = x[i, c, h + 1, w], x[i, c, h + 1, w + 1]
    top, bottom = np.int64(b > a), np.int64(e > d)  # ties keep the first
    first, second = max(a, b), max(d, e)
    down = np.int64(second > first)
    out[i, c, y, xo] = max(first, second)
    argmax[i, c, y, xo] = h * W + w + down * (W + bottom) + (1 - down) * top
    return (a != a) | (b != b) | (d != d) | (e != e)


@kernel
def _pool2_plane(x, i, c, stride, out, argmax):
    """Plane (i, c) of 2 x 2 windows without branches; True if it met a NaN (Design D).
    Tiling windows (stride 2) go V at a time through :func:`.simd.vpool2` (contiguous
    arrays: the kernel contract's)."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    Ho, Wo = out.shape[2], out.shape[3]
    V = lanes(out)
    nan = False
    for y in range(Ho):
        xo = 0
        if stride == 2:
            row = 2 * y * W
            src, dst = ((i * C + c) * H) * W + row, ((i * C + c) * Ho + y) * Wo
            while xo + V <= Wo:
                nan |= vpool2(x, src + 2 * xo, W, out, dst + xo, argmax, dst + xo, row + 2 * xo)
                xo += V
            if xo + V // 2 <= Wo:
                nan |= half_vpool2(x, src + 2 * xo, W, out, dst + xo, argmax, dst + xo,
                                   row + 2 * xo)  # fmt: skip
                xo += V // 2
        for q in range(xo, Wo):
            nan |= _pool2_at(x, i, c, y, q, stride, out, argmax)
    return nan


@kernel
def maxpool_forward_images(x, kernel_size, stride, out, argmax, counter, chunk):
    """out, argmax (n, C, Ho, Wo) for the chunks of images of x (n, C, H, W) this thread
    takes from ``counter``."""
    n = x.shape[0]
    while True:
        i0 = fetch_add(counter, 1) * chunk
        if i0 >= n:
            return
        for i in range(i0, min(i0 + chunk, n)):
            for c in range(x.shape[1]):
                if kernel_size != 2 or _pool2_plane(x, i, c, stride, out, argmax):
                    _pool_plane(x, i, c, kernel_size, stride, out, argmax)


@kernel
def maxpool_backward_images(grad, argmax, grad_x, counter, chunk, bad):
    """grad_x (n, C, H, W) planes of the chunks of images this thread takes from ``counter``:
    zero, plus grad at argmax (Design B); bad[0] counts the indices outside the plane, which
    are skipped (Design E)."""
    C = grad.shape[1]
    hw = grad.shape[2] * grad.shape[3]
    size = grad_x.shape[2] * grad_x.shape[3]
    g3 = grad.reshape((grad.shape[0], C, hw))
    a3 = argmax.reshape((argmax.shape[0], C, hw))
    x3 = grad_x.reshape((grad_x.shape[0], C, size))
    n = grad.shape[0]
    while True:
        i0 = fetch_add(counter, 1) * chunk
        if i0 >= n:
            return
        for i in range(i0, min(i0 + chunk, n)):
            for c in range(C):
                for k in range(size):
                    x3[i, c, k] = 0
                for m in range(hw):
                    k = a3[i, c, m]
                    if k >= 0 and k < size:
                        x3[i, c, k] += g3[i, c, m]
                    else:
                        bad[0] += 1


# Trusted entry points of the kernel contract (fastnn.backends._frontend checked the arguments).
def maxpool2d_forward(
    x: np.ndarray, kernel: int, stride: int, out: np.ndarray, argmax_out: np.ndarray
) -> None:
    """out, argmax_out (n, C, Ho, Wo): each window's maximum of x (n, C, H, W) and its index."""
    run_chunked(
        maxpool_forward_images,
        x.shape[0],
        lambda k, counter: (x, kernel, stride, out, argmax_out, counter, CHUNK),
    )


def maxpool2d_backward(grad: np.ndarray, argmax: np.ndarray, grad_x_out: np.ndarray) -> int:
    """grad_x_out (n, C, H, W): zero, plus each output's gradient at its argmax; returns the
    number of indices outside the plane (skipped, Design E)."""
    bad = np.zeros((blas_threads(), 1), np.int64)
    run_chunked(
        maxpool_backward_images,
        grad.shape[0],
        lambda k, counter: (grad, argmax, grad_x_out, counter, CHUNK, bad[k]),
    )
    return int(bad.sum())
