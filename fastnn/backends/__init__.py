"""Compute backends: one module per backend, identical function names and signatures.

The kernel contract
===================
Every backend module (``fastnn.backends.numpy`` — the reference —, ``fastnn.backends.numba``,
``fastnn.backends.cython``) defines the functions below with these exact signatures. Arrays are
batch-major and C-contiguous, all float arrays of one call share one dtype (float32 or float64),
``IN`` arrays are only read, ``OUT`` arrays are caller-owned buffers that are overwritten, and
``IN/OUT`` arrays are read and then overwritten. Kernels never allocate their outputs, so the
API allocates every buffer once per ``fit`` and reuses it for every batch. Arguments are checked
by the API (``fastnn.backends._checks``) before they reach a kernel.

Activation, loss and optimizer codes are the integers of :mod:`fastnn._codes`.

``dense_forward(x, W, b, act, alpha, z_out, out) -> None``
    ``out = act(x @ W + b)``.  x (n, d) IN, W (d, k) IN, b (k,) IN, out (n, k) OUT.
    ``alpha`` is the activation parameter: leaky ReLU's negative slope, ELU's alpha (the other
    activations ignore it). Softmax is taken per row. ``z_out`` (n, k) OUT receives the
    pre-activation ``z = x @ W + b`` for the activations whose derivative needs it
    (``fastnn._codes.NEEDS_PREACTIVATION``: gelu, gelu_tanh, silu) and must be ``None`` or is
    ignored for every other one, whose derivative is written from its output ``a``.

``dense_backward(x, W, z, a, grad, act, alpha, dW_out, db_out, grad_x_out) -> None``
    Backpropagation through one dense layer. x (n, d) IN (the layer input), W (d, k) IN,
    z (n, k) IN (the ``z_out`` of ``dense_forward``, or ``None`` where the activation does not
    need it), a (n, k) IN (the layer output), grad (n, k) IN/OUT: dL/da on entry, overwritten
    with dL/dz = dL/da * act'(z); then dW_out (d, k) OUT = x.T @ dL/dz, db_out (k,) OUT =
    column sums of dL/dz, and grad_x_out (n, d) OUT = dL/dz @ W.T, or ``None`` to skip it
    (first layer).

Convolution and pooling (images NCHW, PyTorch's layouts; ``s`` stride, ``p`` zero padding;
``Ho = (H + 2p - kh) / s + 1`` exactly, likewise ``Wo``; the layers check the division):

``conv2d_forward(x, W, b, stride, padding, act, alpha, z_out, out) -> None``
    ``out = act(conv(x, W) + b)`` (a cross-correlation). x (n, C, H, W) IN, W (F, C, kh, kw)
    IN, b (F,) IN, out (n, F, Ho, Wo) OUT; ``z_out`` as for ``dense_forward``. No softmax.
``conv2d_backward(x, W, z, a, grad, stride, padding, act, alpha, dW_out, db_out, grad_x_out)``
    grad (n, F, Ho, Wo) IN/OUT (dL/da in, dL/dz out), dW_out (F, C, kh, kw) OUT, db_out (F,)
    OUT, grad_x_out (n, C, H, W) OUT or ``None`` (first layer).
``maxpool2d_forward(x, kernel, stride, out, argmax_out) -> None``
    out (n, C, Ho, Wo) OUT: the maximum of each kernel x kernel window; argmax_out (same shape,
    int64) OUT: the flat index ``h * W + w`` of that maximum in its input plane (first on ties).
``maxpool2d_backward(grad, argmax, grad_x_out) -> None``
    grad_x_out (n, C, H, W) OUT: zero, plus each output's gradient at its argmax.

Losses: ``name(outputs, targets, grad_out) -> float``
    outputs (n, k) IN are the raw outputs of the last layer (logits where a softmax or sigmoid
    is fused into the loss); grad_out (n, k) OUT receives dL/doutputs; the return value is the
    loss (Python float, computed in float64 where it matters), a mean over the batch.

    - ``mse``: targets (n, k) float; L = mean over all n*k elements of (o - t)^2.
    - ``softmax_cross_entropy``: targets (n,) int64 class indices;
      L = mean_i [logsumexp(o_i) - o_i[t_i]].
    - ``softmax_cross_entropy_soft``: targets (n, k) float rows of probabilities;
      L = mean_i [-sum_j t_ij log softmax(o_i)_j].
    - ``binary_cross_entropy``: targets (n, k) float in [0, 1]; sigmoid fused;
      L = mean over all n*k elements of [softplus(o) - t o].
    - ``kl_divergence``: targets (n, k) float rows of probabilities;
      L = mean_i sum_j t_ij (log t_ij - log softmax(o_i)_j), with 0 log 0 = 0.

Optimizer updates, in place, on flat 1-D views (``param.reshape(-1)``):
    - ``sgd_update(param, grad, lr, weight_decay)``: g = grad + wd*param; param -= lr*g.
    - ``momentum_update(param, grad, velocity, lr, momentum, nesterov, weight_decay)``:
      g = grad + wd*param; v = mu*v + g; param -= lr*(g + mu*v if nesterov else v).
    - ``adam_update(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step)``:
      g = grad + wd*param; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
      param -= lr * (m / (1-b1^step)) / (sqrt(v / (1-b2^step)) + eps); ``step`` counts from 1.
    The same formulas as PyTorch's SGD and Adam (weight decay as L2 added to the gradient).

``train_epoch(ws, X, targets, order, batch_size, batch_losses) -> int``
    The fast path: one whole epoch. ``ws`` is a :class:`fastnn.backends.workspace.Workspace`
    (parameters, optimizer state and every buffer); X (n, d) IN in the model dtype; targets IN as
    the loss expects (int64 (n,) or float (n, k)); order (m,) int64 IN, indices into X (a
    permutation of ``range(n)`` for a whole epoch; the API may pass consecutive slices of one
    permutation, cut at multiples of batch_size, to report progress);
    batch_losses (ceil(m / batch_size),) float64 OUT. For every batch
    ``idx = order[i*bs:(i+1)*bs]`` (the last one ragged): gather X[idx] and targets[idx] into the
    workspace, ``dense_forward`` through every layer, the loss kernel, ``dense_backward`` from the
    last layer to the first (no input gradient for the first), then update every parameter in the
    order W0, b0, W1, b1, ... and add one to ``ws.step``. Stops at the first batch whose loss is
    not finite, before its update, and returns the number of batches whose loss was recorded.
    The result must equal calling the per-batch kernels one by one (``fastnn.backends.numpy``
    does exactly that, and is the yardstick).

Every backend module also has ``NAME``, ``FUSED_LAYERS`` (the layer kinds its ``train_epoch``
runs; a model with any other layer trains through :mod:`fastnn.backends.eager` on the same
kernels), ``FUSED_PAIRS`` (the pairs of layer kinds the per-batch loop runs as one call on
it, where that is faster: ``("conv2d", "maxpool2d")`` through ``conv2d_maxpool_*``, which
every backend has), and a compiled backend ``set_num_threads(n)`` / ``get_num_threads()``.

Where the code lives: ``numpy/``, ``numba/`` and ``cython/`` hold the same modules for the same
concerns (``activations``, ``dense``, ``losses``, ``optim``, ``epoch``; the compiled ones also
``sparse``); :mod:`fastnn.backends._frontend` is the one validate-cast-call layer in front of
both compiled backends; :mod:`fastnn.backends.workspace` and :mod:`fastnn.backends.eager` are
shared by all three.
"""

from __future__ import annotations

import importlib
import os
import warnings
from types import ModuleType

from ._blas import load_scipy_blas

# First, before any backend imports SciPy (the reference's scipy.special loads the same
# OpenBLAS): SciPy's OpenBLAS, which both compiled backends call, with idle workers that
# sleep instead of spinning beside the backends' own threads (see _blas.py).
load_scipy_blas()

BACKEND_NAMES: tuple[str, ...] = ("numpy", "numba", "cython")
# "auto" tries the compiled backends first, fastest first (see README "Backends").
AUTO_ORDER: tuple[str, ...] = ("cython", "numba", "numpy")

_loaded: dict[str, ModuleType] = {}
_failures: dict[str, str] = {}
_current: str | None = None
_warned: set[str] = set()


def load_backend(name: str) -> ModuleType | None:
    """The backend module ``name`` if it loads on this machine, else None (and the reason is
    kept for :func:`backend_status`). Loads it at most once per process."""
    if name in _loaded:
        return _loaded[name]
    if name in _failures:
        return None
    try:
        module = importlib.import_module(f"fastnn.backends.{name}")
    except Exception as exc:  # numba missing, extension not built, unusable JIT cache, ...
        _failures[name] = f"{type(exc).__name__}: {exc}"
        return None
    _loaded[name] = module
    return module


def _check_name(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"backend name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    if key != "auto" and key not in BACKEND_NAMES:
        raise ValueError(
            f"unknown backend {name!r}; valid names: {', '.join(('auto',) + BACKEND_NAMES)}"
        )
    return key


def available_backends() -> list[str]:
    """Names of the backends that load on this machine, reference first.

    Returns
    -------
    list of str
        A subset of ``["numpy", "numba", "cython"]``.
    """
    return [name for name in BACKEND_NAMES if load_backend(name) is not None]


def backend_status() -> dict[str, str]:
    """For each backend, ``"ok"`` or the reason it did not load."""
    return {
        name: ("ok" if load_backend(name) is not None else _failures.get(name, "not loaded"))
        for name in BACKEND_NAMES
    }


def resolve_backend(name: str | None = None) -> ModuleType:
    """The backend module for ``name``.

    ``None`` means the current choice (``set_backend``, else ``$FASTNN_BACKEND``, else
    ``"auto"``). ``"auto"`` silently takes the first backend of ``AUTO_ORDER`` that loads.
    A backend asked for by name that cannot load falls back to the reference with one warning.
    """
    if name is None:
        name = _current or os.environ.get("FASTNN_BACKEND", "auto") or "auto"
    key = _check_name(name)
    if key == "auto":
        for candidate in AUTO_ORDER:
            module = load_backend(candidate)
            if module is not None:
                return module
        raise ImportError("no fastnn backend could be loaded")  # numpy always loads
    module = load_backend(key)
    if module is None:
        if key not in _warned:  # one warning per backend and process, not one per fit
            _warned.add(key)
            warnings.warn(
                f"fastnn backend {key!r} is unavailable ({_failures[key]}); "
                "using the 'numpy' reference instead",
                RuntimeWarning,
                stacklevel=3,
            )
        module = load_backend("numpy")
        assert module is not None
    return module


def set_backend(name: str) -> None:
    """Choose the default backend for every later ``fit``.

    Parameters
    ----------
    name : {"auto", "numpy", "numba", "cython"}
        ``"auto"`` takes the fastest backend that loads.
    """
    global _current
    key = _check_name(name)
    if key != "auto":
        resolve_backend(key)  # warn now, not at the first fit
    _current = key


def get_backend() -> str:
    """Name of the backend that ``fit`` would use now (``"auto"`` resolved)."""
    return resolve_backend(None).NAME
