"""One trial: a pure function (config, data) -> (metrics, history, weights), and its row.

``train_trial`` builds the recipe's model, trains it and scores it on the validation data; it
touches no file and no global state, so the same call gives the same result on any worker.
``run_trials`` runs a batch of trials where it is called (a Dask worker or this process) and
turns each into a row: the trial's error instead of metrics when it failed, the seconds it
took, the worker it ran on and the thread counts that fastnn, BLAS and OpenMP actually used.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import TrainingDivergedError
from .space import complete


class SweepWarning(UserWarning):
    """The sweep runs differently than asked (no Dask; threads not as pinned; too many workers)."""


#: Metrics of a trial and whether larger is better ("max") or smaller ("min").
METRICS: dict[str, str] = {
    "val_accuracy": "max",  # on the validation data
    "val_loss": "min",
    "train_accuracy": "max",  # after the last epoch
    "train_loss": "min",  # mean over the last epoch's batches
}
#: Short names: the validation metrics are what a sweep compares.
METRIC_ALIASES = {"accuracy": "val_accuracy", "loss": "val_loss"}


def metric_name(name: str) -> str:
    """The ``METRICS`` name of ``name`` (``"accuracy"`` is ``"val_accuracy"``), or ValueError."""
    full = METRIC_ALIASES.get(name, name)
    if full not in METRICS:
        valid = ", ".join([*METRIC_ALIASES, *METRICS])
        raise ValueError(f"unknown metric {name!r}; valid: {valid}")
    return full


HISTORY_KEYS = ("loss", "accuracy", "seconds", "lr")


@dataclass(frozen=True)
class SweepData:
    """What every trial trains and scores on; sent to each worker once.

    Parameters
    ----------
    X : ndarray, shape (n_samples, n_features)
    y : ndarray of int, shape (n_samples,)
        Class labels 0 .. n_classes - 1.
    X_val : ndarray, shape (n_val, n_features)
    y_val : ndarray of int, shape (n_val,)
        The metric of a sweep is measured here, never on the test set.
    n_classes : int, optional
        Default: the largest label + 1.
    """

    X: np.ndarray
    y: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    n_classes: int = field(default=0)

    def __post_init__(self) -> None:
        for name in ("X", "X_val"):
            if np.ndim(getattr(self, name)) != 2:
                raise ValueError(f"{name} must be 2-D (n_samples, n_features)")
        for x, y, name in ((self.X, self.y, "y"), (self.X_val, self.y_val, "y_val")):
            if np.ndim(y) != 1 or len(y) != len(x):
                raise ValueError(f"{name} must hold one label per row of X ({len(x)})")
        if self.X.shape[1] != self.X_val.shape[1]:
            raise ValueError(f"X has {self.X.shape[1]} features, X_val {self.X_val.shape[1]}")
        if not self.n_classes:
            top = max(int(np.max(self.y)), int(np.max(self.y_val)))
            object.__setattr__(self, "n_classes", top + 1)

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    def describe(self) -> dict[str, int]:
        """Sizes that identify the data in a results file (``resume`` checks them)."""
        return {"n_train": len(self.X), "n_val": len(self.X_val),
                "n_features": self.n_features, "n_classes": self.n_classes}  # fmt: skip


@dataclass
class TrialOutcome:
    """What a trial returns: ``metrics`` (``METRICS`` names), per-epoch ``history``, ``weights``
    (W0, b0, W1, b1, ... as ``Sequential.get_weights``)."""

    metrics: dict[str, float | None]
    history: dict[str, Any]
    weights: list[np.ndarray]
    epochs: int


def _finite(value: object) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def build_model(config: Mapping[str, Any], n_features: int, n_classes: int):  # noqa: ANN201
    """The recipe's ``(model, optimizer, schedule callbacks)``, with the name checks ``build``
    leaves out (it reads any optimizer name but "adam" as SGD)."""
    from ..optimizers import OPTIMIZERS
    from ..recipes import build

    name = config["optimizer"]
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")
    return build(config, n_features, n_classes)


def train_trial(
    config: Mapping[str, Any], data: SweepData, backend: str | None = None
) -> TrialOutcome:
    """Train one configuration and score it on the validation data.

    Parameters
    ----------
    config : mapping
        Recipe keys (``fastnn.sweep.KEYS``); missing keys come from ``MNIST_98``.
    data : SweepData
    backend : str, optional
        fastnn backend of the fit (default: ``fastnn.get_backend()``).

    Returns
    -------
    TrialOutcome

    Raises
    ------
    TrainingDivergedError
        The loss became NaN or infinite.
    ValueError, TypeError
        A configuration the recipe cannot build or train.
    """
    config = complete(config)
    model, optimizer, schedule = build_model(config, data.n_features, data.n_classes)
    history = model.fit(
        data.X, data.y, loss=config["loss"], optimizer=optimizer,
        batch_size=config["batch_size"], epochs=config["epochs"], seed=config["seed"],
        callbacks=schedule, backend=backend,
    )  # fmt: skip
    scores = model.evaluate(data.X_val, data.y_val)
    metrics = {
        "val_accuracy": _finite(scores.get("accuracy")),
        "val_loss": _finite(scores["loss"]),
        "train_accuracy": _finite(history.accuracy[-1] if history.accuracy else None),
        "train_loss": _finite(history.loss[-1] if history.loss else None),
    }
    curves = {k: v for k, v in history.history.items() if k in HISTORY_KEYS}
    return TrialOutcome(metrics, curves, model.get_weights(), history.epochs)


def worker_name() -> str:
    """The Dask worker's address, else ``host:pid`` of this process."""
    if "distributed" in sys.modules:
        try:
            from distributed import get_worker

            return str(get_worker().address)
        except (ValueError, ImportError):  # not inside a worker task
            pass
    return f"{socket.gethostname()}:{os.getpid()}"


def threads_seen() -> dict[str, Any]:
    """Thread counts in force in this process: fastnn's setting, every BLAS and OpenMP pool
    threadpoolctl sees, Numba's pool when Numba is loaded; ``ok``: all of them agree with
    fastnn's setting (None when ``fastnn.set_num_threads`` was never called: nothing to check)."""
    from threadpoolctl import threadpool_info

    from .. import threads
    from ..threads import get_num_threads

    pools = threadpool_info()
    seen: dict[str, Any] = {"fastnn": get_num_threads()}
    for api in ("blas", "openmp"):
        seen[api] = sorted({int(p["num_threads"]) for p in pools if p.get("user_api") == api})
    if "numba" in sys.modules:
        seen["numba"] = int(sys.modules["numba"].get_num_threads())
    counts = [*seen["blas"], *seen["openmp"], seen.get("numba", seen["fastnn"])]
    pinned = threads._num_threads is not None
    seen["ok"] = all(n == seen["fastnn"] for n in counts) if pinned else None
    return seen


def run_trials(
    trials: Sequence[tuple[int, Mapping[str, Any]]],
    data: SweepData,
    metric: str = "val_accuracy",
    backend: str | None = None,
    trial: Callable[..., TrialOutcome] | None = None,
) -> tuple[list[dict[str, Any]], tuple[int, list[np.ndarray]] | None]:
    """Run a batch of ``(trial id, config)`` here; one Dask task runs one batch.

    Returns
    -------
    rows : list of dict
        One row per trial (see ``fastnn.sweep.results``).
    best : (trial id, weights) or None
        The weights of the batch's best trial by ``metric`` only: a batch sends one model
        back to the client, not one per trial.
    """
    trial = trial or train_trial
    _numba_threads_here()
    goal = METRICS[metric_name(metric)]
    rows, best, best_value = [], None, None
    for trial_id, config in trials:
        row, outcome = _one_row(trial_id, config, data, backend, trial)
        rows.append(row)
        value = row["metrics"].get(metric_name(metric)) if outcome is not None else None
        if value is not None and (best_value is None or is_better(value, best_value, goal)):
            best, best_value = (trial_id, outcome.weights), value
    return rows, best


def is_better(value: float, than: float, goal: str) -> bool:
    """Strictly better: larger for a "max" metric, smaller for a "min" one."""
    return value > than if goal == "max" else value < than


def _one_row(trial_id: int, config: Mapping[str, Any], data: SweepData, backend, trial):  # noqa: ANN001, ANN202
    row: dict[str, Any] = {"trial": trial_id, "status": "ok", "config": dict(config),
                           "metrics": {}, "epochs": 0, "error": None}  # fmt: skip
    outcome = None
    t0 = time.perf_counter()
    try:
        outcome = trial(config, data, backend=backend)
        row.update(metrics=outcome.metrics, epochs=outcome.epochs, history=outcome.history)
    except TrainingDivergedError as exc:
        row.update(status="failed", epochs=exc.epoch - 1, error=f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - a bad config or a bug: a row, and the sweep goes on
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    row["seconds"] = time.perf_counter() - t0
    row["worker"] = worker_name()
    row["threads"] = threads_seen()
    return row, outcome


def _numba_threads_here() -> None:
    """Numba's thread count is per thread: give this (task) thread fastnn's setting too."""
    numba = sys.modules.get("numba")
    if numba is not None:
        from ..threads import get_num_threads

        numba.set_num_threads(min(get_num_threads(), numba.config.NUMBA_NUM_THREADS))


def pin_threads(n: int) -> dict[str, Any]:
    """Hold fastnn, BLAS and OpenMP in this process to ``n`` threads; returns ``threads_seen``.

    threadpoolctl only limits the libraries already loaded, so SciPy's BLAS and every fastnn
    backend are loaded first: one loaded later would start with its own default.
    """
    from threadpoolctl import threadpool_limits

    from ..backends import available_backends
    from ..threads import set_num_threads, thread_pools

    thread_pools(load_blas=True)
    available_backends()
    set_num_threads(n)
    # set_num_threads limits OpenMP before the backends' setters run, and Numba's first
    # set_num_threads launches its OpenMP pool, which resets OpenMP to all cores: limit again.
    threadpool_limits(limits=n)
    return threads_seen()
