"""A busy machine on demand: a competing process that keeps one core fully busy.

``fastnn bench --busy-core N`` runs the whole benchmark beside it, which is how a shared
machine looks to a library that takes every core by default: one of its threads is
descheduled now and then, and a thread pool that waits for all of its threads (OpenMP, a
threaded BLAS product) waits for that one. The ratios of such a run say which rows collapse.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

SPIN = "while True: pass"


def check_core(core: int) -> int:
    """``core`` if this process may run on it, else ValueError naming the usable cores."""
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not usable:
        raise ValueError("--busy-core needs os.sched_setaffinity (Linux)")
    if core not in usable:
        raise ValueError(f"--busy-core {core}: not a usable core (usable: {usable})")
    return core


@contextmanager
def competitor(core: int | None) -> Iterator[int | None]:
    """Keep ``core`` busy with a spinning process for the ``with`` block (None: do nothing).

    Yields the competitor's pid. The process is killed when the block ends, however it ends.
    """
    if core is None:
        yield None
        return
    check_core(core)
    proc = subprocess.Popen([sys.executable, "-c", SPIN], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        os.sched_setaffinity(proc.pid, {core})
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()
