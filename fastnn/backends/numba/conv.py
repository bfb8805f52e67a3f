"""Numba 2-D convolution: direct, register-blocked kernels with explicit vector FMAs.

Formulas: :mod:`fastnn.backends.numpy.conv` (the reference). The options measured against
these kernels (im2col + BLAS, loops left to LLVM's vectorizer, skipping MNIST's background
pixels, fused epilogues, threads): ``benchmarks/numba_conv_options.py`` and the backend report.

Design:

A. Two register-blocked formulations, picked per call by :func:`use_rows`:
   :mod:`.conv_nhwc` puts V filters in a vector (any stride and padding; the image is copied
   into an NHWC scratch and the result transposed back), :mod:`.conv_nchw` puts V pixels of
   an output row in a vector (stride 1, rows of a multiple of V pixels), which needs no
   transpose at all: the better one for a first layer with one channel and a large output.
B. Work is per image, so every scratch array stays in L1/L2; scratch is allocated per call
   (a few small arrays, microseconds) so concurrent fits share nothing. Filters are packed
   once per call.
C. Threads: the threads of :mod:`.team` (as many as the backend's, ``set_num_threads``) take
   chunks of images from a shared counter; a chunk writes only its images and its own partial
   dW/db, summed in chunk order at the end (the same result for any number of threads). No
   BLAS call happens inside a conv kernel and the team waits passively (never spins).
   OpenBLAS's own workers spin by default, for ~0.1 s after every threaded call (measured: a
   whole core), so with 2 threads the dense layers left a spinning BLAS worker beside the team
   in every batch: MNIST_99 at batch 256 took 40 ms per batch so, 28 ms with BLAS held to one
   thread. fastnn loads SciPy's OpenBLAS with workers that park at once instead
   (:mod:`fastnn.backends._blas`), so BLAS and the team both keep two threads.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ..._codes import NEEDS_PREACTIVATION
from . import conv_nchw as nchw
from . import conv_nhwc as nhwc
from .simd import VECTOR_BYTES
from .team import CHUNK, chunks, run_chunked


def lanes_of(dtype: np.dtype) -> int:
    """Vector length of :mod:`.simd` for ``dtype``."""
    return VECTOR_BYTES // np.dtype(dtype).itemsize


def _round_up(k: int, v: int) -> int:
    return -(-k // v) * v


def use_rows(x: np.ndarray, out_width: int, stride: int, need_input_rows: bool) -> bool:
    """True when the NCHW row kernels apply (Design A): stride 1, output rows (and the input
    rows, for an input gradient) a multiple of the vector length."""
    v = lanes_of(x.dtype)
    return stride == 1 and out_width % v == 0 and (not need_input_rows or x.shape[3] % v == 0)


@functools.lru_cache(maxsize=64)
def _row_taps(C: int, kh: int, kw: int, height: int, width: int) -> np.ndarray:
    """Offsets of the taps (c, u, v) in a flat NCHW image of planes height x width. Kept per
    geometry (the kernels only read it): rebuilt per call, it cost ~0.4 ms of an 8 ms batch of
    32 images of MNIST_99 (three calls per batch)."""
    c, u, v = np.meshgrid(np.arange(C), np.arange(kh), np.arange(kw), indexing="ij")
    return ((c * height + u) * width + v).reshape(-1).astype(np.int64)


def _repeated_bias(b: np.ndarray, pixels: int, width: int) -> np.ndarray:
    """(pixels * width,): ``b`` for every pixel of an NHWC image, zero beyond F < width."""
    bias = np.zeros((pixels, width), b.dtype)
    bias[:, : b.shape[0]] = b
    return bias.reshape(-1)


class Plan(NamedTuple):
    """One convolution pass as a team kernel: ``kernel(x, *head, OUT..., counter, chunk,
    *tail_of())`` (forward: OUT is ``out``; backward: see :func:`backward_plan`), where
    ``tail_of()`` makes one thread's scratch, and ``finish()`` sums the chunks' partial
    gradients afterwards (backward). :mod:`.conv_pool` runs the same kernel per chunk."""

    kernel: Callable
    head: tuple
    tail_of: Callable[[], tuple]
    finish: Callable[[], None] = lambda: None
    mid_of: Callable[[], tuple] = tuple
    parts: tuple = ()


def forward_plan(
    x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int, padding: int, act: int,
    alpha: float, z: np.ndarray, out_shape: tuple,
) -> Plan:  # fmt: skip
    """The forward pass of out (n, F, Ho, Wo) = act(conv(x, W) + b): Design A's choice."""
    dt = x.dtype
    C, H, Wx = x.shape[1:]
    F, _, kh, kw = W.shape
    hw = out_shape[2] * out_shape[3]
    want_z = act in NEEDS_PREACTIVATION
    Hp, Wp = H + 2 * padding, Wx + 2 * padding
    if use_rows(x, out_shape[3], stride, False):
        toff = _row_taps(C, kh, kw, Hp, Wp)
        return Plan(nchw.forward_rows_images, (W, np.repeat(b, hw), padding, act, alpha, z),
                    lambda: (np.zeros(C * Hp * Wp if padding else 0, dt), toff))  # fmt: skip
    fp = _round_up(F, lanes_of(dt))
    geo = nhwc.geometry(x.shape, W.shape, stride, padding, fp)
    wt = np.zeros((kh, kw * C, fp), dt)
    nhwc.pack_filters(W, wt)
    head = (wt, _repeated_bias(b, hw, fp), padding, act, alpha, want_z, z)
    return Plan(nhwc.forward_images, head, lambda: (
        np.zeros(Hp * Wp * C, dt), np.empty((hw, fp), dt),
        np.empty((hw if want_z else 0, fp), dt), geo.xoff, geo.xrows))  # fmt: skip


def backward_plan(
    x: np.ndarray, W: np.ndarray, grad_shape: tuple, stride: int, padding: int, want_dx: bool,
    dW_out: np.ndarray, db_out: np.ndarray,
) -> Plan:  # fmt: skip
    """The backward pass (Design A's choice): ``kernel(x, *head, z, a, grad, padding, act,
    alpha, want_dx, grad_x, counter, chunk, *mid_of(), *parts, *tail_of())`` with ``head``
    the packed filters and ``parts`` the chunks' partial dW and db, summed by ``finish()``."""
    dt = x.dtype
    C, H, Wx = x.shape[1:]
    F, _, kh, kw = W.shape
    Ho, Wo = grad_shape[2:]
    n_parts = chunks(x.shape[0])
    Hp, Wp = H + 2 * padding, Wx + 2 * padding
    dbs = np.zeros((n_parts, F), dt)
    if use_rows(x, Wo, stride, want_dx):
        hd, wd = Ho + 2 * (kh - 1), Wo + 2 * (kw - 1)
        wflip = np.ascontiguousarray(W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)).reshape(-1)
        toff, toff_dx = _row_taps(C, kh, kw, Hp, Wp), _row_taps(F, kh, kw, hd, wd)
        v = lanes_of(dt)
        y, x0 = np.divmod(np.arange(0, Ho * Wo, v, dtype=np.int64), Wo)
        soff = y * Wp + x0  # each vector of output pixels' first input element
        dwvs = np.zeros((n_parts, F * C * kh * kw * v), dt)

        def finish_rows() -> None:
            nchw.unpack_lane_sums(dwvs, dW_out)
            np.sum(dbs, axis=0, out=db_out)

        return Plan(
            nchw.backward_rows_images, (wflip,),
            lambda: (np.empty(F * Ho * Wo, dt), toff, toff_dx, soff), finish_rows,
            lambda: (np.zeros(C * Hp * Wp if padding else 0, dt),
                     np.zeros(F * hd * wd if want_dx else 0, dt)),
            (dwvs, dbs),
        )  # fmt: skip
    v = lanes_of(dt)
    fp, cp = _round_up(F, v), _round_up(C, v)
    geo = nhwc.geometry(x.shape, W.shape, stride, padding, fp)
    wb = np.zeros((kh, kw * fp, cp) if want_dx else (kh, 0, cp), dt)
    if want_dx:
        nhwc.pack_flipped_filters(W, wb)
    dwts = np.zeros((n_parts, kh * kw * C * fp), dt)

    def finish_nhwc() -> None:
        nhwc.unpack_weight_grad(dwts, dW_out)
        np.sum(dbs, axis=0, out=db_out)

    return Plan(
        nhwc.backward_images, (wb,),
        lambda: (np.empty(F * Ho * Wo, dt), geo.xoff, geo.doff, geo.dxoff, geo.dxrows, geo.tap,
                 kw, geo.wd),
        finish_nhwc,
        lambda: (np.zeros(Hp * Wp * C, dt), np.zeros(geo.hd * geo.wd * fp, dt),
                 np.empty(H * Wx * cp if want_dx else 0, dt)),
        (dwts, dbs),
    )  # fmt: skip


# Trusted entry points of the kernel contract (fastnn.backends._frontend checked the arguments).
def conv2d_forward(
    x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int, padding: int, act: int,
    alpha: float, z_out: np.ndarray | None, out: np.ndarray,
) -> None:  # fmt: skip
    """out (n, F, Ho, Wo) = act(conv(x (n, C, H, W), W (F, C, kh, kw)) + b); z_out or None."""
    z = z_out if act in NEEDS_PREACTIVATION else out[:0]
    plan = forward_plan(x, W, b, stride, padding, act, alpha, z, out.shape)
    run_chunked(
        plan.kernel, x.shape[0], lambda k, counter: (x, *plan.head, out, counter, CHUNK,
                                                     *plan.tail_of())
    )  # fmt: skip


def conv2d_backward(
    x: np.ndarray, W: np.ndarray, z: np.ndarray | None, a: np.ndarray, grad: np.ndarray,
    stride: int, padding: int, act: int, alpha: float, dW_out: np.ndarray,
    db_out: np.ndarray, grad_x_out: np.ndarray | None,
) -> None:  # fmt: skip
    """Backward of one convolution (kernel contract); grad (n, F, Ho, Wo) becomes dL/dz."""
    want_dx = grad_x_out is not None
    grad_x = grad_x_out if want_dx else x[:0]
    preact = z if act in NEEDS_PREACTIVATION else a[:0]
    plan = backward_plan(x, W, grad.shape, stride, padding, want_dx, dW_out, db_out)
    run_chunked(plan.kernel, x.shape[0], lambda k, counter: (
        x, *plan.head, preact, a, grad, padding, act, alpha, want_dx, grad_x, counter, CHUNK,
        *plan.mid_of(), *plan.parts, *plan.tail_of()))  # fmt: skip
    plan.finish()
