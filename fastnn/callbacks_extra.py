"""More callbacks: stop when a metric stops improving, save the model as it trains."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ._validation import check_positive
from .callbacks import Callback

_MODES = ("auto", "min", "max")


class _Monitor:
    """Tracks the best value of one metric of the epoch logs (``loss``, ``val_accuracy``...)."""

    def __init__(self, monitor: str, mode: str, min_delta: float) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"monitor must be a metric name such as 'val_loss', got {monitor!r}")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.monitor = monitor
        self.mode = mode
        self.min_delta = check_positive("min_delta", min_delta, allow_zero=True)
        self.best = math.inf if mode == "min" else -math.inf

    def value(self, logs: dict[str, float]) -> float:
        if self.monitor not in logs:
            raise KeyError(
                f"monitored metric {self.monitor!r} is not in the epoch logs "
                f"{sorted(logs)}; validation metrics need fit(validation_data=...)"
            )
        return float(logs[self.monitor])

    def improved(self, value: float) -> bool:
        """Whether ``value`` beats the best so far by more than ``min_delta`` (then keep it)."""
        if not math.isfinite(value):
            return False
        better = (value < self.best - self.min_delta if self.mode == "min"
                  else value > self.best + self.min_delta)  # fmt: skip
        if better:
            self.best = value
        return better


class EarlyStopping(Callback):
    """Stop training when a monitored metric has not improved for ``patience`` epochs.

    Parameters
    ----------
    monitor : str, default "val_loss"
        A key of the epoch logs: ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``.
    patience : int, default 5
        Stop after this many epochs in a row without improvement (0: at the first one).
    restore_best : bool, default True
        At the end of training, put back the weights of the best epoch.
    min_delta : float, default 0.0
        Smallest change that counts as an improvement.
    mode : {"auto", "min", "max"}, default "auto"
        "auto": maximise metrics whose name contains "acc", minimise the others.

    Attributes
    ----------
    best : float
        Best value seen.
    best_epoch : int or None
        0-based epoch of ``best``.
    stopped_epoch : int or None
        0-based epoch after which training stopped (None if it ran to the end).
    """

    def __init__(
        self, monitor: str = "val_loss", patience: int = 5, restore_best: bool = True,
        min_delta: float = 0.0, mode: str = "auto",
    ) -> None:  # fmt: skip
        self._monitor = _Monitor(monitor, mode, min_delta)
        self.monitor = monitor
        self.patience = check_positive("patience", patience, integer=True, allow_zero=True)
        self.restore_best = bool(restore_best)

    @property
    def best(self) -> float:
        return self._monitor.best

    def on_train_begin(self) -> None:
        self._monitor.best = math.inf if self._monitor.mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self._wait = 0
        self._best_weights: list[np.ndarray] | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        if self._monitor.improved(self._monitor.value(logs)):
            self.best_epoch = epoch
            self._wait = 0
            if self.restore_best:
                self._best_weights = self.model.get_weights()
            return
        self._wait += 1
        if self._wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self) -> None:
        if self.restore_best and self._best_weights is not None:
            self.model.set_weights(self._best_weights)


class ModelCheckpoint(Callback):
    """Save the model after every epoch, or only when a monitored metric improves.

    Parameters
    ----------
    path : str or path-like
        Destination file; may contain ``{epoch}`` (1-based) and any logged metric, e.g.
        ``"model-{epoch:02d}-{val_accuracy:.4f}.npz"``.
    save_best_only : bool, default False
        Save only when ``monitor`` improves (so ``path`` holds the best model).
    monitor : str, default "val_loss"
        Metric for ``save_best_only``.
    mode : {"auto", "min", "max"}, default "auto"
    include_optimizer : bool, default True
        Store the optimizer state so training can resume from the file.

    Attributes
    ----------
    saved : list of str
        Paths written, in order.
    """

    def __init__(
        self, path: str | os.PathLike[str], save_best_only: bool = False,
        monitor: str = "val_loss", mode: str = "auto", include_optimizer: bool = True,
    ) -> None:  # fmt: skip
        self.path = os.fspath(path)
        self.save_best_only = bool(save_best_only)
        self._monitor = _Monitor(monitor, mode, 0.0)
        self.include_optimizer = bool(include_optimizer)
        self.saved: list[str] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        if self.save_best_only and not self._monitor.improved(self._monitor.value(logs)):
            return
        try:
            target = self.path.format(epoch=epoch + 1, **logs)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"cannot fill in checkpoint path {self.path!r}: {exc}") from exc
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        self.model.save(target, include_optimizer=self.include_optimizer)
        self.saved.append(target)
