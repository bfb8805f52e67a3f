"""The Numba backend: ``@njit`` kernels behind the kernel contract of :mod:`fastnn.backends`.

The public functions are made by :func:`fastnn.backends._frontend.bind`: it checks every
argument (a bad shape or dtype is a Python exception, never a crash in compiled code), casts
scalars to plain Python types (NumPy scalars would compile new specializations) and calls the
trusted entry points of this package's modules, which mirror the other backends:

- ``activations``: bias + activation of one row, its derivative, every activation code;
- ``dense``: fused dense forward/backward (``dense_forward_kernel``/``dense_backward_kernel``),
  BLAS for dense inputs or the zero-skipping loops of ``sparse`` for tiny or sparse ones;
- ``losses``: the five losses, value and gradient in one pass, ``loss_by_code`` (run-time
  dispatch) and ``loss_kernel`` (the kernel of one code);
- ``optim``: SGD, momentum and Adam in one pass per parameter, ``update_by_code`` and
  ``update_kernel`` likewise;
- ``epoch``: the whole epoch in compiled code, compiled per (loss, optimizer) on first use
  (``train_epoch_kernel``);
- ``conv``, ``pool``: direct register-blocked convolutions (vector intrinsics of ``simd``) and
  max pooling, the batch split over the threads of ``team`` (the CNN trains per batch);
  ``conv_pool`` runs both per chunk of images, so the convolution's output stays in cache;
- ``jit``: the JIT flags (cache, fastmath; ``parallel`` only for the thread-split loops), the
  stamped disk cache and ``specialize`` (a kernel compiled per bound callee).

Importing this package without Numba installed raises ImportError, which the backend registry
reports as "unavailable".
"""

from __future__ import annotations

from types import SimpleNamespace

try:
    import numba
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("the 'numba' backend needs numba (pip install fastnn[numba])") from exc

from .._frontend import bind, contract_names
from . import blas, conv, conv_pool, dense, epoch, fpmode, losses, optim, pool, predict, team

NAME = "numba"
#: Layer kinds ``train_epoch`` runs; a model with any other layer trains through the eager loop.
FUSED_LAYERS: frozenset[str] = frozenset({"dense"})
#: Layer pairs the per-batch loop runs as one call (conv_pool.py: the conv output stays in
#: cache, and the backward pass skips what pooling discards).
FUSED_PAIRS: frozenset[tuple[str, str]] = frozenset({("conv2d", "maxpool2d")})


def _trusted_entry_points() -> SimpleNamespace:
    """The contract's functions, each from the module of its concern (arguments trusted)."""
    modules = (dense, losses, optim, epoch, conv, conv_pool, pool)
    found = {}
    for name in contract_names():
        owner = [m for m in modules if callable(getattr(m, name, None))]
        if len(owner) != 1:
            raise ImportError(f"numba backend: {name!r} is defined in {len(owner)} modules")
        found[name] = getattr(owner[0], name)
    # optional: the whole forward in one call
    found["prepare_predict_dense"] = predict.prepare_predict_dense
    return SimpleNamespace(**found)


globals().update(bind(NAME, _trusted_entry_points()))


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for the BLAS products and for the convolution and pooling kernels.

    The sparse loops of the dense layers split their columns over ``n`` threads of Numba's
    passive ``workqueue`` layer where that pays (never OpenMP next to BLAS, see :mod:`.jit`
    and :mod:`.team`, Design E); the conv/pool kernels split the batch over ``n`` threads of
    their own passive team (:mod:`.team`). Numba's own pool is set too, capped at its maximum,
    so Numba code a user writes alongside agrees. Applies to every BLAS library in the process.

    Parameters
    ----------
    n : int
        Number of threads, at least 1.
    """
    if isinstance(n, bool) or n != int(n) or int(n) < 1:
        raise ValueError(f"number of threads must be an integer >= 1, got {n!r}")
    n = int(n)
    import scipy.linalg.cython_blas  # noqa: F401  (loads the OpenBLAS that np.dot uses in Numba)
    from threadpoolctl import threadpool_limits

    team.choose_threading_layer()  # before Numba starts its threads (team.py, Design E)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    threadpool_limits(limits=n, user_api="blas")
    blas.set_blas_threads(n)


#: Whether :func:`swap_fp_mode` reaches the floating-point control register (x86-64).
FP_MODE_SUPPORTED: bool = fpmode.SUPPORTED


def swap_fp_mode(bits: int) -> int:
    """Set this thread's denormal-flushing bits (``fastnn.denormals.FLUSH_BITS`` or 0); return
    the bits it had. The backend's threads compute under their caller's bits (:mod:`.fpmode`)."""
    return int(fpmode.swap_mode(bits))


def get_num_threads() -> int:
    """Threads of the BLAS products (what the loops-or-BLAS cost model assumes)."""
    return blas.blas_threads()
