"""The sweep driver: trials on a Dask cluster (or in this process), rows as they finish.

Design: the data is scattered to every worker once; trials go out in tasks of
``trials_per_task`` (one task, one scheduling round trip); ``as_completed`` hands back each task
as it finishes, so its rows reach the files at once and a new best model is saved at once.
Ctrl-C cancels what is still queued and keeps every finished row; a task whose worker died
comes back as "lost" rows, which ``resume`` runs again. The Dask side is ``cluster.py``;
``distributed`` is imported only when the sweep runs on Dask.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import trial as _trial
from .cluster import NEEDS, Batch, dask_batches, positive
from .results import SweepResults
from .space import config_key, grid, sample
from .trial import (
    METRICS,
    SweepData,
    SweepWarning,
    TrialOutcome,
    is_better,
    metric_name,
    run_trials,
)


def _local_batches(chunks: list, data: SweepData, options: dict, log: Callable) -> Iterator[Batch]:
    threads = options["threads"]
    if threads is not None:
        _trial.pin_threads(positive("threads", threads))
    from ..threads import get_num_threads

    log(f"in this process, one after another ({get_num_threads()} threads)")
    for chunk in chunks:
        yield run_trials(chunk, data, options["metric"], options["backend"], options["trial"])


def _batches(chunks: list, data: SweepData, options: dict, log: Callable) -> Iterator[Batch]:
    if options["in_process"]:
        return _local_batches(chunks, data, options, log)
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        if options["client"] is not None or options["scheduler"]:
            raise ImportError(NEEDS) from exc
        n = sum(len(c) for c in chunks)
        message = (f"dask is not installed (pip install 'fastnn[dask]'): running the {n} trials "
                   "one after another in this process")  # fmt: skip
        warnings.warn(message, SweepWarning, stacklevel=4)
        return _local_batches(chunks, data, options, log)
    return dask_batches(chunks, data, options, log)


def model_from(config: Mapping[str, Any], weights: Sequence, data: SweepData):  # noqa: ANN201
    """The ``Sequential`` of a trial: its recipe's architecture with its trained ``weights``."""
    from ..losses import get_loss

    model, _, _ = _trial.build_model(config, data.n_features, data.n_classes)
    model.set_weights(weights)
    model.loss = get_loss(config["loss"])  # predict/predict_proba then act as after the fit
    return model


class _Best:
    """The best trial so far; its model is rebuilt (and saved) only when a task beats it."""

    def __init__(self, metric: str, save: str | os.PathLike[str] | None, data: SweepData,
                 store: SweepResults) -> None:  # fmt: skip
        self.metric, self.goal, self.data, self.store = metric, METRICS[metric], data, store
        self.save = None if save is None else Path(save)
        self.model = self.save_error = None
        self.row, self.value = None, None
        for row in store.rows:  # the rows of a resumed sweep
            self._consider(row)
        earlier = (store.best or {}).get("config")
        if earlier is not None and (
            self.row is None or config_key(earlier) != config_key(self.row["config"])
        ):
            store.best = None  # the earlier file's best is not among the rows kept

    def _consider(self, row: dict[str, Any]) -> bool:
        value = (row.get("metrics") or {}).get(self.metric)
        if row["status"] != "ok" or value is None:
            return False
        if self.value is not None and not is_better(value, self.value, self.goal):
            return False
        self.row, self.value = row, value
        return True

    def offer(self, rows: list[dict[str, Any]], best: tuple[int, list] | None) -> None:
        if best is None:
            return
        trial_id, weights = best
        row = next(r for r in rows if r["trial"] == trial_id)
        if not self._consider(row):
            return
        self.model = model_from(row["config"], weights, self.data)
        saved = None
        if self.save is not None:
            try:
                self.model.save(self.save)
                saved, self.save_error = str(self.save), None
            except OSError as exc:  # the sweep goes on; the caller reports it
                self.save_error = f"{self.save}: {exc}"
        self.store.best = {"trial": trial_id, "config": row["config"], "metrics": row["metrics"],
                           "saved": saved}  # fmt: skip


@dataclass
class SweepResult:
    """What ``sweep`` returns.

    Attributes
    ----------
    rows : list of dict
        Every row, earlier (resumed) ones included (see ``fastnn.sweep.results``).
    metric : str
    best : dict or None
        The best "ok" row by ``metric``.
    model : Sequential or None
        The best model, when it was trained in this call; else read from its saved file.
    n_configs, n_skipped : int
        Configurations of the sweep; those skipped because ``resume`` found them done.
    paths : dict
        "json", "csv", "md" and "model" paths written (absent when not written).
    save_error : str or None
        Why the best model could not be saved (the sweep went on).
    """

    rows: list[dict[str, Any]]
    metric: str
    best: dict[str, Any] | None
    model: Any
    n_configs: int
    n_skipped: int
    paths: dict[str, str] = field(default_factory=dict)
    save_error: str | None = None

    def count(self, status: str) -> int:
        """Rows with this status ("ok", "failed", "lost")."""
        return sum(r["status"] == status for r in self.rows)

    def top(self, k: int = 5) -> list[dict[str, Any]]:
        """The ``k`` best "ok" rows, best first."""
        goal = METRICS[self.metric]
        ok = [r for r in self.rows if r["status"] == "ok" and r["metrics"].get(self.metric)
              is not None]  # fmt: skip
        ok.sort(key=lambda r: r["metrics"][self.metric], reverse=goal == "max")
        return ok[:k]


def sweep(
    space: Mapping[str, Any],
    data: SweepData,
    *,
    n_trials: int | None = None,
    metric: str = "accuracy",
    base: Mapping[str, Any] | None = None,
    seed: int = 0,
    client: Any = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    trials_per_task: int = 1,
    in_process: bool = False,
    threads: int | None = None,
    backend: str | None = None,
    trial: Callable[..., TrialOutcome] | None = None,
    results: str | os.PathLike[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    save: str | os.PathLike[str] | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> SweepResult:
    """Grid or random search over recipe keys, on a Dask cluster or in this process.

    Parameters
    ----------
    space : mapping
        Recipe key -> list of values, distribution or fixed value (``fastnn.sweep.grid``).
    data : SweepData
        Training and validation arrays; sent to each worker once.
    n_trials : int, optional
        Random search of this many draws (times the listed seeds); default: the whole grid.
    metric : str, default "accuracy"
        What "best" means: a ``METRICS`` name ("val_accuracy", "val_loss", "train_accuracy",
        "train_loss"); "accuracy" and "loss" are short for the validation ones.
    base : mapping, optional
        Values of the keys the space leaves out (default ``MNIST_98``).
    seed : int, default 0
        Seed of the random draws.
    client : distributed.Client, optional
        An existing cluster's client.
    scheduler : str, optional
        Address of an existing cluster's scheduler (``"tcp://host:8786"``).
    n_workers, threads_per_worker : int, optional
        Without ``client`` or ``scheduler``: the ``default_cluster`` started (and closed) for
        this sweep, default ``cores()`` workers of 1 thread.
    trials_per_task : int, default 1
        Trials sent to a worker in one task: more amortises the scheduling of short trials.
    in_process : bool, default False
        Run the trials here, one after another (also the fallback without Dask, with a
        ``SweepWarning``).
    threads : int, optional
        Threads of an in-process run: ``fastnn.set_num_threads(threads)`` for this process
        (it stays set). Default: as set.
    backend : str, optional
        fastnn backend of every trial.
    trial : callable, optional
        ``(config, data, backend=) -> TrialOutcome``; default ``train_trial``.
    results : path, optional
        The results JSON (CSV and markdown beside it), written as trials finish.
    resume, overwrite : bool
        Continue an existing results file (skip its finished configurations) / replace it.
    save : path, optional
        Where the best model goes (``fastnn.load`` reads it), rewritten whenever one beats it.
    progress : bool, default True
        A tqdm bar counting the trials.
    log : callable, optional
        Receives one-line notes on where the trials run.

    Returns
    -------
    SweepResult
    """
    metric = metric_name(metric)
    if resume and results is None:
        raise ValueError("resume needs the results file of the sweep to continue")
    k = positive("trials_per_task", trials_per_task)
    configs = grid(space, base) if n_trials is None else sample(space, n_trials, base, seed)
    meta = {"space": {key: repr(v) for key, v in space.items()}, "n_configs": len(configs),
            "n_trials": n_trials, "seed": seed, "data": data.describe()}  # fmt: skip
    store = SweepResults(results, metric=metric, columns=list(space), meta=meta,
                         resume=resume, overwrite=overwrite)  # fmt: skip
    done = store.done()
    todo = [(i, c) for i, c in enumerate(configs) if config_key(c) not in done]
    best = _Best(metric, save, data, store)
    options = {"client": client, "scheduler": scheduler, "n_workers": n_workers,
               "threads_per_worker": threads_per_worker, "in_process": in_process,
               "threads": threads, "metric": metric, "backend": backend,
               "trial": trial}  # fmt: skip
    _run(todo, k, data, options, store, best, progress, log or (lambda _: None))
    return _result(store, best, len(configs), len(configs) - len(todo))


def _run(todo, k, data, options, store, best, progress, log) -> None:  # noqa: ANN001
    from tqdm.auto import tqdm

    chunks = [todo[i : i + k] for i in range(0, len(todo), k)]
    bar = tqdm(total=len(todo), unit="trial", desc="sweep", disable=not progress)
    try:
        if chunks:
            # closing: an exception here (Ctrl-C) cancels the queued tasks and stops an own
            # cluster now, not whenever the generator is collected.
            with contextlib.closing(_batches(chunks, data, options, log)) as batches:
                for rows, batch_best in batches:
                    rows = store.add(rows)
                    best.offer(rows, batch_best)
                    bar.update(len(rows))
                    if best.value is not None:
                        bar.set_postfix({best.metric: f"{best.value:.4f}"}, refresh=False)
    finally:
        bar.close()
        store.close()
    off = [r for r in store.rows if (r.get("threads") or {}).get("ok") is False]
    if off:
        warnings.warn(f"{len(off)} trials ran with thread counts other than fastnn's "
                      f"setting, e.g. {off[0]['threads']}", SweepWarning, stacklevel=3)  # fmt: skip


def _result(store: SweepResults, best: _Best, n_configs: int, n_skipped: int) -> SweepResult:
    model = best.model
    saved = (store.best or {}).get("saved")
    if model is None and saved and Path(saved).is_file():
        from ..model import load

        model = load(saved)  # the best trial ran in an earlier, resumed, call
    paths = {name: str(p) for name, p in (("json", store.json_path), ("csv", store.csv_path),
                                          ("md", store.md_path)) if p is not None}  # fmt: skip
    if saved:
        paths["model"] = saved
    return SweepResult(store.rows, store.metric, best.row, model, n_configs, n_skipped, paths,
                       best.save_error)  # fmt: skip
