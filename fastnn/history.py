"""What ``fit`` records: per-epoch metrics plus iteration and epoch counts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class History:
    """The record of one ``fit``.

    An *iteration* is one forward + backward pass and one update on one batch; an *epoch* is one
    pass over all samples, ``iterations_per_epoch = ceil(n_samples / batch_size)``.

    Attributes
    ----------
    loss, accuracy, val_loss, val_accuracy : list of float
        One entry per epoch (``accuracy`` only for classifiers; ``val_*`` with validation data).
        ``loss`` is the mean training loss over the epoch's batches, weighted by batch size.
    seconds : list of float
        Training time of each epoch (metrics evaluation excluded, see ``eval_seconds``).
    eval_seconds : list of float
        Time spent computing the per-epoch metrics.
    iterations : int
        Total iterations (batches) so far.
    epochs : int
        Epochs completed.
    batch_size, n_samples, iterations_per_epoch : int
    diagnostics : list of dict
        Per-epoch gradient/weight statistics when ``fit(..., diagnostics=True)``.
    """

    batch_size: int = 0
    n_samples: int = 0
    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    eval_seconds: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    diagnostics: list[dict] = field(default_factory=list)
    iterations: int = 0
    epochs: int = 0

    @property
    def iterations_per_epoch(self) -> int:
        return math.ceil(self.n_samples / self.batch_size) if self.batch_size else 0

    @property
    def history(self) -> dict[str, list[float]]:
        """Keras-style dict of the per-epoch series that have values."""
        keys = ("loss", "accuracy", "val_loss", "val_accuracy", "seconds", "lr")
        return {k: list(getattr(self, k)) for k in keys if getattr(self, k)}

    def to_dict(self) -> dict:
        """Everything, JSON-serializable."""
        return {
            **self.history,
            "diagnostics": self.diagnostics,
            "iterations": self.iterations,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "n_samples": self.n_samples,
            "iterations_per_epoch": self.iterations_per_epoch,
        }

    def plot(self, path: str) -> None:
        """Write loss and accuracy curves (train and validation) to a PNG file.

        Needs matplotlib (``pip install fastnn[plot]``).
        """
        from .plotting import plot_history

        plot_history(self, path)
