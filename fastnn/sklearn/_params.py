"""Hyper-parameters of the scikit-learn estimators: checks, and their mapping onto fastnn.

scikit-learn's MLP and fastnn scale their objectives differently; the mapping below makes
fastnn take *the same steps* as scikit-learn (verified against it in ``tests/test_sklearn.py``).

On a batch of ``n_b`` samples scikit-learn's loss gradient is ``(output - target) / n_b`` per
output unit: ``s`` times fastnn's. Its reported loss is ``c`` times fastnn's:

- multi-class (softmax): fastnn ``cross_entropy``; s = 1, c = 1.
- binary and multi-label, k sigmoid outputs: fastnn ``binary_cross_entropy`` averages over the
  k outputs too, scikit-learn sums them; s = k, c = k.
- regression, k outputs: fastnn ``mse`` is the mean of (o - t)^2 over n*k, scikit-learn's loss
  is half of it; s = k / 2 (its gradient is not scaled by 1/k), c = 1/2.

scikit-learn's L2 term adds ``alpha * W / n_b`` to the gradient of the weights. With
``weight_decay = alpha / (s * batch_size)``:

- SGD with ``lr = s * learning_rate_init`` steps by exactly scikit-learn's update (momentum and
  Nesterov momentum too: PyTorch's form equals scikit-learn's while the learning rate is fixed);
- Adam is invariant to the gradient's scale except for ``eps``, so ``eps = epsilon / s``.

Differences that remain, all documented in ``docs/coming_from_sklearn.md``: fastnn's weight decay
also shrinks the intercepts (scikit-learn's ``alpha`` spares them); the ragged last batch of an
epoch is decayed with ``batch_size``, not its own size; Adam adds ``eps`` to ``sqrt(v_hat)``
(PyTorch) where scikit-learn adds it to ``sqrt(v)``. (A learning-rate schedule with momentum
is made exact by :func:`keep_velocity`.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Integral, Real

import numpy as np

import fastnn

#: Hidden-layer activation names -> fastnn's: scikit-learn's ("logistic" for the sigmoid), then
#: every other hidden activation of fastnn's registry under its own name (leaky_relu, gelu, ...).
ACTIVATIONS: dict[str, str] = {
    "logistic": "sigmoid",
    **{name: name for name in fastnn.layers.ACTIVATIONS if name not in ("sigmoid", "softmax")},
}
SOLVERS = ("sgd", "adam")
LEARNING_RATES = ("constant", "invscaling", "adaptive")
DTYPES = ("float32", "float64")
AUTO_BATCH = 200  # scikit-learn's batch_size="auto" is min(200, n_samples)
MIN_ADAPTIVE_LR = 1e-6  # scikit-learn stops instead of dividing a rate this small by 5


def _number(
    est: object, name: str, low: float, high: float = math.inf, *, integer: bool = False,
    low_open: bool = False, high_open: bool = False,
) -> float:  # fmt: skip
    """The parameter ``name`` of ``est``, checked to lie in the interval [low, high]."""
    value = getattr(est, name)
    kind = Integral if integer else Real
    ok = isinstance(value, kind) and not isinstance(value, bool) and not np.isnan(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high
        )
    if not ok:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        what = "an int" if integer else "a float"
        raise ValueError(
            f"The {name!r} parameter of {type(est).__name__} must be {what} in the range "
            f"{left}{low}, {high}{right}. Got {value!r} instead."
        )
    return value


def _choice(est: object, name: str, valid: Iterable[str]) -> str:
    value = getattr(est, name)
    valid = tuple(valid)
    if not isinstance(value, str) or value not in valid:
        extra = ""
        if name == "solver" and value == "lbfgs":
            extra = " fastnn trains by gradient descent only; use 'adam' or 'sgd'."
        raise ValueError(
            f"The {name!r} parameter of {type(est).__name__} must be one of "
            f"{', '.join(map(repr, valid))}. Got {value!r} instead.{extra}"
        )
    return value


def _flag(est: object, name: str) -> bool:
    value = getattr(est, name)
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(
            f"The {name!r} parameter of {type(est).__name__} must be a bool. Got {value!r}."
        )
    return bool(value)


def check_params(est: object) -> tuple[int, ...]:
    """Check every hyper-parameter of ``est``; return the hidden layer sizes as a tuple.

    Called at the start of ``fit``/``partial_fit`` (scikit-learn estimators never validate in
    ``__init__`` or ``set_params``).
    """
    hidden = est.hidden_layer_sizes
    sizes = list(hidden) if isinstance(hidden, Iterable) else [hidden]
    if not all(isinstance(h, Integral) and not isinstance(h, bool) and h > 0 for h in sizes):
        raise ValueError(f"hidden_layer_sizes must be positive integers, got {hidden!r}")
    _choice(est, "activation", ACTIVATIONS)
    _choice(est, "solver", SOLVERS)
    _choice(est, "learning_rate", LEARNING_RATES)
    _choice(est, "dtype", DTYPES)
    if "loss" in est.get_params(deep=False):  # MLPRegressor only
        _choice(est, "loss", ("squared_error",))
    if est.batch_size not in ("auto", "full"):
        if isinstance(est.batch_size, str):
            raise ValueError(f"batch_size must be 'auto', 'full' or an int, got {est.batch_size!r}")
        _number(est, "batch_size", 1, integer=True)
    _number(est, "alpha", 0)
    _number(est, "learning_rate_init", 0, low_open=True)
    _number(est, "power_t", 0)
    _number(est, "max_iter", 1, integer=True)
    _number(est, "tol", 0)
    _number(est, "momentum", 0, 1, high_open=True)
    _number(est, "validation_fraction", 0, 1, high_open=True)
    _number(est, "beta_1", 0, 1, high_open=True)
    _number(est, "beta_2", 0, 1, high_open=True)
    _number(est, "epsilon", 0, low_open=True)
    if est.n_iter_no_change != np.inf:
        _number(est, "n_iter_no_change", 1, integer=True)
    for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping"):
        _flag(est, name)
    if est.backend is not None and not isinstance(est.backend, str):
        raise ValueError(f"backend must be None or a backend name, got {est.backend!r}")
    return tuple(int(h) for h in sizes)


def resolve_batch_size(batch_size: int | str, n_samples: int) -> int:
    """Rows per batch: "auto" is min(200, n), "full" is n, an int is clipped to n."""
    if batch_size == "auto":
        return min(AUTO_BATCH, n_samples)
    if batch_size == "full":
        return n_samples
    return min(int(batch_size), n_samples)


def make_optimizer(est: object, grad_scale: float) -> fastnn.optimizers.Optimizer:
    """A fastnn optimizer taking scikit-learn's steps (see the module docstring)."""
    if est.solver == "adam":
        return fastnn.Adam(
            lr=est.learning_rate_init, betas=(est.beta_1, est.beta_2),
            eps=est.epsilon / grad_scale,
        )  # fmt: skip
    momentum = float(est.momentum)
    return fastnn.SGD(
        lr=est.learning_rate_init * grad_scale, momentum=momentum,
        nesterov=bool(est.nesterovs_momentum) and momentum > 0,
    )  # fmt: skip


def set_alpha(
    opt: fastnn.optimizers.Optimizer, alpha: float, grad_scale: float, batch_size: int
) -> None:
    """scikit-learn's L2 penalty ``alpha`` as fastnn weight decay for batches of this size."""
    opt.weight_decay = float(alpha) / (grad_scale * batch_size)


def keep_velocity(opt: fastnn.optimizers.Optimizer, lr_before: float) -> None:
    """Rescale the momentum velocity after a learning-rate change, as scikit-learn keeps it.

    scikit-learn's velocity is ``mu v - lr g`` (the rate inside), fastnn's (PyTorch's) is
    ``mu v + g`` with the rate applied at the step: equal while the rate is constant. After
    ``lr_before -> opt.lr`` the carried velocity is multiplied by ``lr_before / opt.lr`` so the
    next steps are scikit-learn's. Called from ``on_epoch_end``, where ``opt.state`` holds the
    live arrays of the running ``fit``.
    """
    if not isinstance(opt, fastnn.SGD) or not opt.momentum or opt.state is None:
        return
    if opt.lr == lr_before:
        return
    # Optimizer state is [velocities (W then b)..., second moments...] (Workspace.state_arrays).
    for velocity in opt.state[: len(opt.state) // 2]:
        velocity *= lr_before / opt.lr
