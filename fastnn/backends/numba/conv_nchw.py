"""Convolution kernels on NCHW image rows: a vector holds V neighbouring output pixels.

For stride 1 and output rows of a multiple of V pixels (the first layer of MNIST_99: 24 of
them, one channel), the vector can run along the row instead of over the filters
(:mod:`.conv_nhwc`). The arrays then stay in the contract's NCHW layout: no transpose of the
input, of the output or of the gradient, which for a layer with few input channels and a large
output cost more than its arithmetic (3-4 ms each way for conv1 at batch 256).

Design:

A. Forward (:func:`row_correlate`): blocks of 4 filters x up to 4 vectors of one output row
   in registers; per tap, 4 weight broadcasts and one vector load per vector of the row.
   The same kernel gives the input gradient: the correlation of the output gradient, padded
   by k - 1, with the flipped filters (needs input rows of a multiple of V too).
B. Weight gradient (:func:`row_weight_grad`): blocks of 4 filters x 4 taps, each a vector of
   per-lane partial sums over every pixel of the image (vector x vector FMAs), added into
   ``dwv`` (F*T*V,), whose lanes are summed once per call (:func:`unpack_lane_sums`).
C. Bias and activation as in :mod:`.conv_nhwc` (one :func:`.activations.bias_act_row` call per
   image), the bias repeated per pixel in NCHW order.
"""

from __future__ import annotations

from .activations import act_backward_row, bias_act_row
from .jit import kernel
from .simd import fetch_add, lanes, load, specialized, stack_array, vadd, vcopy, vfma, vfmav

FILTERS = 4  # filters per register block
TAPS = 4  # taps per weight-gradient block
ACC = FILTERS * 4 * 8  # accumulator elements: 4 filters x 4 vectors x 8 float32 lanes


def _row_block_for(nx: int):  # noqa: ANN202
    """FILTERS filters from f0 x ``nx`` (a constant) vectors from q0 of one output row."""

    def block(src, rb, toff, T, wm, f0, Fo, dst, d0, plane, q0, nx_):  # noqa: ANN001, ANN202
        V = lanes(dst)
        acc = stack_array(ACC, dst)
        rows = stack_array(FILTERS, toff)
        for j in range(FILTERS):  # the last block repeats its last filter (stores skipped)
            rows[j] = min(f0 + j, Fo - 1) * T
        for k in range(FILTERS * nx * V):
            acc[k] = 0
        for t in range(T):
            s = rb + load(toff, t) + q0 * V
            for j in range(FILTERS):
                w = load(wm, rows[j] + t)
                for q in range(nx):
                    vfma(acc, (j * nx + q) * V, src, s + q * V, w)
        for j in range(FILTERS):
            if f0 + j < Fo:
                for q in range(nx):
                    vcopy(dst, d0 + j * plane + (q0 + q) * V, acc, (j * nx + q) * V)

    return block


_row_block = specialized(_row_block_for)


@kernel
def row_correlate(src, sbase, rowstep, toff, wm, Fo, dst, dbase, nrows, wout):
    """dst[dbase + (f*nrows + y)*wout + x] = sum_t src[sbase + y*rowstep + toff[t] + x] *
    wm[f*T + t] for f < Fo, y < nrows, x < wout (a multiple of the lanes); flat arrays."""
    V = lanes(dst)
    T = toff.shape[0]
    nvec = wout // V
    plane = nrows * wout
    for y in range(nrows):
        rb = sbase + y * rowstep
        for f0 in range(0, Fo, FILTERS):
            d0 = dbase + f0 * plane + y * wout
            for q0 in range(0, nvec, 4):
                left = nvec - q0
                if left >= 4:
                    _row_block(src, rb, toff, T, wm, f0, Fo, dst, d0, plane, q0, 4)
                elif left == 3:
                    _row_block(src, rb, toff, T, wm, f0, Fo, dst, d0, plane, q0, 3)
                elif left == 2:
                    _row_block(src, rb, toff, T, wm, f0, Fo, dst, d0, plane, q0, 2)
                else:
                    _row_block(src, rb, toff, T, wm, f0, Fo, dst, d0, plane, q0, 1)


@kernel
def _row_weight_grad_block(src, sbase, soff, toff, t0, delta, dbase, f0, F, plane, dwv):
    """FILTERS filters from f0 x TAPS taps from t0, lane partial sums over the image (B)."""
    V = lanes(dwv)
    T = toff.shape[0]
    acc = stack_array(ACC, dwv)
    taps = stack_array(TAPS, toff)
    rows = stack_array(FILTERS, toff)
    for k in range(TAPS):  # the last block repeats its last tap and filter (sums skipped)
        taps[k] = sbase + toff[min(t0 + k, T - 1)]
    for j in range(FILTERS):
        rows[j] = dbase + min(f0 + j, F - 1) * plane
    for k in range(FILTERS * TAPS * V):
        acc[k] = 0
    for m in range(soff.shape[0]):  # one flat loop over the image's vectors of pixels
        s = load(soff, m)
        for j in range(FILTERS):
            for k in range(TAPS):
                vfmav(acc, (j * TAPS + k) * V, delta, rows[j] + m * V, src, taps[k] + s)
    for j in range(FILTERS):
        for k in range(TAPS):
            if f0 + j < F and t0 + k < T:
                vadd(dwv, ((f0 + j) * T + t0 + k) * V, acc, (j * TAPS + k) * V)


@kernel
def row_weight_grad(src, sbase, soff, toff, delta, dbase, F, plane, dwv):
    """dwv[(f*T + t)*V + lane] += lane partial sums over the vectors m of an output plane of
    delta[dbase + f*plane + m*V + lane] * src[sbase + soff[m] + toff[t] + lane]."""
    T = toff.shape[0]
    for f0 in range(0, F, FILTERS):
        for t0 in range(0, T, TAPS):
            _row_weight_grad_block(src, sbase, soff, toff, t0, delta, dbase, f0, F, plane, dwv)


@kernel
def pad_planes(x, i, padding, xq):
    """xq (C*Hp*Wp,) flat NCHW <- image i of x (n, C, H, W) inside the zero border."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    Hp, Wp = H + 2 * padding, W + 2 * padding
    for c in range(C):
        for h in range(H):
            row = (c * Hp + h + padding) * Wp + padding
            for w in range(W):
                xq[row + w] = x[i, c, h, w]


@kernel
def forward_rows_images(x, W, bias, padding, act, alpha, z, out, counter, chunk, xq, toff):
    """out[i] = act(conv(x[i]) + b), stride 1, for the chunks of ``chunk`` images this thread
    takes from ``counter`` (Design A, C).

    bias (F*Ho*Wo,) repeated per pixel; toff (C*kh*kw,) tap offsets in the (padded) image;
    xq (C*Hp*Wp,) zero-border scratch (unused without padding); z as out, or (0, ...).
    """
    n, C, H, Wx = x.shape
    F, Ho, Wo = out.shape[1], out.shape[2], out.shape[3]
    wm = W.reshape(-1)
    xf, of = x.reshape(-1), out.reshape(-1)
    out2 = out.reshape((n, F * Ho * Wo))
    z2 = z.reshape((z.shape[0], F * Ho * Wo))
    while True:
        i0 = fetch_add(counter, 1) * chunk
        if i0 >= n:
            return
        for i in range(i0, min(i0 + chunk, n)):
            if padding:
                pad_planes(x, i, padding, xq)
                row_correlate(xq, 0, Wx + 2 * padding, toff, wm, F, of, i * F * Ho * Wo, Ho, Wo)
            else:
                row_correlate(xf, i * C * H * Wx, Wx, toff, wm, F, of, i * F * Ho * Wo, Ho, Wo)
            bias_act_row(out2, z2, i, bias, act, alpha)


@kernel
def backward_rows_images(
    x, wflip, z, a, grad, padding, act, alpha, want_dx, grad_x, counter, chunk,
    xq, dd, dwvs, dbs, rowsum, toff, toff_dx, soff,
):  # fmt: skip
    """Backward, stride 1, of the chunks of images this thread takes from ``counter``
    (Design A, B): grad -> dL/dz; chunk k's lane sums go to dwvs[k], its db to dbs[k] (F,);
    grad_x[i] if want_dx.

    wflip (C*F*kh*kw,) flipped filters ``[c, f, kh-1-u, kw-1-v]``; dd (F*Hd*Wd,) the output
    gradient padded by k - 1 (zero border); toff_dx (F*kh*kw,) tap offsets in dd; soff
    (Ho*Wo/V,) the input offset of each vector of output pixels.
    """
    n, C, H, Wx = x.shape
    F, Ho, Wo = grad.shape[1], grad.shape[2], grad.shape[3]
    hw = Ho * Wo
    g2, a2 = grad.reshape((n, F * hw)), a.reshape((n, F * hw))
    z2 = z.reshape((z.shape[0], F * hw))
    xf, gf, xgf = x.reshape(-1), grad.reshape(-1), grad_x.reshape(-1)
    edge_h, edge_w = H + 2 * padding - Ho, Wx + 2 * padding - Wo  # kh - 1, kw - 1
    hd, wd = Ho + 2 * edge_h, Wo + 2 * edge_w
    while True:
        part = fetch_add(counter, 1)
        if part * chunk >= n:
            return
        dwv, db = dwvs[part], dbs[part]
        for i in range(part * chunk, min(part * chunk + chunk, n)):
            act_backward_row(z2, a2, g2, i, act, alpha, rowsum)
            for f in range(F):
                total = g2.dtype.type(0.0)
                for m in range(hw):
                    total += g2[i, f * hw + m]
                db[f] += total
            if padding:
                pad_planes(x, i, padding, xq)
                row_weight_grad(xq, 0, soff, toff, gf, i * F * hw, F, hw, dwv)
            else:
                row_weight_grad(xf, i * C * H * Wx, soff, toff, gf, i * F * hw, F, hw, dwv)
            if want_dx:
                for f in range(F):
                    for y in range(Ho):
                        row = (f * hd + y + edge_h) * wd + edge_w
                        for xo in range(Wo):
                            dd[row + xo] = g2[i, (f * Ho + y) * Wo + xo]
                origin = padding * wd + padding
                row_correlate(dd, origin, wd, toff_dx, wflip, C, xgf, i * C * H * Wx, H, Wx)


@kernel
def unpack_lane_sums(dwvs, dW):
    """dW (F, C, kh, kw) = the sum over parts and lanes of dwvs (parts, F*T*V)."""
    F = dW.shape[0]
    T = dW.shape[1] * dW.shape[2] * dW.shape[3]
    V = dwvs.shape[1] // (F * T)
    flat = dW.reshape((F, T))
    for f in range(F):
        for t in range(T):
            total = dwvs[0, (f * T + t) * V]
            for lane in range(1, V):
                total += dwvs[0, (f * T + t) * V + lane]
            for part in range(1, dwvs.shape[0]):
                for lane in range(V):
                    total += dwvs[part, (f * T + t) * V + lane]
            flat[f, t] = total
