"""The Cython backend: compiled kernels (``_kernels.pyx``) behind thin checking wrappers.

Every function follows the kernel contract of :mod:`fastnn.backends`. The wrappers run the
argument checks of :mod:`fastnn.backends._checks` first, so a wrong shape, dtype or layout is a
Python exception and never reaches compiled code that indexes raw memory.

Threads: ``train_epoch`` splits its work into ``set_num_threads(n)`` chunks (default: the CPUs
this process may use) and holds BLAS to one thread meanwhile, since each chunk calls BLAS
itself; two thread pools on the same cores fight (DESIGN.md, "OpenMP spinning starves BLAS").
It times its batches run on OpenMP threads and run one chunk after another, and keeps the
faster (threads lose badly when other processes hold the cores); both give the same numbers.
The single-batch kernels use no OpenMP at all: BLAS threads as configured.

Two builds of the same source exist (setup.py): ``_kernels`` (generic) and ``_kernels_v3``
(AVX2 + FMA), picked at import by what the CPU supports; ``BUILD`` says which runs.

Importing this module raises ImportError when the extension was not built (no compiler, no
Cython, or ``FASTNN_NO_EXTENSIONS=1`` at install time); the backend registry then reports it
unavailable.
"""

from __future__ import annotations

import os
import weakref
from contextlib import AbstractContextManager
from types import ModuleType

import numpy as np

from .. import _checks
from .._workspace import Workspace

try:
    from . import _kernels as _generic
except ImportError as exc:  # pragma: no cover - depends on how fastnn was installed
    raise ImportError(
        "the fastnn Cython extension is not built; reinstall with a C compiler and Cython "
        "(pip install -e . --no-build-isolation) or use another backend"
    ) from exc


def _pick_build() -> ModuleType:
    """The AVX2 + FMA build when this CPU runs it (1.4x faster epochs), else the generic one.

    ``FASTNN_CYTHON_BUILD=generic`` forces the generic build.
    """
    if os.environ.get("FASTNN_CYTHON_BUILD", "").strip().lower() == "generic":
        return _generic
    if not _generic.cpu_has_avx2_fma():
        return _generic
    try:
        from . import _kernels_v3
    except ImportError:  # not built (not x86-64, or the compiler refused the flags)
        return _generic
    return _kernels_v3


_kernels = _pick_build()
NAME = "cython"
#: Which compiled build runs: "avx2" or "generic".
BUILD = "avx2" if _kernels is not _generic else "generic"

# BLAS products take int dimensions (LP64 BLAS).
_INT_MAX = 2**31 - 1


def _default_threads() -> int:
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_num_threads = _default_threads()
_blas_controller = None
# Per workspace and thread count: the timings behind the epoch's threads-or-not choice
# (``_team.pxd``), kept across calls so that full-batch training (one batch per call) learns too.
_thread_stats: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# Per workspace: the epoch's scratch buffers (``_kernels.new_scratch``), allocated once.
_scratch: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in ``train_epoch`` (its BLAS calls run single-threaded inside them).

    Parameters
    ----------
    n : int
        Number of threads, at least 1.
    """
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"number of threads must be an integer >= 1, got {n!r}")
    _num_threads = int(n)


def get_num_threads() -> int:
    """Threads ``train_epoch`` will use."""
    return _num_threads


def _single_threaded_blas() -> AbstractContextManager:
    """Context holding every BLAS library to one thread (threadpoolctl, cached: ~10 us)."""
    global _blas_controller
    if _blas_controller is None:
        from threadpoolctl import ThreadpoolController

        # Created after _kernels loaded scipy's OpenBLAS, so that library is in the list.
        _blas_controller = ThreadpoolController()
    return _blas_controller.limit(limits=1, user_api="blas")


def _check_blas_dims(*arrays: np.ndarray) -> None:
    for a in arrays:
        if a is not None and any(s > _INT_MAX for s in a.shape):
            raise ValueError(f"array dimension {a.shape} exceeds the BLAS int limit")


# Dense layer -----------------------------------------------------------------------------------
def dense_forward(
    x: np.ndarray, W: np.ndarray, b: np.ndarray, act: int, slope: float, out: np.ndarray
) -> None:
    """out = act(x @ W + b) (fused: bias and activation in one pass over the product).

    Parameters
    ----------
    x : ndarray, shape (n, d)
    W : ndarray, shape (d, k)
    b : ndarray, shape (k,)
    act : int
        Activation code (``fastnn._codes``).
    slope : float
        Negative-side slope of leaky ReLU.
    out : ndarray, shape (n, k)
        Overwritten with the activation.
    """
    _checks.check_dense_forward(x, W, b, act, out)
    _check_blas_dims(x, W)
    _kernels.dense_forward(x, W, b, int(act), float(slope), out)


def dense_backward(
    x: np.ndarray,
    W: np.ndarray,
    a: np.ndarray,
    grad: np.ndarray,
    act: int,
    slope: float,
    dW_out: np.ndarray,
    db_out: np.ndarray,
    grad_x_out: np.ndarray | None,
) -> None:
    """Backpropagation through one dense layer.

    Parameters
    ----------
    x : ndarray, shape (n, d)
        Layer input.
    W : ndarray, shape (d, k)
    a : ndarray, shape (n, k)
        Layer output from ``dense_forward``.
    grad : ndarray, shape (n, k)
        dL/da on entry, dL/dz on return.
    act : int
    slope : float
    dW_out : ndarray, shape (d, k)
        Overwritten with x.T @ dL/dz.
    db_out : ndarray, shape (k,)
        Overwritten with the column sums of dL/dz.
    grad_x_out : ndarray, shape (n, d), or None
        Overwritten with dL/dz @ W.T; None skips it (first layer).
    """
    _checks.check_dense_backward(x, W, a, grad, act, dW_out, db_out, grad_x_out)
    _check_blas_dims(x, W, grad_x_out)
    _kernels.dense_backward(x, W, a, grad, int(act), float(slope), dW_out, db_out, grad_x_out)


# Losses: outputs (n, k), targets (n,) int64 or (n, k) float, grad_out (n, k) -> mean loss -------
def mse(outputs: np.ndarray, targets: np.ndarray, grad_out: np.ndarray) -> float:
    """Mean squared error over all n*k elements; grad_out = 2 (o - t) / (n k)."""
    _checks.check_loss(outputs, targets, grad_out, class_indices=False)
    return _kernels.mse(outputs, targets, grad_out)


def softmax_cross_entropy(outputs: np.ndarray, targets: np.ndarray, grad_out: np.ndarray) -> float:
    """Softmax + cross-entropy on logits with int64 class labels (n,), in one pass per row."""
    _checks.check_loss(outputs, targets, grad_out, class_indices=True)
    return _kernels.softmax_cross_entropy(outputs, targets, grad_out)


def softmax_cross_entropy_soft(
    outputs: np.ndarray, targets: np.ndarray, grad_out: np.ndarray
) -> float:
    """Softmax + cross-entropy on logits with probability rows (n, k) as targets."""
    _checks.check_loss(outputs, targets, grad_out, class_indices=False)
    return _kernels.softmax_cross_entropy_soft(outputs, targets, grad_out)


def binary_cross_entropy(outputs: np.ndarray, targets: np.ndarray, grad_out: np.ndarray) -> float:
    """Sigmoid + binary cross-entropy on logits, targets in [0, 1] (n, k)."""
    _checks.check_loss(outputs, targets, grad_out, class_indices=False)
    return _kernels.binary_cross_entropy(outputs, targets, grad_out)


def kl_divergence(outputs: np.ndarray, targets: np.ndarray, grad_out: np.ndarray) -> float:
    """KL(targets || softmax(outputs)), mean over rows; targets are probability rows (n, k)."""
    _checks.check_loss(outputs, targets, grad_out, class_indices=False)
    return _kernels.kl_divergence(outputs, targets, grad_out)


# Optimizers: in place on flat (p,) arrays --------------------------------------------------------
def sgd_update(param: np.ndarray, grad: np.ndarray, lr: float, weight_decay: float) -> None:
    """param -= lr * (grad + weight_decay * param)."""
    _checks.check_update(param, grad)
    _kernels.sgd_update(param, grad, float(lr), float(weight_decay))


def momentum_update(
    param: np.ndarray,
    grad: np.ndarray,
    velocity: np.ndarray,
    lr: float,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
) -> None:
    """Heavy-ball or Nesterov momentum (PyTorch's formulas); velocity (p,) updated in place."""
    _checks.check_update(param, grad, velocity)
    _kernels.momentum_update(
        param, grad, velocity, float(lr), float(momentum), bool(nesterov), float(weight_decay)
    )


def adam_update(
    param: np.ndarray,
    grad: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    step: int,
) -> None:
    """Adam with bias correction; m, v (p,) updated in place; ``step`` counts from 1."""
    _checks.check_update(param, grad, m, v)
    _kernels.adam_update(
        param, grad, m, v, float(lr), float(beta1), float(beta2), float(eps),
        float(weight_decay), int(step),
    )  # fmt: skip


# The epoch -----------------------------------------------------------------------------------
def train_epoch(
    ws: Workspace,
    X: np.ndarray,
    targets: np.ndarray,
    order: np.ndarray,
    batch_size: int,
    batch_losses: np.ndarray,
) -> int:
    """One epoch of mini-batch gradient descent with no Python and no GIL between batches.

    Parameters
    ----------
    ws : Workspace
        Parameters, optimizer state and buffers; updated in place, ``ws.step`` advanced by the
        number of updates.
    X : ndarray, shape (n, d)
    targets : ndarray, shape (n,) int64 or (n, k) float
    order : ndarray, shape (m,) int64
        Indices into X; batch i is ``order[i*batch_size:(i+1)*batch_size]``.
    batch_size : int
    batch_losses : ndarray, shape (ceil(m / batch_size),) float64
        Receives the loss of every batch run.

    Returns
    -------
    int
        Number of batches whose loss was recorded; fewer than all when a loss was not finite
        (that batch's update is skipped).
    """
    batch_size = int(batch_size)
    _checks.check_train_epoch(ws, X, targets, order, batch_size, batch_losses)
    _check_blas_dims(ws.x_batch, *ws.weights)
    if order.shape[0] == 0:
        return 0
    nthreads = _num_threads
    scratch = _scratch.get(ws)
    if scratch is None or scratch["csr_ptr"].shape[0] != ws.batch_size + 1:
        scratch = _scratch[ws] = _kernels.new_scratch(ws)
    if nthreads == 1:
        timing = np.zeros(_kernels.THREAD_STATS)
        done, steps = _kernels.train_epoch(
            ws, X, targets, order, batch_size, batch_losses, 1, timing, scratch
        )
    else:
        timing = _thread_stats.setdefault(ws, {}).setdefault(
            nthreads, np.zeros(_kernels.THREAD_STATS)
        )
        with _single_threaded_blas():
            done, steps = _kernels.train_epoch(
                ws, X, targets, order, batch_size, batch_losses, nthreads, timing, scratch
            )
    ws.step += int(steps)
    return int(done)
