"""Trials on a Dask cluster: the default ``LocalCluster``, connecting, and the task loop.

The data is scattered to every worker once; trials go out in tasks of ``trials_per_task`` (one
task, one scheduling round trip); ``as_completed`` hands back each task as it finishes. A task
whose worker died (or whose cluster went away) comes back as "lost" rows. ``distributed`` is
imported inside the functions, so ``fastnn.sweep`` imports without it.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .trial import SweepData, SweepWarning, run_trials

NEEDS = "a sweep on Dask needs dask.distributed: pip install 'fastnn[dask]'"
Batch = tuple[list[dict[str, Any]], Any]


def cores() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_cluster(n_workers: int | None = None, threads_per_worker: int = 1, **kwargs: Any):  # noqa: ANN201
    """A ``LocalCluster`` of worker processes with ``n_workers * threads_per_worker <= cores``.

    Each worker runs one trial at a time (worker resource ``fastnn_trial=1``) on
    ``threads_per_worker`` threads: fastnn, BLAS and OpenMP are pinned to that count by the
    sweep's worker plugin, and the OpenMP/BLAS environment variables say the same from the
    start of the process.

    Parameters
    ----------
    n_workers : int, optional
        Default: ``cores() // threads_per_worker``.
    threads_per_worker : int, default 1
    **kwargs
        Passed to ``distributed.LocalCluster`` (the dashboard, when Bokeh is installed, is on a
        free port by default: ``dashboard_address=":0"``).

    Returns
    -------
    distributed.LocalCluster
    """
    try:
        from distributed import LocalCluster
    except ImportError as exc:
        raise ImportError(NEEDS) from exc
    from ._plugin import RESOURCE

    t = positive("threads_per_worker", threads_per_worker)
    w = positive("n_workers", n_workers) if n_workers is not None else max(1, cores() // t)
    if w * t > cores():
        warnings.warn(f"{w} workers x {t} threads is more than the {cores()} cores: trials "
                      "will compete for them", SweepWarning, stacklevel=2)  # fmt: skip
    env = {name: str(t) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    options = {"processes": True, "n_workers": w, "threads_per_worker": t, "env": env,
               "resources": {RESOURCE: 1}, "dashboard_address": ":0"}  # fmt: skip
    return LocalCluster(**(options | kwargs))


def positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def _lost_rows(chunk: Sequence[tuple[int, dict]], exc: BaseException) -> list[dict[str, Any]]:
    error = f"{type(exc).__name__}: {exc}"
    return [{"trial": i, "status": "lost", "config": dict(c), "metrics": {}, "epochs": 0,
             "error": error, "seconds": None, "worker": None, "threads": {}}
            for i, c in chunk]  # fmt: skip


def _connect(options: dict, owned: list):  # noqa: ANN202
    """The client of the sweep: the caller's, one to ``scheduler``, or a default cluster's."""
    from distributed import Client

    if options["client"] is not None:
        return options["client"]
    target = options["scheduler"]
    target = target or default_cluster(options["n_workers"], options["threads_per_worker"])
    if not isinstance(target, str):
        owned.append(target)
    client = Client(target)
    owned.insert(0, client)  # closed before its cluster
    return client


def _prepare(client, log: Callable) -> dict | None:  # noqa: ANN001
    """Pin every worker's threads; the task resources to ask for (None: the workers set none)."""
    from importlib.util import find_spec

    from ._plugin import RESOURCE, PinThreads

    client.register_plugin(PinThreads())
    workers = client.scheduler_info()["workers"].values()
    capped = bool(workers) and all(RESOURCE in w.get("resources", {}) for w in workers)
    link = getattr(client, "dashboard_link", None) if find_spec("bokeh") else None
    where = f"scheduler {client.scheduler.address}" + (f", dashboard {link}" if link else "")
    log(f"on Dask: {len(workers)} workers, {sum(w['nthreads'] for w in workers)} threads "
        f"({where})")  # fmt: skip
    return {RESOURCE: 1} if capped else None


def _await_running_workers(client: Any, timeout: float = 10.0) -> None:
    """Wait (up to ``timeout`` s) until every registered worker runs. ``scatter(broadcast=True)``
    copies the data only to the workers running at that moment: one still starting got none,
    and when the one that had it died, the trials it had finished could not be recomputed
    (seen in CI: a whole sweep lost with its first worker)."""
    expected = len(client.scheduler_info()["workers"])
    deadline = time.monotonic() + timeout
    while len(client.sync(client.scheduler.ncores_running)) < expected:
        if time.monotonic() > deadline:
            return  # start anyway: a worker that never runs must not hang the sweep
        time.sleep(0.05)


def dask_batches(chunks: list, data: SweepData, options: dict, log: Callable) -> Iterator[Batch]:
    """Run the chunks as Dask tasks; yield each one's result as it finishes."""
    try:
        from distributed import as_completed
    except ImportError as exc:
        raise ImportError(NEEDS) from exc
    client, owned, pending = None, [], {}
    try:
        client = _connect(options, owned)
        resources = _prepare(client, log)
        _await_running_workers(client)
        data_future = client.scatter(data, broadcast=True, hash=False)
        for chunk in chunks:
            future = client.submit(run_trials, chunk, data_future, options["metric"],
                                   options["backend"], options["trial"], pure=False,
                                   resources=resources)  # fmt: skip
            pending[future] = chunk
        for future in as_completed(list(pending)):
            chunk = pending.pop(future)
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - a dead worker, a lost scheduler
                result = (_lost_rows(chunk, exc), None)
            future.release()
            yield result
    finally:
        if pending and client is not None:
            client.cancel(list(pending))
        for resource in owned:
            resource.close()
