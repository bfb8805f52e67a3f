"""Learning-rate schedules: callbacks that set the optimizer's learning rate.

Per-epoch schedules (:class:`LearningRateSchedule`: step, exponential, cosine) set it before
each epoch; per-iteration schedules (:class:`IterationSchedule`: :class:`OneCycle`) before
every optimizer step.

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


class IterationSchedule(Callback):
    """Base class of the schedules that set the learning rate before every optimizer step.

    ``fit`` calls :meth:`rate` with the step count (0 for the first batch of the first
    ``fit``) before each update. A model trained with one runs the per-batch loop on its
    backend's kernels (the fused epochs take one learning rate per epoch).
    """

    per_iteration = True

    def __init__(self) -> None:
        self.lr0: float | None = None
        self.steps_done = 0
        self.total: int | None = None

    def rate(self, step: int, lr0: float, total_steps: int) -> float:
        """Learning rate of optimizer step ``step`` (0-based) out of ``total_steps``."""
        raise NotImplementedError

    def on_train_begin(self) -> None:
        if self.lr0 is None:
            self.lr0 = self.model.optimizer.lr
        if self.total is None:
            self.total = self.params["epochs"] * self.params["iterations_per_epoch"]

    def next_rate(self) -> float:
        """The rate of the next step (and count it)."""
        lr = float(self.rate(self.steps_done, self.lr0, self.total))
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"{type(self).__name__} gave learning rate {lr} at step "
                             f"{self.steps_done}")  # fmt: skip
        self.steps_done += 1
        return lr


class OneCycle(IterationSchedule):
    """The one-cycle policy (Smith & Topin): warm up to ``max_lr``, then anneal far below it.

    Behaves as PyTorch's ``torch.optim.lr_scheduler.OneCycleLR`` with ``cycle_momentum=False``
    and ``three_phase=False``: step ``t`` of ``T`` has the rate

    - ``t <= pct_start * T - 1``: from ``max_lr / div_factor`` up to ``max_lr``,
    - later: from ``max_lr`` down to ``max_lr / (div_factor * final_div_factor)`` at ``T - 1``,

    each phase by half a cosine (``anneal_strategy="cos"``) or a straight line (``"linear"``).

    Parameters
    ----------
    max_lr : float, optional
        Peak rate; default: the optimizer's learning rate when training begins.
    total_steps : int, optional
        Length of the cycle in optimizer steps; default: ``epochs * iterations_per_epoch`` of
        the ``fit``. Steps past the end keep the final rate.
    pct_start : float, default 0.3
        Fraction of the cycle spent warming up.
    anneal_strategy : {"cos", "linear"}, default "cos"
    div_factor : float, default 25
        ``initial rate = max_lr / div_factor``.
    final_div_factor : float, default 1e4
        ``final rate = initial rate / final_div_factor``.
    """

    def __init__(
        self,
        max_lr: float | None = None,
        total_steps: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
    ) -> None:
        super().__init__()
        self.max_lr = None if max_lr is None else check_positive("max_lr", max_lr)
        if total_steps is not None:
            self.total = check_positive("total_steps", total_steps, integer=True)
        self.pct_start = check_positive("pct_start", pct_start)
        if not 0 < self.pct_start < 1:
            raise ValueError(f"pct_start must lie in (0, 1), got {pct_start!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        self.anneal_strategy = anneal_strategy
        self.div_factor = check_positive("div_factor", div_factor)
        self.final_div_factor = check_positive("final_div_factor", final_div_factor)

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)
        return (end - start) * pct + start

    def rate(self, step: int, lr0: float, total_steps: int) -> float:
        peak = self.max_lr if self.max_lr is not None else lr0
        initial = peak / self.div_factor
        final = initial / self.final_div_factor
        step = min(step, total_steps - 1)
        # PyTorch's phase boundaries: the peak at step pct_start * T - 1, the end at T - 1.
        warm_end = float(self.pct_start * total_steps) - 1.0
        if step <= warm_end:
            return self._anneal(initial, peak, step / warm_end if warm_end > 0 else 1.0)
        span = (total_steps - 1) - warm_end
        return self._anneal(peak, final, (step - warm_end) / span if span > 0 else 1.0)
