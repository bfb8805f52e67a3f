"""Exceptions raised by fastnn."""

from __future__ import annotations


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or infinite during training.

    The model keeps the weights it had before the epoch in which this happened, so nothing
    that was learned is lost. Usual remedies: a lower learning rate, ``clip_grad_norm``,
    He/Xavier initialisation.

    Attributes
    ----------
    epoch : int
        1-based epoch in which the loss stopped being finite.
    iteration : int
        1-based iteration (batch) within that epoch.
    loss : float
        The non-finite loss value.
    """

    def __init__(self, epoch: int, iteration: int, loss: float) -> None:
        self.epoch = epoch
        self.iteration = iteration
        self.loss = loss
        super().__init__(
            f"training diverged: loss is {loss} at epoch {epoch}, iteration {iteration}; "
            "the model keeps its weights from before that epoch. Try a lower learning rate, "
            "clip_grad_norm, or He/Xavier initialisation."
        )
