"""Optimizers: how a gradient becomes a step. The same formulas as PyTorch's SGD and Adam.

An optimizer object carries its state (momentum velocity, Adam moments, step count) from one
``fit`` to the next, so calling ``fit`` twice continues training rather than restarting it.

Every hyper-parameter is a validating property: ``opt.lr = -0.1`` or ``opt.betas = (1, 1)``
raises at once, naming the setting, exactly as the constructor does. A learning-rate schedule
or a user changing a setting between two ``fit`` calls can therefore never hand a kernel a
value it was not meant to take.
"""

from __future__ import annotations

import numpy as np

from . import _codes as C
from ._validation import check_bool, check_positive


class Optimizer:
    """Base class: hyper-parameters plus the state that survives between ``fit`` calls."""

    code = C.OPT_SGD

    def __init__(self, lr: float, weight_decay: float) -> None:
        self.lr = lr
        self.weight_decay = weight_decay
        self.state: list[np.ndarray] | None = None
        self.step = 0

    @property
    def lr(self) -> float:
        """Learning rate, a finite number > 0."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = check_positive("lr", value)

    @property
    def weight_decay(self) -> float:
        """L2 penalty added to the gradient, a finite number >= 0."""
        return self._weight_decay

    @weight_decay.setter
    def weight_decay(self, value: float) -> None:
        self._weight_decay = check_positive("weight_decay", value, allow_zero=True)

    def hyper(self) -> np.ndarray:
        """The float64 hyper-parameter vector of the kernel contract (``fastnn._codes.H_*``)."""
        h = np.zeros(C.N_HYPER)
        h[C.H_LR] = self.lr
        h[C.H_WEIGHT_DECAY] = self.weight_decay
        h[C.H_BETA1], h[C.H_BETA2], h[C.H_EPS] = 0.9, 0.999, 1e-8
        return h

    def reset(self) -> None:
        """Forget the state (velocity, moments, step count)."""
        self.state = None
        self.step = 0


class SGD(Optimizer):
    """Stochastic gradient descent, with optional (Nesterov) momentum and weight decay.

    g = grad + weight_decay * w;  v = momentum * v + g;
    w -= lr * (g + momentum * v if nesterov else v)   (plain ``w -= lr * g`` when momentum = 0).

    Parameters
    ----------
    lr : float, default 0.01
    momentum : float, default 0.0
    nesterov : bool, default False
    weight_decay : float, default 0.0
        L2 penalty added to the gradient.
    """

    def __init__(
        self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__(lr, weight_decay)
        self._nesterov = False
        self.momentum = momentum
        self.nesterov = nesterov

    @property
    def momentum(self) -> float:
        """Momentum coefficient in [0, 1); 0 is plain gradient descent."""
        return self._momentum

    @momentum.setter
    def momentum(self, value: float) -> None:
        momentum = check_positive("momentum", value, allow_zero=True)
        if momentum >= 1:
            raise ValueError(f"momentum must be < 1, got {value!r}")
        if momentum == 0 and self._nesterov:
            raise ValueError("momentum=0 with nesterov=True: set nesterov=False first")
        self._momentum = momentum

    @property
    def nesterov(self) -> bool:
        """Nesterov momentum (needs momentum > 0)."""
        return self._nesterov

    @nesterov.setter
    def nesterov(self, value: bool) -> None:
        nesterov = check_bool("nesterov", value)
        if nesterov and self._momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self._nesterov = nesterov

    @property
    def code(self) -> int:  # type: ignore[override]
        """The kernel's optimizer code: follows ``momentum`` when it is changed."""
        return C.OPT_MOMENTUM if self._momentum > 0 else C.OPT_SGD

    def hyper(self) -> np.ndarray:
        h = super().hyper()
        h[C.H_MOMENTUM] = self.momentum
        h[C.H_NESTEROV] = float(self.nesterov)
        return h

    def __repr__(self) -> str:
        return f"SGD(lr={self.lr}, momentum={self.momentum}, nesterov={self.nesterov})"


class Adam(Optimizer):
    """Adam: per-parameter steps from running means of the gradient and its square.

    Parameters
    ----------
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0.0
        L2 penalty added to the gradient (as ``torch.optim.Adam``).
    """

    code = C.OPT_ADAM

    def __init__(
        self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__(lr, weight_decay)
        self.betas = betas
        self.eps = eps

    @property
    def betas(self) -> tuple[float, float]:
        """Decay rates of the two moment averages, each in [0, 1)."""
        return self._betas

    @betas.setter
    def betas(self, value: tuple[float, float]) -> None:
        try:
            pair = [check_positive("betas", b, allow_zero=True) for b in value]
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"betas must be two numbers in [0, 1), got {value!r}") from None
        if len(pair) != 2 or not all(b < 1 for b in pair):
            raise ValueError(f"betas must be two numbers in [0, 1), got {value!r}")
        self._betas = (pair[0], pair[1])

    @property
    def eps(self) -> float:
        """Added to the denominator's square root, a finite number > 0."""
        return self._eps

    @eps.setter
    def eps(self, value: float) -> None:
        self._eps = check_positive("eps", value)

    def hyper(self) -> np.ndarray:
        h = super().hyper()
        h[C.H_BETA1], h[C.H_BETA2], h[C.H_EPS] = self.betas[0], self.betas[1], self.eps
        return h

    def __repr__(self) -> str:
        return f"Adam(lr={self.lr}, betas={self.betas})"


OPTIMIZERS = {"sgd": SGD, "momentum": SGD, "adam": Adam}


def get_optimizer(optimizer: str | Optimizer | None) -> Optimizer:
    """An optimizer from a name (``"sgd"``, ``"momentum"``, ``"adam"``), an instance, or None
    (``SGD(lr=0.01)``)."""
    if optimizer is None:
        return SGD()
    if isinstance(optimizer, Optimizer):
        return optimizer
    if not isinstance(optimizer, str) or optimizer.lower() not in OPTIMIZERS:
        raise ValueError(
            f"unknown optimizer {optimizer!r}; valid names: {', '.join(sorted(OPTIMIZERS))}"
        )
    if optimizer.lower() == "momentum":
        return SGD(momentum=0.9)
    return OPTIMIZERS[optimizer.lower()]()
