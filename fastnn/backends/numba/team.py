"""Threads of the numba backend: a small team of Python threads for the convolution kernels
(which release the GIL), and the policy of the sparse loops' ``prange`` team (E, F).

Design:

A. Each thread owns a slice of the output (a range of images, or its own partial weight
   gradient, summed by the caller afterwards): no atomics, no shared accumulation.
B. Waiting is passive: workers block on a queue (a futex), never spin, so they leave the cores
   to BLAS (which runs only between conv kernels, while the team sleeps): the OpenMP spin
   pitfall of DESIGN.md avoided on this side without any process-wide setting. (OpenBLAS's
   workers still spin ~0.1 s after each threaded call: see :mod:`.conv`, Design C.)
C. The team serves one call at a time. A second thread calling meanwhile (two fits in
   parallel) runs its parts itself, one after the other: same results, no waiting on the other.
D. Work is shared out dynamically (:func:`run_chunked`): the threads take chunks of CHUNK
   images from one atomic counter until none is left, so a thread that the OS descheduled
   (a busy machine) leaves its chunks to the others instead of making everyone wait. Whatever
   a chunk accumulates (weight gradients) goes to that chunk's own buffer, summed in chunk
   order afterwards: the result does not depend on which thread ran which chunk, nor on the
   number of threads.
E. The sparse loops of the dense layers run *inside* compiled code (the whole epoch is one
   call), where this Python team cannot reach: they split their work with ``prange``
   (:mod:`.sparse`, Design F) on Numba's ``workqueue`` threading layer, whose workers sleep
   on condition variables between regions (no spinning next to BLAS). :func:`loop_team` picks
   that layer when the user has not chosen one (``NUMBA_THREADING_LAYER``) and Numba has not
   started its threads yet; any other layer (``omp`` spins) keeps the loops on one thread.
   ``workqueue`` aborts the process when two threads launch parallel regions at once, so
   one caller at a time holds the team (a non-blocking lock); a concurrent caller gets a
   team of one thread, the same compiled code, and runs the loops serially.
F. Whether the team pays depends on the machine at run time: on a machine whose other
   processes keep both cores busy, the split regions wait for the slower thread and were
   measured up to 1.5x slower than one thread. Since both give the same bits, the compiled
   epoch picks per epoch shape (:class:`TeamTrial`): one epoch with the team, one without,
   then the faster, trying the other again every PROBE_EVERY epochs (the first epoch of a
   shape, which may include compiling, is not counted).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numba
import numpy as np

from .blas import blas_threads
from .fpmode import get_mode, swap_mode

CHUNK = 8  # images a thread takes at a time (Design D)


class _Worker:
    """One daemon thread running submitted calls in order."""

    def __init__(self) -> None:
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        thread = threading.Thread(target=self._loop, name="fastnn-numba-team", daemon=True)
        thread.start()

    def _loop(self) -> None:
        while True:
            func, args, mode = self._tasks.get()
            old = swap_mode(mode)  # the caller's denormal flushing (fpmode, Design A)
            try:
                func(*args)
            except BaseException as exc:  # handed to the caller
                self._done.put(exc)
            else:
                self._done.put(None)
            finally:
                swap_mode(old)

    def submit(self, func: Callable, args: Sequence[Any], mode: int) -> None:
        self._tasks.put((func, args, mode))

    def wait(self) -> BaseException | None:
        return self._done.get()


class Team:
    """Runs ``func(*parts[0])`` in the calling thread and the other parts in worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []

    def run(self, func: Callable, parts: Sequence[Sequence[Any]]) -> None:
        """Call ``func`` once per argument tuple of ``parts``, concurrently; return when all
        are done (re-raising the first exception)."""
        if len(parts) <= 1 or not self._lock.acquire(blocking=False):  # Design C
            for args in parts:
                func(*args)
            return
        try:
            while len(self._workers) < len(parts) - 1:
                self._workers.append(_Worker())
            helpers = self._workers[: len(parts) - 1]
            mode = get_mode()
            for worker, args in zip(helpers, parts[1:], strict=True):
                worker.submit(func, args, mode)
            error: BaseException | None = None
            try:
                func(*parts[0])
            except BaseException as exc:
                error = exc
            for worker in helpers:  # always collect every worker before the buffers are reused
                failed = worker.wait()
                error = error or failed
        finally:
            self._lock.release()
        if error is not None:
            raise error


#: The process-wide team of the numba backend (its size is chosen per call).
TEAM = Team()


def chunks(n: int) -> int:
    """Chunks of CHUNK images in a batch of ``n``."""
    return -(-n // CHUNK)


def run_chunked(func: Callable, n: int, args_of: Callable[[int, np.ndarray], tuple]) -> None:
    """Run ``func(*args_of(k, counter))`` in thread k of the team, for as many threads as the
    backend uses (at most one per chunk); they share ``counter`` (Design D)."""
    counter = np.zeros(1, np.int64)
    threads = max(1, min(blas_threads(), chunks(n)))
    TEAM.run(func, [args_of(k, counter) for k in range(threads)])


PASSIVE_LAYERS = ("workqueue", "tbb")  # Numba threading layers whose workers never spin
_loops_lock = threading.Lock()  # Design E: one launcher of parallel regions at a time
_layer_ok: bool | None = None  # the layer Numba runs on is passive (known once it started)


def choose_threading_layer() -> None:
    """Make Numba start ``workqueue`` (Design E), unless the user chose a layer or Numba's
    threads already run. Call before anything that starts them (``numba.set_num_threads``)."""
    from numba.np.ufunc import parallel

    if not parallel._is_initialized and str(numba.config.THREADING_LAYER).lower() == "default":
        numba.config.THREADING_LAYER = "workqueue"


def loop_threads() -> int:
    """Threads for the sparse loops: the backend's count, or 1 on a spinning layer."""
    global _layer_ok
    threads = min(blas_threads(), numba.config.NUMBA_NUM_THREADS)
    if threads <= 1 or numba.config.DISABLE_JIT:
        return 1
    if _layer_ok is None:
        from numba.np.ufunc import parallel

        choose_threading_layer()
        parallel._launch_threads()
        _layer_ok = numba.threading_layer() in PASSIVE_LAYERS
    return threads if _layer_ok else 1


@contextmanager
def loop_team(size: int, wanted: bool = True) -> Iterator[np.ndarray | None]:
    """The ``team`` argument of the dense kernels, held for the duration of the block: None
    on one thread (code without the thread-split loops), else the (threads, size) int32
    scratch of the threads, of one row while another caller holds the team (Design E) or the
    caller does not want it (``wanted``, Design F)."""
    threads = loop_threads()
    if threads == 1:
        yield None
        return
    mine = wanted and _loops_lock.acquire(blocking=False)
    try:
        yield np.empty((threads if mine else 1, size), np.int32)
    finally:
        if mine:
            _loops_lock.release()


PROBE_EVERY = 16  # epochs between two tries of the mode not chosen (Design F)


class TeamTrial:
    """Team or one thread for the compiled epochs of one shape, from their times (Design F)."""

    def __init__(self) -> None:
        self.calls = 0
        self.seconds: dict[bool, float] = {}

    def wanted(self) -> bool:
        """Use the team for the next epoch?"""
        if self.calls < 2:  # warm-up (not counted), then the team's first timed epoch
            return True
        for mode in (True, False):  # a mode never timed (another caller held the team)
            if mode not in self.seconds:
                return mode
        best = self.seconds[True] <= self.seconds[False]
        return best if self.calls % PROBE_EVERY else not best

    def record(self, team: bool, seconds: float) -> None:
        """The epoch just run took ``seconds``, with the team or not."""
        if self.calls:
            self.seconds[team] = seconds
        self.calls += 1


_trials: dict[tuple, TeamTrial] = {}


def trial(key: tuple) -> TeamTrial:
    """The :class:`TeamTrial` of the epochs of shape ``key``."""
    return _trials.setdefault(key, TeamTrial())
