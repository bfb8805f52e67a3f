"""Numba kernels of one dense layer: BLAS or sparse loops, with fused bias/activation passes.

Design:

A. Two ways to multiply, chosen per call by :func:`use_loops` from a cost model and the
   measured density of the input. Dense inputs go to BLAS: ``np.dot`` reaches scipy's
   OpenBLAS, and ``x.T`` / ``W.T`` are F-ordered views that Numba passes to gemm as
   transpose flags (no copy). Tiny batches and sparse inputs go to the loops of
   ``_numba_sparse``, which skip zero inputs. ``grad_x = delta @ W.T`` does not depend on
   the sparsity of ``x``: it uses BLAS except for tiny batches.
B. After the product, one pass per output row adds the bias and applies the activation
   (``_numba_act``). The backward pass turns ``grad`` into ``delta`` and sums ``db`` in one
   pass, then ``grad_x`` (skipped for the first layer), then ``dW``.
C. ``grad_x`` comes before ``dW`` so that the loops may add ``-lr * x.T @ delta`` straight into
   ``W`` for plain SGD (``sgd``): the input gradient has already used the old ``W``.
"""

from __future__ import annotations

import numpy as np

from ._jit import kernel
from ._numba_act import act_backward_colsum, bias_act_row
from ._numba_sparse import forward_loops, input_grad_loops, weight_grad_loops

# Cost model of one forward + dW, in ns, fitted on the project machine (AMD EPYC, AVX-512; see
# the backend report). Loops cost per non-zero input and output column; BLAS pays a call,
# packing W (d*k) and the full n*d*k product, less efficiently for thin k. Only a big product
# counts BLAS's threads (0.8 of a thread each beyond the first): for MNIST batches of 128 the
# two are equal in wall time, and single-threaded loops leave the second core free (a busy
# machine makes multi-threaded OpenBLAS many times slower; measured 20x).
LOOPS_PER_NONZERO = 6.6
LOOPS_PER_NONZERO_COLUMN = 0.0525
BLAS_CALL = 2000.0
BLAS_PER_WEIGHT = 0.36
BLAS_PER_PRODUCT = 0.033
BLAS_FULL_WIDTH = 40  # below this many output columns a BLAS product costs more per element
BLAS_THREAD_GAIN = 0.8
BLAS_THREADED_PRODUCT = 5e7  # n*d*k from which threaded BLAS counts (~500 MNIST rows)
SMALL_BATCH = 2  # up to this many rows, loops also compute grad_x (BLAS: call overhead)


@kernel
def use_loops(x: np.ndarray, k: int, blas_threads: int) -> bool:
    """True when the sparse loops beat BLAS (``blas_threads`` threads) for the input ``x``
    (n, d) of a layer with ``k`` outputs."""
    n, d = x.shape
    if n <= SMALL_BATCH:
        return True
    nnz = 0
    for i in range(n):
        for j in range(d):
            nnz += x[i, j] != 0
    loops = nnz * (LOOPS_PER_NONZERO + LOOPS_PER_NONZERO_COLUMN * k)
    thin = max(1.0, BLAS_FULL_WIDTH / max(k, 1))
    speedup = 1.0
    if n * d * k >= BLAS_THREADED_PRODUCT:
        speedup += BLAS_THREAD_GAIN * (max(blas_threads, 1) - 1)
    product = BLAS_PER_PRODUCT * thin * n * d * k / speedup
    return loops < BLAS_CALL + BLAS_PER_WEIGHT * d * k + product


@kernel
def dense_forward_into(x, W, b, act, slope, out, work, loops):
    """out (n, k) = act(x (n, d) @ W (d, k) + b (k,)); ``loops`` picks the sparse loops."""
    if loops:
        forward_loops(x, W, out, work)
    else:
        np.dot(x, W, out)
    for i in range(out.shape[0]):
        bias_act_row(out, i, b, act, slope)


@kernel
def dense_backward_into(
    x, W, a, grad, act, slope, dW, db, grad_x, want_grad_x, loops, work, dirty, sgd, lr
):
    """Backward of one layer (kernel contract), grad_x only if ``want_grad_x``.

    With ``sgd`` and ``loops``, ``W -= lr * x.T @ delta`` replaces writing ``dW`` and the
    function returns True (Design C); otherwise ``dW`` is written, the caller updates ``W``
    and it returns False. ``dirty`` (d,): rows of ``dW`` that may be non-zero
    (``_numba_sparse`` Design C); work: int32 scratch.
    """
    act_backward_colsum(a, grad, act, slope, db)
    if want_grad_x:
        # Dense work whatever the sparsity of x: loops only where BLAS call overhead dominates.
        if grad.shape[0] <= SMALL_BATCH:
            input_grad_loops(grad, W, grad_x)
        else:
            np.dot(grad, W.T, grad_x)
    if loops:
        weight_grad_loops(x, grad, W if sgd else dW, work, dirty, sgd, lr)
        return sgd
    np.dot(x.T, grad, dW)
    dirty[:] = True
    return False
