"""The Numba backend: ``@njit`` kernels behind the kernel contract of :mod:`fastnn.backends`.

Every public function here is a thin wrapper: it checks its arguments with
:mod:`fastnn.backends._checks` (so a bad shape or dtype is a Python exception, never a crash in
compiled code), converts scalars to plain Python types (so NumPy scalars do not compile new
specializations) and calls the compiled kernels of the private modules:

- ``_numba_dense``: fused dense forward/backward, BLAS for dense inputs, the loops of
  ``_numba_sparse`` for tiny or sparse ones, the activations of ``_numba_act``;
- ``_numba_losses``: the five losses, value and gradient in one pass;
- ``_numba_optim``: SGD, momentum and Adam in one pass per parameter;
- ``_numba_epoch``: the whole epoch in compiled code.

JIT flags (cache, fastmath, no ``parallel``) live in ``_jit``. Importing this module without
Numba installed raises ImportError, which the backend registry reports as "unavailable".
"""

from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("the 'numba' backend needs numba (pip install fastnn[numba])") from exc

from . import _checks
from . import _numba_dense as _dense
from . import _numba_epoch as _epoch
from . import _numba_losses as _losses
from . import _numba_optim as _optim
from . import _numba_sparse as _sparse
from ._workspace import Workspace

NAME = "numba"

# Threads of the BLAS that np.dot reaches in Numba (scipy's OpenBLAS), for the loops-or-BLAS
# choice; looked up once (threadpoolctl takes milliseconds), then kept by set_num_threads.
_blas_thread_count: int | None = None


def _blas_threads() -> int:
    global _blas_thread_count
    if _blas_thread_count is None:
        import scipy.linalg.cython_blas  # noqa: F401  (loads the library first)
        from threadpoolctl import threadpool_info

        blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        scipy_blas = [i for i in blas if "scipy.libs" in i.get("filepath", "")]
        _blas_thread_count = max([i["num_threads"] for i in scipy_blas or blas] or [1])
    return _blas_thread_count


# Dense layer ---------------------------------------------------------------------------------
def dense_forward(
    x: np.ndarray, W: np.ndarray, b: np.ndarray, act: int, slope: float, out: np.ndarray
) -> None:
    """out = act(x @ W + b), fused.

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
    work = np.empty(x.shape[1], np.int32)
    _dense.dense_forward_into(
        x, W, b, int(act), float(slope), out, work, _dense.use_loops(x, W.shape[1], _blas_threads())
    )


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
        Layer output of ``dense_forward``.
    grad : ndarray, shape (n, k)
        dL/da on entry, dL/dz on exit.
    act : int
    slope : float
    dW_out : ndarray, shape (d, k)
        Overwritten with x.T @ dL/dz.
    db_out : ndarray, shape (k,)
        Overwritten with the column sums of dL/dz.
    grad_x_out : ndarray, shape (n, d), or None
        Overwritten with dL/dz @ W.T; ``None`` skips it (first layer).
    """
    _checks.check_dense_backward(x, W, a, grad, act, dW_out, db_out, grad_x_out)
    d = x.shape[1]
    want_grad_x = grad_x_out is not None
    # A placeholder of the right type keeps one compiled specialization for both cases.
    grad_x = grad_x_out if want_grad_x else x[:0]
    work = np.empty(_sparse.work_size(d), np.int32)
    dirty = np.ones(d, np.bool_)  # dW_out may hold anything
    loops = _dense.use_loops(x, W.shape[1], _blas_threads())
    _dense.dense_backward_into(
        x, W, a, grad, int(act), float(slope), dW_out, db_out, grad_x, want_grad_x,
        loops, work, dirty, False, 0.0,
    )  # fmt: skip


# Losses: targets become 2-D so that one compiled loss serves both target kinds ---------------
def mse(outputs: np.ndarray, targets: np.ndarray, grad_out: np.ndarray) -> float:
    """Mean squared error; outputs, targets, grad_out (n, k). Returns the loss."""
    _checks.check_loss(outputs, targets, grad_out, class_indices=False)
    return float(_losses.mse(outputs, targets, grad_out))


def softmax_cross_entropy(outputs: np.ndarray, targets: np.ndarray, grad_out: np.ndarray) -> float:
    """Softmax + cross-entropy on logits (n, k); targets (n,) int64 class indices."""
    _checks.check_loss(outputs, targets, grad_out, class_indices=True)
    return float(_losses.softmax_cross_entropy(outputs, targets.reshape(-1, 1), grad_out))


def softmax_cross_entropy_soft(
    outputs: np.ndarray, targets: np.ndarray, grad_out: np.ndarray
) -> float:
    """Softmax + cross-entropy on logits (n, k) with target probabilities (n, k)."""
    _checks.check_loss(outputs, targets, grad_out, class_indices=False)
    return float(_losses.softmax_cross_entropy_soft(outputs, targets, grad_out))


def binary_cross_entropy(outputs: np.ndarray, targets: np.ndarray, grad_out: np.ndarray) -> float:
    """Sigmoid + binary cross-entropy on logits (n, k); targets (n, k) in [0, 1]."""
    _checks.check_loss(outputs, targets, grad_out, class_indices=False)
    return float(_losses.binary_cross_entropy(outputs, targets, grad_out))


def kl_divergence(outputs: np.ndarray, targets: np.ndarray, grad_out: np.ndarray) -> float:
    """KL(targets || softmax(outputs)); outputs, targets, grad_out (n, k)."""
    _checks.check_loss(outputs, targets, grad_out, class_indices=False)
    return float(_losses.kl_divergence(outputs, targets, grad_out))


# Optimizers ----------------------------------------------------------------------------------
def sgd_update(param: np.ndarray, grad: np.ndarray, lr: float, weight_decay: float) -> None:
    """param (p,) -= lr * (grad + weight_decay * param), in place."""
    _checks.check_update(param, grad)
    _optim.sgd_update(param, grad, float(lr), float(weight_decay))


def momentum_update(
    param: np.ndarray,
    grad: np.ndarray,
    velocity: np.ndarray,
    lr: float,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
) -> None:
    """Heavy-ball or Nesterov momentum on flat (p,) arrays, in place."""
    _checks.check_update(param, grad, velocity)
    _optim.momentum_update(
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
    """Adam on flat (p,) arrays, in place; ``step`` counts from 1."""
    _checks.check_update(param, grad, m, v)
    _optim.adam_update(
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
    """One epoch of mini-batch gradient descent, entirely in compiled code.

    Parameters
    ----------
    ws : Workspace
        Parameters, optimizer state and buffers; updated in place, ``ws.step`` advanced.
    X : ndarray, shape (n, d)
    targets : ndarray, shape (n,) int64 or (n, k) float
    order : ndarray, shape (m,) int64
        Rows of X to train on, in order (a permutation of ``range(n)``, or a slice of one):
        batch i is ``order[i*batch_size:(i+1)*batch_size]``.
    batch_size : int
    batch_losses : ndarray, shape (ceil(m / batch_size),) float64
        Receives the loss of every batch run.

    Returns
    -------
    int
        Number of batches whose loss was recorded (fewer than all if a loss was not finite).

    Notes
    -----
    Plain SGD on a layer whose input is sparse or tiny steps ``W`` without writing ``dW``
    (see ``_numba_epoch``); ``ws.dW`` is then computed once for the last batch. When the
    epoch stops at a non-finite loss, ``ws.dW`` of such layers is not the previous batch's.
    """
    batch_size = int(batch_size)
    _checks.check_train_epoch(ws, X, targets, order, batch_size, batch_losses)
    n = X.shape[0]
    kt = 1 if targets.ndim == 1 else targets.shape[1]
    y_batch = ws.y_batch.reshape(ws.batch_size, kt)
    if y_batch.dtype != targets.dtype:
        raise TypeError(f"targets have dtype {targets.dtype}, ws.y_batch {y_batch.dtype}")
    done, step = _epoch.train_epoch_impl(
        tuple(ws.weights), tuple(ws.biases), tuple(ws.state1_w), tuple(ws.state1_b),
        tuple(ws.state2_w), tuple(ws.state2_b), tuple(ws.outputs), tuple(ws.grads),
        tuple(ws.dW), tuple(ws.db), ws.x_batch, y_batch,
        ws.acts, ws.slopes, int(ws.loss), int(ws.optimizer), ws.hyper, int(ws.step),
        X, targets.reshape(n, kt), order, batch_size, batch_losses, _blas_threads(),
    )  # fmt: skip
    ws.step = int(step)
    return int(done)


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for the BLAS products (the only multi-threaded work of this backend).

    The kernels themselves are single-threaded by design (no OpenMP ``prange`` next to BLAS,
    see ``fastnn.backends._jit``); Numba's own pool is set too, capped at its maximum, so
    Numba code a user writes alongside agrees. Applies to every BLAS library in the process.

    Parameters
    ----------
    n : int
        Number of threads, at least 1.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"number of threads must be at least 1, got {n}")
    import scipy.linalg.cython_blas  # noqa: F401  (loads the OpenBLAS that np.dot uses in Numba)
    from threadpoolctl import threadpool_limits

    global _blas_thread_count
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    threadpool_limits(limits=n, user_api="blas")
    _blas_thread_count = n
