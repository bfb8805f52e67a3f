"""The options of issue 12 for the Numba convolutions, timed on MNIST_99's two conv layers.

Milliseconds per batch of 256 (best of ``--repeats`` runs: the machine is shared, the minimum
is the least disturbed), forward and backward of each layer, for:

- ``im2col+BLAS``: im2col (Numba loops), one ``np.dot`` (scipy's OpenBLAS) per product,
  bias + ReLU + NCHW transpose in one pass; backward dW = delta.T @ cols, dx by col2im;
- ``loops (LLVM)``: the direct convolution in plain Numba loops (NHWC, two output pixels per
  pass, the filter loop innermost), vectorized by LLVM alone;
- ``fastnn, 1 thread`` / ``2 threads``: the shipped kernels (``fastnn.backends.numba.conv``:
  explicit vector FMAs, register blocks; NCHW rows for conv1, NHWC blocks for conv2);
- ``background skip``: conv1 over the non-background pixels only (standardised MNIST's
  background is the constant -0.4242: conv(x) = conv(x - c) + c * sum(W)), a scatter of each
  remaining pixel into an NHWC scratch, then the transpose; dW likewise from NHWC deltas;
- ``epilogue apart``: the shipped forward with identity, then bias + ReLU as a separate pass
  over the whole batch (what the fused per-image epilogue saves), and the max-pooling pass
  after conv1 (the most a pooling fused into conv1's output pass could save);
- ``numpy reference`` and ``torch`` (1 and 2 threads) as yardsticks.

Run (on a quiet machine for meaningful absolute numbers)::

    PYTHONPATH=. python benchmarks/numba_conv_options.py [--repeats 7] [--no-torch]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from functools import partial

import numba
import numpy as np

from fastnn import _codes as C
from fastnn.backends import numba as nb
from fastnn.backends import numpy as ref
from fastnn.backends.numba.jit import JIT_OPTIONS

jit = numba.njit(**JIT_OPTIONS)
N, DT, BG = 256, np.float32, (0.0 - 0.1307) / 0.3081


def best_ms(func: Callable[[], object], repeats: int) -> float:
    func()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times)


# im2col + BLAS --------------------------------------------------------------------------
@jit
def im2col(x, kh, kw, cols):
    n, c, h, w = x.shape
    ho, wo = h - kh + 1, w - kw + 1
    for i in range(n):
        for y in range(ho):
            for xo in range(wo):
                r = (i * ho + y) * wo + xo
                k = 0
                for ch in range(c):
                    for u in range(kh):
                        for v in range(kw):
                            cols[r, k] = x[i, ch, y + u, xo + v]
                            k += 1


@jit
def gemm_forward(x, Wm, b, kh, kw, cols, z, out):
    im2col(x, kh, kw, cols)
    np.dot(cols, Wm.T, z)
    n, f, ho, wo = out.shape
    for i in range(n):
        for p in range(ho * wo):
            for c in range(f):
                v = z[i * ho * wo + p, c] + b[c]
                out[i, c, p // wo, p % wo] = v if v > 0 else 0.0


@jit
def gemm_backward(x, Wm, a, grad, kh, kw, cols, delta, dW, dcols, gx, want_dx):
    n, f, ho, wo = grad.shape
    for i in range(n):
        for c in range(f):
            for p in range(ho * wo):
                g = grad[i, c, p // wo, p % wo] * (a[i, c, p // wo, p % wo] > 0)
                delta[i * ho * wo + p, c] = g
    im2col(x, kh, kw, cols)
    np.dot(delta.T, cols, dW)
    if want_dx:
        np.dot(delta, Wm, dcols)
        gx[...] = 0
        ch = x.shape[1]
        for i in range(n):
            for y in range(ho):
                for xo in range(wo):
                    r = (i * ho + y) * wo + xo
                    k = 0
                    for c in range(ch):
                        for u in range(kh):
                            for v in range(kw):
                                gx[i, c, y + u, xo + v] += dcols[r, k]
                                k += 1


# Direct loops left to LLVM --------------------------------------------------------------
@jit
def loops_forward(xh, Wt, b, out_nhwc):
    n, H, Wd, C_ = xh.shape
    kh, kw, _, F = Wt.shape
    ho, wo = H - kh + 1, Wd - kw + 1
    for i in range(n):
        for y in range(ho):
            for x0 in range(0, wo, 2):
                for f in range(F):
                    out_nhwc[i, y, x0, f] = b[f]
                    out_nhwc[i, y, x0 + 1, f] = b[f]
                for u in range(kh):
                    for v in range(kw):
                        for c in range(C_):
                            a0, a1 = xh[i, y + u, x0 + v, c], xh[i, y + u, x0 + 1 + v, c]
                            for f in range(F):
                                out_nhwc[i, y, x0, f] += a0 * Wt[u, v, c, f]
                                out_nhwc[i, y, x0 + 1, f] += a1 * Wt[u, v, c, f]


# Background skipping in conv1 -------------------------------------------------------------
@jit
def sparse_forward(x, Wt, b, bg, scratch, out):
    """conv1 (C = 1, no padding) over the pixels that differ from the background ``bg``."""
    n, _, H, Wd = x.shape
    kh, kw, F = Wt.shape
    ho, wo = H - kh + 1, Wd - kw + 1
    base = np.empty(F, x.dtype)
    for f in range(F):
        total = 0.0
        for u in range(kh):
            for v in range(kw):
                total += Wt[u, v, f]
        base[f] = b[f] + bg * total
    for i in range(n):
        for p in range(ho * wo):
            for f in range(F):
                scratch[p, f] = base[f]
        for h in range(H):
            for w in range(Wd):
                val = x[i, 0, h, w] - bg
                if val == 0:
                    continue
                for u in range(max(0, h - ho + 1), min(kh, h + 1)):
                    for v in range(max(0, w - wo + 1), min(kw, w + 1)):
                        p = (h - u) * wo + (w - v)
                        for f in range(F):
                            scratch[p, f] += val * Wt[u, v, f]
        for f in range(F):
            for p in range(ho * wo):
                s = scratch[p, f]
                out[i, f, p // wo, p % wo] = s if s > 0 else 0.0


@jit
def sparse_weight_grad(x, grad, a, bg, dnhwc, dW):
    """dW of conv1 from the non-background pixels: NHWC deltas, then a scatter per pixel."""
    n, F, ho, wo = grad.shape
    _, _, H, Wd = x.shape
    kh, kw = H - ho + 1, Wd - wo + 1
    dW[...] = 0
    colsum = np.zeros(F, x.dtype)
    for i in range(n):
        for f in range(F):
            for p in range(ho * wo):
                g = grad[i, f, p // wo, p % wo] * (a[i, f, p // wo, p % wo] > 0)
                dnhwc[p, f] = g
                colsum[f] += g
        for h in range(H):
            for w in range(Wd):
                val = x[i, 0, h, w] - bg
                if val == 0:
                    continue
                for u in range(max(0, h - ho + 1), min(kh, h + 1)):
                    for v in range(max(0, w - wo + 1), min(kw, w + 1)):
                        p = (h - u) * wo + (w - v)
                        for f in range(F):
                            dW[u, v, f] += val * dnhwc[p, f]
    for u in range(kh):
        for v in range(kw):
            for f in range(F):
                dW[u, v, f] += bg * colsum[f]


@jit
def relu_pass(out):
    flat = out.reshape(-1)
    for k in range(flat.shape[0]):
        flat[k] = flat[k] if flat[k] > 0 else 0.0


def layer_data(rng: np.random.Generator) -> dict:
    """Inputs shaped like MNIST_99's conv layers: MNIST-like images (about 19% of the pixels
    off the background) and ReLU-pooled features for conv2."""
    img = np.where(rng.random((N, 1, 28, 28)) < 0.19, rng.random((N, 1, 28, 28)), 0.0)
    return {
        "conv1": ((img - 0.1307) / 0.3081).astype(DT),
        "conv2": np.maximum(rng.standard_normal((N, 24, 12, 12)), 0).astype(DT),
        "W1": (rng.standard_normal((24, 1, 5, 5)) / 5).astype(DT),
        "W2": (rng.standard_normal((32, 24, 3, 3)) / 15).astype(DT),
    }


def fastnn_rows(B, d: dict, repeats: int) -> dict:  # noqa: ANN001
    """Forward and backward ms of each layer on backend module B (ReLU)."""
    rows = {}
    for name, x, W, want_dx in (("conv1", d["conv1"], d["W1"], False),
                                ("conv2", d["conv2"], d["W2"], True)):  # fmt: skip
        F, _, k, _ = W.shape
        ho = x.shape[2] - k + 1
        out, b = np.empty((N, F, ho, ho), DT), np.zeros(F, DT)
        g = np.random.default_rng(1).standard_normal(out.shape).astype(DT)
        dW, db, gx = np.empty_like(W), np.empty(F, DT), np.empty_like(x) if want_dx else None
        fwd = best_ms(partial(B.conv2d_forward, x, W, b, 1, 0, C.RELU, 0.0, None, out), repeats)
        gg = g.copy()
        backward = partial(B.conv2d_backward, x, W, None, out, gg, 1, 0, C.RELU, 0.0, dW, db, gx)
        copy = best_ms(partial(np.copyto, gg, g), repeats)  # grad is IN/OUT: fresh each run
        bwd = best_ms(lambda gg=gg, g=g, backward=backward: (np.copyto(gg, g), backward()), repeats)
        rows[name] = (fwd, bwd - copy)
    return rows


def alternatives(d: dict, repeats: int) -> dict[str, dict]:
    """im2col+BLAS, LLVM loops, background skip, epilogue apart (ms fwd, bwd per layer)."""
    table: dict[str, dict] = {"im2col+BLAS": {}, "loops (LLVM)": {}, "background skip": {},
                              "epilogue apart": {}}  # fmt: skip
    rng = np.random.default_rng(2)
    nan = float("nan")
    for name, x, W, want_dx in (("conv1", d["conv1"], d["W1"], False),
                                ("conv2", d["conv2"], d["W2"], True)):  # fmt: skip
        F, Cc, k, _ = W.shape
        ho = x.shape[2] - k + 1
        m, K = N * ho * ho, Cc * k * k
        cols, z = np.empty((m, K), DT), np.empty((m, F), DT)
        out, b = np.empty((N, F, ho, ho), DT), np.zeros(F, DT)
        Wm = np.ascontiguousarray(W.reshape(F, K))
        g = rng.standard_normal(out.shape).astype(DT)
        delta, dW, dcols = np.empty((m, F), DT), np.empty((F, K), DT), np.empty((m, K), DT)
        gx = np.empty_like(x)
        table["im2col+BLAS"][name] = (
            best_ms(partial(gemm_forward, x, Wm, b, k, k, cols, z, out), repeats),
            best_ms(partial(gemm_backward, x, Wm, out, g, k, k, cols, delta, dW, dcols, gx,
                            want_dx), repeats),
        )  # fmt: skip
        xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        Wt = np.ascontiguousarray(W.transpose(2, 3, 1, 0))
        onhwc = np.empty((N, ho, ho, F), DT)
        table["loops (LLVM)"][name] = (best_ms(partial(loops_forward, xh, Wt, b, onhwc), repeats),
                                       nan)  # fmt: skip
        identity = partial(nb.conv2d_forward, x, W, b, 1, 0, C.IDENTITY, 0.0, None, out)
        table["epilogue apart"][name] = (
            best_ms(identity, repeats) + best_ms(partial(relu_pass, out), repeats),
            nan,
        )
    x, W = d["conv1"], d["W1"]
    Wt1 = np.ascontiguousarray(W[:, 0].transpose(1, 2, 0))
    out, scratch = np.empty((N, 24, 24, 24), DT), np.empty((576, 24), DT)
    g = rng.standard_normal(out.shape).astype(DT)
    dWs, dn = np.empty((5, 5, 24), DT), np.empty((576, 24), DT)
    bg = DT(BG)
    table["background skip"]["conv1"] = (
        best_ms(partial(sparse_forward, x, Wt1, np.zeros(24, DT), bg, scratch, out), repeats),
        best_ms(partial(sparse_weight_grad, x, g, out, bg, dn, dWs), repeats),
    )
    pooled, arg = np.empty((N, 24, 12, 12), DT), np.empty((N, 24, 12, 12), np.int64)
    table["epilogue apart"]["pool1 pass"] = (
        best_ms(partial(nb.maxpool2d_forward, out, 2, 2, pooled, arg), repeats),
        nan,
    )
    return table


def torch_rows(d: dict, threads: int, repeats: int) -> dict | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    rows = {}
    for name, x, W, want_dx in (("conv1", d["conv1"], d["W1"], False),
                                ("conv2", d["conv2"], d["W2"], True)):  # fmt: skip
        conv = torch.nn.Conv2d(W.shape[1], W.shape[0], W.shape[2])
        xt = torch.from_numpy(x).requires_grad_(want_dx)
        g = torch.randn_like(torch.relu(conv(xt)))
        wrt = (conv.weight, conv.bias, xt) if want_dx else (conv.weight, conv.bias)

        def forward(conv=conv, xt=xt):  # noqa: ANN001, ANN202
            with torch.no_grad():
                return torch.relu(conv(xt))

        def both(conv=conv, xt=xt, g=g, wrt=wrt):  # noqa: ANN001, ANN202
            return torch.autograd.grad(torch.relu(conv(xt)), wrt, g)

        fwd = best_ms(forward, repeats)
        rows[name] = (fwd, best_ms(both, repeats) - fwd)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()
    d = layer_data(np.random.default_rng(0))
    table: dict[str, dict] = {}
    for threads in (1, 2, 1, 2):  # interleaved, best of both: a pool waking up hits one only
        nb.set_num_threads(threads)
        time.sleep(0.3)  # BLAS workers spin ~0.1 s after their last call (see the report)
        key = f"fastnn, {threads} thread{'s' if threads > 1 else ''}"
        rows = fastnn_rows(nb, d, args.repeats)
        old = table.get(key, rows)
        table[key] = {k: tuple(map(min, rows[k], old[k])) for k in rows}
    nb.set_num_threads(1)
    table.update(alternatives(d, args.repeats))
    table["numpy reference"] = fastnn_rows(ref, d, max(1, args.repeats // 3))
    if not args.no_torch:
        for threads in (1, 2):
            rows = torch_rows(d, threads, args.repeats)
            if rows is not None:
                table[f"torch, {threads} thread{'s' if threads > 1 else ''}"] = rows
    print(f"ms per batch of {N}, best of {args.repeats}; load average before "
          f"{load[0]:.1f}, after {os.getloadavg()[0]:.1f} (2 cores)\n")  # fmt: skip
    print("| option | conv1 fwd | conv1 bwd (dW) | conv2 fwd | conv2 bwd (dW+dx) | other |")
    print("|---|---|---|---|---|---|")
    for option, rows in table.items():
        cells = []
        for layer in ("conv1", "conv2"):
            fwd, bwd = rows.get(layer, (float("nan"), float("nan")))
            cells += [f"{fwd:.2f}", f"{bwd:.2f}"]
        extra = "; ".join(f"{k} {v[0]:.2f}" for k, v in rows.items() if k not in ("conv1", "conv2"))
        print(f"| {option} | " + " | ".join(cells).replace("nan", "-") + f" | {extra} |")


if __name__ == "__main__":
    main()
