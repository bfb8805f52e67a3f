"""How much arithmetic a training epoch is, and how much the machine can do.

The FLOP count is *dense-equivalent*: only the three matrix products of backpropagation are
counted, as if every operand were dense (a backend that skips the zero pixels of MNIST still
gets credit for the full product, which is what "achieved GFLOP/s" compares). Bias additions,
activations, the loss and the optimizer update are O(d k) per *batch*, not per sample, and are
left out. For a layer with d inputs and k outputs, per training sample:

- forward ``x @ W``: 2 d k
- weight gradient ``x.T @ delta``: 2 d k
- input gradient ``delta @ W.T``: 2 d k, except for the first layer (nothing needs dL/dX)

so the MLP 784-128-10 costs 4·784·128 + 6·128·10 = 409,088 FLOP per sample, 24.5 GFLOP per
epoch of 60,000 samples.

The *non-zero* count is the work that must really be done: the first layer's two products
need only the non-zero inputs (a zero pixel adds nothing to ``x @ W`` and nothing to
``x.T @ delta``), so they cost 2·nnz·k each, with nnz the mean number of non-zero inputs per
sample (~150 of 784 on MNIST: 84,480 FLOP per sample, 5.1 GFLOP per epoch). The other layers
are counted dense. That count over the SGEMM ceiling is the epoch's *limit* (its roofline at
the machine's best matrix-multiply rate): ~0.02 s on a 250 GFLOP/s machine, against 0.1 s for
the dense count. "% of limit" is how close a row comes to it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

FLOP_FORMULA = (
    "FLOP per sample = sum over layers (d inputs, k outputs) of 2dk (forward x@W) "
    "+ 2dk (weight gradient x.T@delta) + 2dk (input gradient delta@W.T, not for the first "
    "layer); dense-equivalent, matrix products only"
)


def flops_per_sample(layer_sizes: Sequence[int]) -> int:
    """Dense-equivalent FLOP of one training sample (forward + backward) through an MLP.

    Parameters
    ----------
    layer_sizes : sequence of int, length L + 1
        Widths from input to output, e.g. ``[784, 128, 10]``.

    Returns
    -------
    int
        ``sum_l (4 + 2 [l > 0]) d_l k_l``.
    """
    sizes = [int(s) for s in layer_sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"need at least two positive layer sizes, got {list(layer_sizes)}")
    total = 0
    for i, (d, k) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        total += (4 if i == 0 else 6) * d * k
    return total


FLOP_FORMULA_NONZERO = (
    "non-zero FLOP per sample = 4 nnz k (first layer: forward and weight gradient over the "
    "nnz non-zero inputs of a sample, on average) + the dense count of the other layers"
)


def nonzero_flops_per_sample(layer_sizes: Sequence[int], nonzero_inputs: float) -> float:
    """FLOP of one training sample counting only the first layer's non-zero inputs.

    Parameters
    ----------
    layer_sizes : sequence of int, length L + 1
        Widths from input to output, e.g. ``[784, 128, 10]``.
    nonzero_inputs : float
        Mean number of non-zero inputs per sample, in [0, layer_sizes[0]].

    Returns
    -------
    float
        ``4 nnz k_0 + sum_{l > 0} 6 d_l k_l``.
    """
    sizes = [int(s) for s in layer_sizes]
    dense = flops_per_sample(sizes)
    if not 0 <= nonzero_inputs <= sizes[0]:
        raise ValueError(f"nonzero_inputs must be in [0, {sizes[0]}], got {nonzero_inputs}")
    return dense - 4.0 * sizes[0] * sizes[1] + 4.0 * float(nonzero_inputs) * sizes[1]


def mean_nonzeros(X: np.ndarray, block: int = 4096) -> float:
    """Mean number of non-zero entries per row of ``X`` (n, d), counted in row blocks."""
    if X.shape[0] == 0:
        return 0.0
    total = sum(int(np.count_nonzero(X[s : s + block])) for s in range(0, X.shape[0], block))
    return total / X.shape[0]


def flops_per_epoch(layer_sizes: Sequence[int], n_samples: int) -> int:
    """Dense-equivalent FLOP of one epoch over ``n_samples`` (see :func:`flops_per_sample`)."""
    return int(n_samples) * flops_per_sample(layer_sizes)


def sgemm_gflops(size: int = 1024, min_seconds: float = 0.3, max_calls: int = 200) -> dict:
    """The machine's matrix-multiply ceiling: float32 ``A @ B`` through NumPy's BLAS.

    Runs ``(size, size) @ (size, size)`` products for at least ``min_seconds`` (after one
    warm-up call) with whatever thread limit is in force, and reports the best and the median
    rate. The best is the ceiling every benchmark row is compared with.

    Parameters
    ----------
    size : int
        Edge of the square matrices.
    min_seconds : float
        Minimum measuring time.
    max_calls : int
        Upper bound on the number of timed products.

    Returns
    -------
    dict
        ``gflops`` (best), ``median_gflops``, ``size``, ``calls``.
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    out = np.empty((size, size), dtype=np.float32)
    np.matmul(a, b, out=out)  # warm-up: thread pool start, page faults
    flop = 2.0 * size**3
    rates = []
    start = time.perf_counter()
    while len(rates) < max_calls and (time.perf_counter() - start < min_seconds or len(rates) < 3):
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        rates.append(flop / (time.perf_counter() - t0) / 1e9)
    return {
        "gflops": float(max(rates)),
        "median_gflops": float(np.median(rates)),
        "size": size,
        "calls": len(rates),
    }
