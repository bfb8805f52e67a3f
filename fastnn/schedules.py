"""Learning-rate schedules: callbacks that set the optimizer's learning rate before each epoch.

A large step early moves fast; a small step late settles into a minimum. Each schedule is a
:class:`~fastnn.callbacks.Callback`: pass it to ``fit(..., callbacks=[...])``. The learning
rate the optimizer had when training began is the base rate ``lr0``; ``History.lr`` records
the rate of every epoch.

Examples
--------
>>> import fastnn
>>> from fastnn.schedules import CosineDecay
>>> sched = CosineDecay()
>>> [round(sched.rate(epoch, lr0=0.1, epochs=4), 4) for epoch in range(4)]
[0.0962, 0.0691, 0.0309, 0.0038]
"""

from __future__ import annotations

import math

from ._validation import check_positive
from .callbacks import Callback


class LearningRateSchedule(Callback):
    """Base class: override :meth:`rate`.

    The base rate ``lr0`` is the optimizer's learning rate at the first ``fit`` that uses the
    schedule (a second ``fit`` continues from the same base, epochs counted from 0 again).
    """

    def __init__(self) -> None:
        self.lr0: float | None = None

    def rate(self, epoch: int, lr0: float, epochs: int) -> float:
        """Learning rate of ``epoch`` (0-based) out of ``epochs``, from the base rate ``lr0``."""
        raise NotImplementedError

    def on_train_begin(self) -> None:
        if self.lr0 is None:
            self.lr0 = self.model.optimizer.lr

    def on_epoch_begin(self, epoch: int) -> None:
        lr = float(self.rate(epoch, self.lr0, self.params["epochs"]))
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"{type(self).__name__} gave learning rate {lr} at epoch {epoch}")
        self.model.optimizer.lr = lr


class StepDecay(LearningRateSchedule):
    """``lr = lr0 * gamma ** (epoch // step_size)``: divide the rate every few epochs.

    Parameters
    ----------
    step_size : int
        Epochs between two decays.
    gamma : float, default 0.1
        Factor applied at each decay.
    """

    def __init__(self, step_size: int, gamma: float = 0.1) -> None:
        super().__init__()
        self.step_size = check_positive("step_size", step_size, integer=True)
        self.gamma = check_positive("gamma", gamma)

    def rate(self, epoch: int, lr0: float, epochs: int) -> float:
        return lr0 * self.gamma ** (epoch // self.step_size)


class ExponentialDecay(LearningRateSchedule):
    """``lr = lr0 * gamma ** epoch``: a smooth geometric decay.

    Parameters
    ----------
    gamma : float
        Factor per epoch, e.g. 0.7.
    """

    def __init__(self, gamma: float) -> None:
        super().__init__()
        self.gamma = check_positive("gamma", gamma)

    def rate(self, epoch: int, lr0: float, epochs: int) -> float:
        return lr0 * self.gamma**epoch


class CosineDecay(LearningRateSchedule):
    """Half a cosine from ``lr0`` down to ``min_lr`` over the run.

    ``lr = min_lr + (lr0 - min_lr) * (1 + cos(pi * t)) / 2`` with ``t = (epoch + 1/2) / total``:
    each epoch takes the rate of its midpoint, so a short run starts near ``lr0`` and ends near
    ``min_lr`` (with ``t = epoch / total`` a 4-epoch run would end at 15% of ``lr0``).

    Parameters
    ----------
    total_epochs : int, optional
        Length of the decay; default: the ``epochs`` of the ``fit``. Later epochs stay at
        ``min_lr``.
    min_lr : float, default 0.0
        Final rate (a 0 rate is replaced by a tiny positive one, as optimizers need lr > 0).
    """

    def __init__(self, total_epochs: int | None = None, min_lr: float = 0.0) -> None:
        super().__init__()
        if total_epochs is not None:
            total_epochs = check_positive("total_epochs", total_epochs, integer=True)
        self.total_epochs = total_epochs
        self.min_lr = check_positive("min_lr", min_lr, allow_zero=True)

    def rate(self, epoch: int, lr0: float, epochs: int) -> float:
        total = self.total_epochs or epochs
        t = min((epoch + 0.5) / total, 1.0)
        lr = self.min_lr + (lr0 - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))
        return max(lr, lr0 * 1e-6)
