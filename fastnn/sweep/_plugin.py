"""The worker plugin that holds each Dask worker's thread pools to its share of the cores.

Imported only when a sweep runs on Dask (it needs ``distributed``).
"""

from __future__ import annotations

from distributed import WorkerPlugin

#: Worker resource that caps trials running at once in one worker (see ``trial_threads``).
RESOURCE = "fastnn_trial"


def trial_threads(nthreads: int, resources: dict) -> int:
    """Threads one trial may use on a worker with ``nthreads`` task slots.

    A worker that declares ``fastnn_trial=k`` runs at most k trials at once, so each gets
    ``nthreads // k`` threads (the default cluster: k = 1, all of them). Without it, every
    task slot runs its own trial, and each must stay on one thread.
    """
    slots = int(resources.get(RESOURCE, nthreads) or nthreads)
    return max(1, nthreads // max(1, slots))


class PinThreads(WorkerPlugin):
    """On every worker, now and when one (re)starts: fastnn and BLAS use ``trial_threads``."""

    idempotent = True
    name = "fastnn-pin-threads"

    def setup(self, worker) -> None:  # noqa: ANN001
        from .trial import pin_threads

        state = worker.state
        pin_threads(trial_threads(state.nthreads, dict(state.total_resources)))
