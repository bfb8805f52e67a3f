"""Milliseconds per batch of the Cython convolutions of MNIST_99, option by option.

The layers of ``fastnn.recipes.MNIST_99`` (conv 1->24 k5 on 28x28, conv 24->32 k3 on 12x12,
ReLU, float32, standardised-MNIST-like inputs), forward and backward (conv1 without its input
gradient, as a first layer), for each option of ``_kernels.set_conv_options``:

- ``team``: the batch in chunks of whole images over the OpenMP team (``--threads``), each
  chunk on the backend's own single-threaded BLAS; ``group`` im2col bytes per product (1: one
  image per product, written straight into the NCHW output).
- ``1core``: the team's chunks one after the other on the calling thread (own BLAS).
- ``blas``: one chunk on the calling thread, scipy's BLAS with its own threads, big products.
- the NumPy reference, and torch's conv2d when installed (its own threads), for scale.

Prints the median of ``--repeat`` runs after a warm-up::

    PYTHONPATH=$PWD python benchmarks/cython_conv_options.py --batches 256,128,32
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fastnn import _codes as C
from fastnn.backends import cython as cy
from fastnn.backends import numpy as ref

LAYERS = {"conv1": (1, 28, 24, 5), "conv2": (24, 12, 32, 3)}  # C, H, F, k
OPTIONS = {
    "team g=1img": (0, 1),
    "team g=128K": (0, 1 << 17),
    "1core g=128K": (2, 1 << 17),
    "blas g=1img": (1, 1),
    "blas g=all": (1, 1 << 40),
}


def median_ms(fn, repeat: int) -> float:  # noqa: ANN001
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def layer_calls(B, n: int, layer: str, rng: np.random.Generator):  # noqa: ANN001, ANN201
    c, h, f, k = LAYERS[layer]
    x = rng.standard_normal((n, c, h, h)).astype(np.float32)
    if layer == "conv1":  # MNIST's background: ~81% of the pixels at one value
        x[rng.random(x.shape) < 0.81] = -0.4242
    W = (rng.standard_normal((f, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32)
    b = np.zeros(f, np.float32)
    out = np.empty((n, f, h - k + 1, h - k + 1), np.float32)
    grad0 = rng.standard_normal(out.shape).astype(np.float32)
    grad, dW, db = grad0.copy(), np.empty_like(W), np.empty_like(b)
    gx = np.empty_like(x) if layer == "conv2" else None

    def forward() -> None:
        B.conv2d_forward(x, W, b, 1, 0, C.RELU, 0.0, None, out)

    def backward() -> None:
        grad[...] = grad0
        B.conv2d_backward(x, W, None, out, grad, 1, 0, C.RELU, 0.0, dW, db, gx)

    return forward, backward


def torch_calls(n: int, layer: str):  # noqa: ANN201
    import torch

    c, h, f, k = LAYERS[layer]
    conv = torch.nn.Conv2d(c, f, k)
    x = torch.randn(n, c, h, h, requires_grad=layer == "conv2")

    def forward() -> None:
        with torch.no_grad():
            torch.relu(conv(x))

    def both() -> None:
        torch.relu(conv(x)).sum().backward()

    return forward, both


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="256,128,32")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reference", action="store_true", help="time the NumPy kernels too")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    cy.set_num_threads(args.threads)
    print(f"build {cy.BUILD}, own BLAS {cy.uses_own_blas()}, team {args.threads} threads")
    print("batch layer  option          forward ms  backward ms")
    for n in (int(v) for v in args.batches.split(",")):
        for layer in LAYERS:
            fwd, bwd = layer_calls(cy, n, layer, rng)
            for name, option in OPTIONS.items():
                cy._kernels.set_conv_options(*option)
                f_ms, b_ms = median_ms(fwd, args.repeat), median_ms(bwd, args.repeat)
                print(f"{n:5d} {layer}  {name:14s} {f_ms:10.2f} {b_ms:12.2f}")
            cy._kernels.set_conv_options(0, 1 << 17)
            if args.reference:
                fwd, bwd = layer_calls(ref, n, layer, rng)
                f_ms, b_ms = median_ms(fwd, 3), median_ms(bwd, 3)
                print(f"{n:5d} {layer}  {'numpy':14s} {f_ms:10.2f} {b_ms:12.2f}")
            try:
                fwd, both = torch_calls(n, layer)
            except ImportError:
                continue
            f_ms, fb_ms = median_ms(fwd, args.repeat), median_ms(both, args.repeat)
            print(f"{n:5d} {layer}  {'torch':14s} {f_ms:10.2f} {fb_ms - f_ms:12.2f}")


if __name__ == "__main__":
    main()
