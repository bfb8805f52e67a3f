"""Convolution kernels in an NHWC working layout: a vector holds V filters (channels last).

Design:

A. Per image, the input is copied once into a zero-padded NHWC scratch ``xp`` (Hp, Wp, C): a
   receptive-field row is then ``kw * C`` contiguous values and padding costs no branch. The
   filters are packed (kh, kw*C, Fp): filter f of tap (u, v, c) at ``[u, v*C + c, f]``, the
   filter count padded with zeros to ``Fp``, a multiple of the vector length V (:mod:`.simd`).
B. One micro-kernel, :func:`correlate`, computes every product: blocks of ``PIXELS`` output
   pixels x up to 4 vectors of filters stay in registers while the taps stream by (per tap: 4
   broadcasts, <= 4 vector loads, <= 16 FMAs). Each pixel's first input element comes from an
   offset table, so one kernel serves the forward pass (input ``xp``) and the input gradient
   (input: the output gradient, dilated by the stride and padded by k - 1, with the filters
   flipped), for any stride and padding. A block skips the filter rows that only meet zero
   rows (padding; the k - 1 border of the gradient: 1/6 of conv2's input gradient).
C. The weight gradient (:func:`weight_grad`) is the same block turned around: ``TAPS`` taps x
   up to 4 vectors of filters accumulate in registers over every pixel of the image.
D. Epilogue per image, while it is hot: bias + activation with the dense layer's
   :func:`.activations.bias_act_row` (every activation, z where needed) over the whole NHWC
   image as one row, the bias repeated per pixel (one call per image: a call per pixel row
   costs more than the convolution, in atomic reference counting), then the transpose to
   NCHW. Backward starts with :func:`.activations.act_backward_row` on the NCHW image, again
   one row (``grad`` must hold dL/dz afterwards anyway), then transposes into the dilated
   NHWC gradient while summing ``db``.
E. Where the padded filter count is a multiple of the 512-bit lanes (MNIST_99's second
   convolution: 32 float32 filters), :func:`correlate` uses blocks of ``WIDE_PIXELS`` pixels
   x up to 2 vectors of 512 bits: 16 accumulators, 8 broadcasts and 2 loads per 16 FMAs, twice
   the products per FMA of the 256-bit block. Measured on that layer (one thread, one image in
   L1, 256 images, medians of 30, interleaved): 2.8 against 4.0 ms (128 against 89 GFLOP/s).
   Each output is the same chain of FMAs in tap order: the same bits as the 256-bit block.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .activations import act_backward_row, bias_act_row
from .jit import kernel
from .simd import (
    fetch_add,
    lanes,
    load,
    specialized,
    stack_array,
    vadd,
    vcopy,
    vfma,
    wide_lanes,
    wide_vcopy,
    wide_vfma,
)

PIXELS = 4  # output pixels per register block (forward, input gradient)
WIDE_PIXELS = 8  # the same on 512-bit vectors (Design E)
TAPS = 4  # filter taps per register block (weight gradient)
BLOCK_VECTORS = 4  # vectors of filters per register block, at most
ACC = PIXELS * BLOCK_VECTORS * 8  # accumulator elements (8: float32 lanes, the most)


def _correlate_template(name: str, pixels: int, size: int, vector_lanes, fma, copy):  # noqa: ANN001, ANN202
    """The register block of :func:`correlate` for ``pixels`` output pixels, ``size``
    accumulator elements at most and the vector width of ``vector_lanes``/``fma``/``copy``
    (Design B, E), as a ``specialized`` template."""

    def block_for(nq: int):  # noqa: ANN202
        """``nq`` (a constant) vectors of filters from ``q`` for the pixels from ``mb``."""

        def block(src, base, rowstep, u0, u1, L, wt, dst, fp, q, mb, m1, nq_):  # noqa: ANN001, ANN202
            V = vector_lanes(dst)
            acc = stack_array(size, dst)
            for j in range(nq * pixels * V):
                acc[j] = 0
            for u in range(u0, u1):
                for l in range(L):
                    t = (u * L + l) * fp + q
                    r = u * rowstep + l
                    for p in range(pixels):
                        a = load(src, base[p] + r)
                        for g in range(nq):
                            fma(acc, (nq * p + g) * V, wt, t + g * V, a)
            for p in range(pixels):
                if mb + p < m1:
                    for g in range(nq):
                        copy(dst, (mb + p) * fp + q + g * V, acc, (nq * p + g) * V)

        return block

    block_for.__name__ = f"{name}_for"
    return block_for


_correlate_block = specialized(_correlate_template("_correlate_block", PIXELS, ACC, lanes,
                                                   vfma, vcopy))  # fmt: skip
_wide_correlate_block = specialized(_correlate_template(
    "_wide_correlate_block", WIDE_PIXELS, WIDE_PIXELS * 2 * 16, wide_lanes, wide_vfma,
    wide_vcopy))  # fmt: skip (2 vectors of 16 float32 lanes at most)


@kernel
def _block_bases(offsets, urange, mb, m1, base):  # noqa: ANN001, ANN202
    """base[p] = offsets of the block's pixels from mb (the last repeated; stores skipped) and
    the union of their filter rows [u0, u1)."""
    u0, u1 = urange[mb, 0], urange[mb, 1]
    for p in range(base.shape[0]):
        m = min(mb + p, m1 - 1)
        base[p] = offsets[m]
        u0, u1 = min(u0, urange[m, 0]), max(u1, urange[m, 1])
    return u0, u1


@kernel
def correlate(src, offsets, urange, m1, rowstep, L, wt, dst, fp):
    """dst[m*fp + f] = sum_{u, l<L} src[offsets[m] + u*rowstep + l] * wt[(u*L + l)*fp + f]
    for every pixel m < m1 and filter f < fp (flat arrays; fp a multiple of the lanes), over
    the filter rows u in [urange[m, 0], urange[m, 1]): the others only meet zeros (Design B).
    With fp a multiple of the 512-bit lanes, the wide blocks (Design E)."""
    V, WV = lanes(dst), wide_lanes(dst)
    if fp % WV == 0:
        base = stack_array(WIDE_PIXELS, offsets)
        for mb in range(0, m1, WIDE_PIXELS):
            u0, u1 = _block_bases(offsets, urange, mb, m1, base)
            for q in range(0, fp - WV, 2 * WV):
                _wide_correlate_block(src, base, rowstep, u0, u1, L, wt, dst, fp, q, mb, m1, 2)
            if fp % (2 * WV):
                _wide_correlate_block(src, base, rowstep, u0, u1, L, wt, dst, fp, fp - WV, mb,
                                      m1, 1)  # fmt: skip
        return
    base = stack_array(PIXELS, offsets)
    for mb in range(0, m1, PIXELS):
        u0, u1 = _block_bases(offsets, urange, mb, m1, base)
        q = 0
        while q < fp:  # constant block widths: each call is unrolled for its nq
            left = (fp - q) // V
            if left >= 4:
                _correlate_block(src, base, rowstep, u0, u1, L, wt, dst, fp, q, mb, m1, 4)
                q += 4 * V
            elif left == 3:
                _correlate_block(src, base, rowstep, u0, u1, L, wt, dst, fp, q, mb, m1, 3)
                q += 3 * V
            elif left == 2:
                _correlate_block(src, base, rowstep, u0, u1, L, wt, dst, fp, q, mb, m1, 2)
                q += 2 * V
            else:
                _correlate_block(src, base, rowstep, u0, u1, L, wt, dst, fp, q, mb, m1, 1)
                q += V


def _weight_grad_block_for(nq: int):  # noqa: ANN202
    """The block of TAPS taps from ``t0`` x ``nq`` (a constant) vectors of filters from ``q``,
    over all pixels (Design C)."""

    def block(xs, xoff, ds, doff, npix, tap, t0, T, dwt, fp, q, nq_):  # noqa: ANN001, ANN202
        V = lanes(dwt)
        acc = stack_array(ACC, dwt)
        off = stack_array(TAPS, xoff)
        for p in range(TAPS):  # the last block repeats its last tap (sums skipped)
            off[p] = tap[min(t0 + p, T - 1)]
        for j in range(nq * TAPS * V):
            acc[j] = 0
        for m in range(npix):
            xb = load(xoff, m)
            db = load(doff, m) + q
            for p in range(TAPS):
                a = load(xs, xb + off[p])
                for g in range(nq):
                    vfma(acc, (nq * p + g) * V, ds, db + g * V, a)
        for p in range(TAPS):
            if t0 + p < T:
                for g in range(nq):
                    vadd(dwt, (t0 + p) * fp + q + g * V, acc, (nq * p + g) * V)

    return block


_weight_grad_block = specialized(_weight_grad_block_for)


@kernel
def weight_grad(xs, xoff, ds, doff, npix, tap, dwt, fp):
    """dwt[t*fp + f] += sum_{m<npix} xs[xoff[m] + tap[t]] * ds[doff[m] + f] for every tap t."""
    V = lanes(dwt)
    T = tap.shape[0]
    for t0 in range(0, T, TAPS):
        q = 0
        while q < fp:
            left = (fp - q) // V
            if left >= 4:
                _weight_grad_block(xs, xoff, ds, doff, npix, tap, t0, T, dwt, fp, q, 4)
                q += 4 * V
            elif left == 3:
                _weight_grad_block(xs, xoff, ds, doff, npix, tap, t0, T, dwt, fp, q, 3)
                q += 3 * V
            elif left == 2:
                _weight_grad_block(xs, xoff, ds, doff, npix, tap, t0, T, dwt, fp, q, 2)
                q += 2 * V
            else:
                _weight_grad_block(xs, xoff, ds, doff, npix, tap, t0, T, dwt, fp, q, 1)
                q += V


@kernel
def pad_image(x, i, padding, xp):
    """xp (Hp*Wp*C,) flat NHWC <- image i of x (n, C, H, W), inside the zero border."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    Wp = W + 2 * padding
    x3 = x.reshape((x.shape[0], C, H * W))
    for h in range(H):  # contiguous writes, a flat plane index: 0.6 against 0.9 ms measured
        for w in range(W):  # for MNIST_99's second convolution at batch 256
            row = ((h + padding) * Wp + w + padding) * C
            for c in range(C):
                xp[row + c] = x3[i, c, h * W + w]


@kernel
def forward_images(x, wt, bias, padding, act, alpha, want_z, z, out, counter, chunk, xp, zb, zz,
                   xoff, xrows):  # fmt: skip
    """out[i] = act(conv(x[i]) + b) for the chunks of ``chunk`` images this thread takes from
    ``counter`` (Design A, B, D); z[i] if want_z.

    wt (kh, kw*C, Fp) packed filters, bias (Ho*Wo*Fp,) the zero-padded bias repeated per
    pixel, xoff (Ho*Wo,) pixel offsets in xp; scratch: xp (Hp*Wp*C,) zero border,
    zb (Ho*Wo, Fp), zz like zb or (0, Fp).
    """
    n, F = out.shape[0], out.shape[1]
    hw = out.shape[2] * out.shape[3]
    L, fp = wt.shape[1], wt.shape[2]
    rowstep = (x.shape[3] + 2 * padding) * x.shape[1]
    wf, zf = wt.reshape(-1), zb.reshape(-1)
    zrow, zzrow = zb.reshape((1, hw * fp)), zz.reshape((zz.shape[0] // hw, hw * fp))
    o3 = out.reshape((n, F, hw))
    z3 = z.reshape((z.shape[0], F, hw))
    while True:
        i0 = fetch_add(counter, 1) * chunk
        if i0 >= n:
            return
        for i in range(i0, min(i0 + chunk, n)):
            pad_image(x, i, padding, xp)
            correlate(xp, xoff, xrows, hw, rowstep, L, wf, zf, fp)
            bias_act_row(zrow, zzrow, 0, bias, act, alpha)  # the image as one row: one call
            for f in range(F):
                for m in range(hw):
                    o3[i, f, m] = zb[m, f]
            if want_z:
                for f in range(F):
                    for m in range(hw):
                        z3[i, f, m] = zz[m, f]


@kernel
def backward_images(
    x, wb, z, a, grad, padding, act, alpha, want_dx, grad_x, counter, chunk,
    xp, dd, dxb, dwts, dbs, rowsum, xoff, doff, dxoff, dxrows, tap, kw, wd,
):  # fmt: skip
    """Backward of the chunks of images this thread takes from ``counter`` (Design C, D):
    grad -> dL/dz; chunk k's dW sums into dwts[k] (kh*kw*C*Fp,), its db into dbs[k] (F,);
    grad_x[i] if want_dx.

    wb (kh, kw*Fp, Cp) flipped filters, dd (Hd*Wd*Fp,) the dilated, padded NHWC gradient
    (``wd`` = its width), zero outside the pixels ``doff`` (Ho*Wo,) points at; dxoff, dxrows
    the input pixels' starts in dd and their filter rows that meet non-zeros; dxb (H*W*Cp,);
    ``rowsum`` (F*Ho*Wo,) scratch for the activation pass; tap (kh*kw*C,) tap offsets in xp.
    """
    n, C, H, W = x.shape
    F = grad.shape[1]
    hw = grad.shape[2] * grad.shape[3]
    fp = dwts.shape[1] // tap.shape[0]
    cp = wb.shape[2]
    g2, a2 = grad.reshape((n, F * hw)), a.reshape((n, F * hw))
    z2 = z.reshape((z.shape[0], F * hw))
    g3 = grad.reshape((n, F, hw))
    x3 = grad_x.reshape((grad_x.shape[0], C, H * W))
    wbf = wb.reshape(-1)
    while True:
        part = fetch_add(counter, 1)
        if part * chunk >= n:
            return
        dwt, db = dwts[part], dbs[part]
        for i in range(part * chunk, min(part * chunk + chunk, n)):
            act_backward_row(z2, a2, g2, i, act, alpha, rowsum)  # the image as one row
            for f in range(F):
                total = g3.dtype.type(0.0)
                for m in range(hw):
                    v = g3[i, f, m]
                    dd[doff[m] + f] = v
                    total += v
                db[f] += total
            pad_image(x, i, padding, xp)
            weight_grad(xp, xoff, dd, doff, hw, tap, dwt, fp)
            if want_dx:
                correlate(dd, dxoff, dxrows, H * W, wd * fp, kw * fp, wbf, dxb, cp)
                for c in range(C):
                    for m in range(H * W):
                        x3[i, c, m] = dxb[m * cp + c]


@kernel
def pack_filters(W, wt):
    """wt (kh, kw*C, Fp) <- W (F, C, kh, kw): wt[u, v*C + c, f] = W[f, c, u, v] (Design A)."""
    F, C, kh, kw = W.shape
    for u in range(kh):
        for v in range(kw):
            for c in range(C):
                for f in range(F):
                    wt[u, v * C + c, f] = W[f, c, u, v]


@kernel
def pack_flipped_filters(W, wb):
    """wb (kh, kw*Fp, Cp) <- W (F, C, kh, kw) flipped: wb[u, v*Fp + f, c] = W[f, c, kh-1-u,
    kw-1-v], the filters of the input gradient as a correlation (Design B)."""
    F, C, kh, kw = W.shape
    fp = wb.shape[1] // kw
    for u in range(kh):
        for v in range(kw):
            for f in range(F):
                for c in range(C):
                    wb[u, v * fp + f, c] = W[f, c, kh - 1 - u, kw - 1 - v]


@kernel
def unpack_weight_grad(dwts, dW):
    """dW (F, C, kh, kw) = the sum over rows of dwts (parts, kh*kw*C*Fp), packed as wt."""
    F, C, kh, kw = dW.shape
    fp = dwts.shape[1] // (kh * kw * C)
    for f in range(F):
        for c in range(C):
            for u in range(kh):
                for v in range(kw):
                    k = ((u * kw + v) * C + c) * fp + f
                    total = dwts[0, k]
                    for part in range(1, dwts.shape[0]):
                        total += dwts[part, k]
                    dW[f, c, u, v] = total


class Geometry(NamedTuple):
    """Offset tables of one layer shape (see :func:`geometry`)."""

    xoff: np.ndarray  # (Ho*Wo,) each output pixel's first input element in xp
    xrows: np.ndarray  # (Ho*Wo, 2) its filter rows [u0, u1) inside the image (not padding)
    tap: np.ndarray  # (kh*kw*C,) each tap's offset in xp from the pixel's first element
    doff: np.ndarray  # (Ho*Wo,) each output pixel's place in the dilated gradient dd
    dxoff: np.ndarray  # (H*W,) each input pixel's first element in dd
    dxrows: np.ndarray  # (H*W, 2) its flipped-filter rows that meet the non-zero rows of dd
    hd: int  # height of dd
    wd: int  # width of dd


_GEOMETRY: dict[tuple, Geometry] = {}


def geometry(x_shape: tuple, W_shape: tuple, stride: int, padding: int, fp: int) -> Geometry:
    """The offset tables of a layer shape (cached; read-only): ``xp`` is the padded NHWC
    image (Hp, Wp, C), ``dd`` the output gradient (Hd, Wd, Fp), dilated by the stride and
    padded by k - 1 (Design A, B)."""
    key = (tuple(x_shape[1:]), tuple(W_shape), stride, padding, fp)
    if key not in _GEOMETRY:
        _, C, H, W = x_shape
        _, _, kh, kw = W_shape
        s, p = stride, padding
        Wp = W + 2 * p
        Ho, Wo = (H + 2 * p - kh) // s + 1, (W + 2 * p - kw) // s + 1
        hd, wd = s * (Ho - 1) + 1 + 2 * (kh - 1), s * (Wo - 1) + 1 + 2 * (kw - 1)
        y, xo = np.divmod(np.arange(Ho * Wo, dtype=np.int64), Wo)
        u, lane = np.divmod(np.arange(kh * kw * C, dtype=np.int64), kw * C)
        h, w = np.divmod(np.arange(H * W, dtype=np.int64), W)
        top = h + p  # padded row of an input pixel; dd's non-zero rows: kh-1 + s*[0, Ho)
        _GEOMETRY[key] = Geometry(
            xoff=(s * y * Wp + s * xo) * C,
            xrows=np.stack([np.maximum(0, p - s * y), np.minimum(kh, p + H - s * y)], axis=1),
            tap=u * Wp * C + lane,
            doff=((kh - 1 + s * y) * wd + kw - 1 + s * xo) * fp,
            dxoff=(top * wd + w + p) * fp,
            dxrows=np.stack([np.maximum(0, kh - 1 - top),
                             np.minimum(kh, kh + s * (Ho - 1) - top)], axis=1),
            hd=hd, wd=wd,
        )  # fmt: skip
    return _GEOMETRY[key]
