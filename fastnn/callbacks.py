"""Callbacks: code that ``fit`` calls at the start and end of training and of every epoch."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .history import History


class Callback:
    """Base class. Override the hooks you need; ``fit`` calls them in this order:

    ``on_train_begin()``, then per epoch ``on_epoch_begin(epoch)``, ``on_progress(...)`` after
    each slice of batches (only when ``wants_progress``), ``on_epoch_end(epoch, logs)``; finally
    ``on_train_end()``. ``epoch`` counts from 0. Set ``self.model.stop_training = True`` to stop.

    Attributes
    ----------
    model : Sequential
    history : History
    params : dict
        ``epochs``, ``batch_size``, ``n_samples``, ``iterations_per_epoch``.
    """

    #: True makes ``fit`` run each epoch in slices so that ``on_progress`` is called.
    wants_progress = False

    def set_context(self, model: Any, history: History, params: dict[str, Any]) -> None:
        self.model = model
        self.history = history
        self.params = params

    def on_train_begin(self) -> None:
        pass

    def on_epoch_begin(self, epoch: int) -> None:
        pass

    def on_progress(
        self, epoch: int, iterations: int, samples: int, mean_loss: float,
        accuracy: float | None = None,
    ) -> None:  # fmt: skip
        """After a slice of batches: ``iterations`` and ``samples`` done so far in the epoch,
        their mean loss and, for classifiers, the running accuracy on those samples (each
        slice scored with the weights after its last update), else None."""

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        pass

    def on_train_end(self) -> None:
        pass


class ProgressBar(Callback):
    """A tqdm bar per epoch: iterations, running loss and accuracy, samples/s; then a summary line.

    Parameters
    ----------
    file : file-like, optional
        Where to write (default: stderr, as tqdm does).
    """

    wants_progress = True

    def __init__(self, file: Any = None) -> None:
        self.file = file
        self._bar = None

    def on_epoch_begin(self, epoch: int) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=self.params["iterations_per_epoch"],
            desc=f"epoch {epoch + 1}/{self.params['epochs']}",
            unit="it",
            file=self.file,
            leave=False,
            dynamic_ncols=True,
        )
        self._done = 0
        self._t0 = time.perf_counter()

    def on_progress(
        self, epoch: int, iterations: int, samples: int, mean_loss: float,
        accuracy: float | None = None,
    ) -> None:  # fmt: skip
        if self._bar is None:
            return
        self._bar.update(iterations - self._done)
        self._done = iterations
        rate = samples / max(time.perf_counter() - self._t0, 1e-9)
        stats = {"loss": f"{mean_loss:.4f}"}
        if accuracy is not None:
            stats["acc"] = f"{accuracy:.4f}"
        stats["samples_s"] = f"{rate:,.0f}"
        self._bar.set_postfix(stats)

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        parts = [f"epoch {epoch + 1}/{self.params['epochs']}"]
        parts += [f"{k} {v:.4f}" for k, v in logs.items() if k != "seconds"]
        if "seconds" in logs:
            parts.append(f"{logs['seconds']:.2f}s")
        print(" - ".join(parts), file=self.file if self.file is not None else sys.stdout)
