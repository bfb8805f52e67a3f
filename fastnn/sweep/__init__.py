"""Hyper-parameter sweeps of fastnn recipes, on a Dask cluster or in this process.

::

    from fastnn.sweep import SweepData, sweep
    result = sweep({"hidden": [64, 128], "lr": [0.05, 0.1]}, SweepData(X, y, X_val, y_val),
                   base={"epochs": 2}, results="sweep.json", save="best.npz")
    result.best["config"], result.model.predict(X_test)

Each trial is a pure function, ``train_trial(config, data) -> TrialOutcome`` (metrics,
history, weights). Dask (``pip install 'fastnn[dask]'``) is optional: without it the trials
run here one after another, and the sweep says so. See ``docs/sweeps.md``.
"""

from __future__ import annotations

from .cluster import cores, default_cluster
from .results import SweepResults
from .run import SweepResult, model_from, sweep
from .space import BASE, KEYS, LogUniform, Uniform, config_key, grid, parse_assignment, sample
from .trial import (
    METRICS,
    SweepData,
    SweepWarning,
    TrialOutcome,
    metric_name,
    run_trials,
    threads_seen,
    train_trial,
)

__all__ = [
    "BASE",
    "KEYS",
    "METRICS",
    "LogUniform",
    "SweepData",
    "SweepResult",
    "SweepResults",
    "SweepWarning",
    "TrialOutcome",
    "Uniform",
    "config_key",
    "cores",
    "default_cluster",
    "grid",
    "metric_name",
    "model_from",
    "parse_assignment",
    "run_trials",
    "sample",
    "sweep",
    "threads_seen",
    "train_trial",
]
