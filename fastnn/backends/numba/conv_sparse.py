"""The backward pass of a convolution + max pooling from the pooled gradient alone.

Formulas: :func:`fastnn.backends.numpy.conv.conv2d_maxpool_backward` (the reference).

Only each pooling window's maximum receives a gradient, so of the convolution's backward
products only 1/k^2 are not zero (1/4 for 2 x 2 pooling, fewer after ReLU's zeros). The
dense kernels of :mod:`.conv_nhwc` compute them all; these compute the others.

Design:

A. Per image, the activation's derivative is applied to the pooled gradient (at a window's
   maximum the pooled output is the convolution's), then the windows with a non-zero
   gradient are listed per filter without branches: ``(offset of the receptive field in the
   padded NHWC image, gradient)``. A receptive field is ``kh`` contiguous rows of
   ``kw * C`` values.
B. dW (per filter and filter row): register blocks of up to 12 vectors of the row accumulate
   ``d * x`` over the filter's list and are added once to the chunk's part (F, kh, kw*C)
   (:func:`_dw_rows`): loads only in the inner loop. Each block width is one call per image
   that loops over every filter and row: a call per row cost more than its arithmetic.
C. The input gradient: the same entries sorted by the pixel they came from (a counting
   sort); per pixel and filter row, register blocks accumulate ``d * W[f]`` over the filters
   of that pixel and add the sum to the padded NHWC gradient once (:func:`_dx_rows`), where a
   scatter per entry would read and write the same rows again and again.
D. The chunk's parts are summed in chunk order afterwards (:func:`unpack_rows`), as in the
   dense kernels: the result does not depend on the thread count.
"""

from __future__ import annotations

import numpy as np

from .activations import act_backward_row
from .blas import blas_threads
from .conv_nhwc import pad_image
from .jit import kernel
from .simd import fetch_add, lanes, load, specialized, stack_array, vadd, vfma
from .team import CHUNK, chunks, run_chunked

WIDTHS = (12, 6, 3, 1)  # vectors of a row per register block (compiled for each): a row of
# 9 vectors (3 x 24 float32) takes 6 + 3, 18 (float64) 12 + 6, in two passes over the entries
ACC = WIDTHS[0] * 8  # accumulator elements: 12 vectors of 8 float32 lanes, the most


def _dw_rows_for(nq: int):  # noqa: ANN202
    """Vectors [q0, q0 + nq) of every filter row of dW (Design B). One call per image and
    block width: calls pass arrays with atomic reference counts (jit.py, Design E)."""

    def rows(xp, ent, val, cntf, hq, kh, rowstep, dwf, L, q0, nq_):  # noqa: ANN001, ANN202
        V = lanes(dwf)
        acc = stack_array(ACC, dwf)
        for f in range(cntf.shape[0]):
            e0 = f * hq
            for u in range(kh):
                for j in range(nq * V):
                    acc[j] = 0
                r = u * rowstep + q0
                for e in range(e0, e0 + cntf[f]):
                    s = load(ent, e) + r
                    d = load(val, e)
                    for g in range(nq):
                        vfma(acc, g * V, xp, s + g * V, d)
                o = (f * kh + u) * L + q0
                for g in range(nq):
                    vadd(dwf, o + g * V, acc, g * V)

    return rows


_dw_rows = specialized(_dw_rows_for)


def _dx_rows_for(nq: int):  # noqa: ANN202
    """Vectors [q0, q0 + nq) of every receptive-field row of the input gradient, pixel by
    pixel over the entries sorted by pixel (Design C)."""

    def rows(wrf, fl, vl, start, cntp, pixoff, kh, rowstep, L, dxp, q0, nq_):  # noqa: ANN001, ANN202
        V = lanes(dxp)
        acc = stack_array(ACC, dxp)
        for m in range(cntp.shape[0]):
            lo, hi = start[m], start[m] + cntp[m]
            if lo == hi:
                continue
            base = pixoff[m]
            for u in range(kh):
                for j in range(nq * V):
                    acc[j] = 0
                w = u * L + q0
                for e in range(lo, hi):
                    s = load(fl, e) + w
                    d = load(vl, e)
                    for g in range(nq):
                        vfma(acc, g * V, wrf, s + g * V, d)
                dst = base + u * rowstep + q0
                for g in range(nq):
                    vadd(dxp, dst + g * V, acc, g * V)

    return rows


_dx_rows = specialized(_dx_rows_for)


@kernel
def _weight_rows(xp, ent, val, cntf, hq, kh, rowstep, dwf, L):
    """Every filter row of dW: blocks of WIDTHS vectors, then a scalar tail (Design B)."""
    V = lanes(dwf)
    q = 0
    while q + V <= L:
        left = (L - q) // V
        if left >= 12:
            _dw_rows(xp, ent, val, cntf, hq, kh, rowstep, dwf, L, q, 12)
            q += 12 * V
        elif left >= 6:
            _dw_rows(xp, ent, val, cntf, hq, kh, rowstep, dwf, L, q, 6)
            q += 6 * V
        elif left >= 3:
            _dw_rows(xp, ent, val, cntf, hq, kh, rowstep, dwf, L, q, 3)
            q += 3 * V
        else:
            _dw_rows(xp, ent, val, cntf, hq, kh, rowstep, dwf, L, q, 1)
            q += V
    for f in range(cntf.shape[0]):
        for u in range(kh):
            for j in range(q, L):
                total = dwf.dtype.type(0.0)
                for e in range(f * hq, f * hq + cntf[f]):
                    total += val[e] * load(xp, ent[e] + u * rowstep + j)
                dwf[(f * kh + u) * L + j] += total


@kernel
def _input_rows(wrf, fl, vl, start, cntp, pixoff, kh, rowstep, L, dxp):
    """Every receptive-field row of the input gradient, blocked as :func:`_weight_rows`."""
    V = lanes(dxp)
    q = 0
    while q + V <= L:
        left = (L - q) // V
        if left >= 12:
            _dx_rows(wrf, fl, vl, start, cntp, pixoff, kh, rowstep, L, dxp, q, 12)
            q += 12 * V
        elif left >= 6:
            _dx_rows(wrf, fl, vl, start, cntp, pixoff, kh, rowstep, L, dxp, q, 6)
            q += 6 * V
        elif left >= 3:
            _dx_rows(wrf, fl, vl, start, cntp, pixoff, kh, rowstep, L, dxp, q, 3)
            q += 3 * V
        else:
            _dx_rows(wrf, fl, vl, start, cntp, pixoff, kh, rowstep, L, dxp, q, 1)
            q += V
    for m in range(cntp.shape[0]):
        for u in range(kh):
            for j in range(q, L):
                total = dxp.dtype.type(0.0)
                for e in range(start[m], start[m] + cntp[m]):
                    total += vl[e] * load(wrf, fl[e] + u * L + j)
                dxp[pixoff[m] + u * rowstep + j] += total


@kernel
def _list_windows(k2, g2, i, hq, pixoff, ent, val, pix, cntf, cntp):
    """Design A: per filter f, its windows with a gradient at ent/val/pix[f*hq : f*hq +
    cntf[f]]; cntp[m] += 1 per entry of pixel m. Returns the indices outside the plane."""
    F, size = cntf.shape[0], pixoff.shape[0]
    zero = g2.dtype.type(0.0)
    bad = 0
    for m in range(size):
        cntp[m] = 0
    for f in range(F):
        c = f * hq
        for q in range(hq):
            k = k2[i, f * hq + q]
            inside = k >= 0 and k < size
            bad += not inside
            k = k if inside else 0
            d = g2[i, f * hq + q] if inside else zero
            ent[c] = pixoff[k]
            val[c] = d
            pix[c] = k
            live = d != zero
            cntp[k] += live
            c += live
        cntf[f] = c - f * hq
    return bad


@kernel
def _sort_by_pixel(ent_kh, val, pix, cntf, hq, cntp, start, fl, vl):
    """Design C: the entries in pixel order; fl holds each one's filter offset in wrf."""
    total = 0
    for m in range(cntp.shape[0]):
        start[m] = total
        total += cntp[m]
    for f in range(cntf.shape[0]):
        for c in range(f * hq, f * hq + cntf[f]):
            m = pix[c]
            fl[start[m]] = f * ent_kh
            vl[start[m]] = val[c]
            start[m] += 1
    for m in range(cntp.shape[0]):  # back to each pixel's first entry
        start[m] -= cntp[m]


@kernel
def sparse_backward_images(
    x, wr, a, argmax, grad, pixoff, padding, act, alpha, want_dx, grad_x, counter, chunk,
    dws, dbs, xp, dxp, rowsum, ent, val, pix, cntf, cntp, start, fl, vl, bad,
):  # fmt: skip
    """Backward of the chunks of images this thread takes from ``counter`` (Design A-C):
    chunk k's dW to dws[k] (F*kh*kw*C,), its db to dbs[k]; grad_x[i] if want_dx; bad[0]
    counts argmax indices outside the planes.

    wr (F, kh, kw*C): W[f, c, u, v] at [f, u, v*C + c]; pixoff (Ho*Wo,) each output pixel's
    receptive field's first element in xp; scratch: xp, dxp (Hp*Wp*C,) the padded
    NHWC image and input gradient, rowsum (F*Hq*Wq,), ent, val, pix, fl, vl (F*Hq*Wq,),
    cntf (F,), cntp, start (Ho*Wo,).
    """
    n, C, H, W = x.shape
    F, kh, L = wr.shape
    hq = grad.shape[2] * grad.shape[3]
    Wp = W + 2 * padding
    rowstep = Wp * C
    g2, a2 = grad.reshape((n, F * hq)), a.reshape((n, F * hq))
    k2 = argmax.reshape((n, F * hq))
    gx3 = grad_x.reshape((grad_x.shape[0], C, H * W))
    wrf = wr.reshape(-1)
    while True:
        part = fetch_add(counter, 1)
        if part * chunk >= n:
            return
        dwf, db = dws[part], dbs[part]
        for i in range(part * chunk, min(part * chunk + chunk, n)):
            act_backward_row(a2[:0], a2, g2, i, act, alpha, rowsum)  # dL/dz at the maxima
            bad[0] += _list_windows(k2, g2, i, hq, pixoff, ent, val, pix, cntf, cntp)
            pad_image(x, i, padding, xp)
            for f in range(F):
                total = db.dtype.type(0.0)
                for e in range(f * hq, f * hq + cntf[f]):
                    total += val[e]
                db[f] += total
            _weight_rows(xp, ent, val, cntf, hq, kh, rowstep, dwf, L)
            if not want_dx:
                continue
            _sort_by_pixel(kh * L, val, pix, cntf, hq, cntp, start, fl, vl)
            for j in range(dxp.shape[0]):
                dxp[j] = 0
            _input_rows(wrf, fl, vl, start, cntp, pixoff, kh, rowstep, L, dxp)
            for c in range(C):
                for h in range(H):
                    for w in range(W):
                        gx3[i, c, h * W + w] = dxp[((h + padding) * Wp + w + padding) * C + c]


@kernel
def unpack_rows(dws, dW):
    """dW (F, C, kh, kw) = the sum over parts of dws (parts, F*kh*kw*C) (Design D)."""
    F, C, kh, kw = dW.shape
    for f in range(F):
        for c in range(C):
            for u in range(kh):
                for v in range(kw):
                    k = ((f * kh + u) * kw + v) * C + c
                    total = dws[0, k]
                    for part in range(1, dws.shape[0]):
                        total += dws[part, k]
                    dW[f, c, u, v] = total


def sparse_backward(
    x: np.ndarray, W: np.ndarray, a: np.ndarray, argmax: np.ndarray, grad: np.ndarray,
    Wo: int, stride: int, padding: int, act: int, alpha: float, dW_out: np.ndarray,
    db_out: np.ndarray, grad_x: np.ndarray,
) -> int:  # fmt: skip
    """dW_out, db_out and grad_x (or no input gradient when it has 0 rows) from the pooled
    a, argmax, grad (n, F, Hq, Wq) of a convolution whose output rows are ``Wo`` wide;
    returns the stray argmax indices (nothing is summed then)."""
    dt = x.dtype
    n, C, H, Wx = x.shape
    F, _, kh, kw = W.shape
    hq = grad.shape[2] * grad.shape[3]
    size = ((H + 2 * padding - kh) // stride + 1) * Wo
    wr = np.ascontiguousarray(W.transpose(0, 2, 3, 1)).reshape(F, kh, kw * C)
    dws = np.zeros((chunks(n), F * kh * kw * C), dt)
    dbs = np.zeros((chunks(n), F), dt)
    bad = np.zeros((blas_threads(), 1), np.int64)
    xp_size = (H + 2 * padding) * (Wx + 2 * padding) * C
    want_dx = grad_x.shape[0] > 0
    e = F * hq
    oy, ox = np.divmod(np.arange(size, dtype=np.int64), Wo)
    pixoff = (stride * oy * (Wx + 2 * padding) + stride * ox) * C
    run_chunked(sparse_backward_images, n, lambda k, counter: (
        x, wr, a, argmax, grad, pixoff, padding, act, alpha, want_dx, grad_x, counter,
        CHUNK, dws, dbs, np.zeros(xp_size, dt), np.zeros(xp_size if want_dx else 0, dt),
        np.empty(e, dt), np.empty(e, np.int64), np.empty(e, dt), np.empty(e, np.int64),
        np.empty(F, np.int64), np.empty(size, np.int64), np.empty(size, np.int64),
        np.empty(e, np.int64), np.empty(e, dt), bad[k]))  # fmt: skip
    total = int(bad.sum())
    if not total:
        unpack_rows(dws, dW_out)
        np.sum(dbs, axis=0, out=db_out)
    return total
