"""What the benchmark ran on: CPU, cores, threads, BLAS, library versions, relevant environment.

Versions are read from the installed package metadata, so describing the machine never imports
PyTorch or scikit-learn into the parent process (their import cost belongs to their own rows).
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
from importlib import metadata

# Distribution name of each library the report names (the JSON key is the left side).
VERSIONED = {
    "python": None,
    "fastnn": "fastnn",
    "numpy": "numpy",
    "scipy": "scipy",
    "numba": "numba",
    "cython": "Cython",
    "torch": "torch",
    "sklearn": "scikit-learn",
    "threadpoolctl": "threadpoolctl",
}

# Environment variables that change how fast the numbers come out. OPENBLAS_CORETYPE and
# OPENBLAS_L2_SIZE pin OpenBLAS's kernel choice on this project's machine; report, never change.
ENV_VARS = (
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "NUMBA_THREADING_LAYER",
    "NUMBA_CACHE_DIR",
    "FASTNN_BACKEND",
    "FASTNN_FLUSH_DENORMALS",
)


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, ``platform`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def versions() -> dict[str, str | None]:
    """Installed version of each library in :data:`VERSIONED` (None when not installed)."""
    found: dict[str, str | None] = {}
    for key, dist in VERSIONED.items():
        if dist is None:
            found[key] = platform.python_version()
            continue
        try:
            found[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[key] = None
    return found


def blas_libraries() -> list[dict]:
    """BLAS (and OpenMP) libraries loaded in this process, as threadpoolctl sees them."""
    from ..threads import thread_pools

    return thread_pools()


def describe_blas(libraries: list[dict]) -> list[str]:
    """One short string per library, e.g. ``"openblas 0.3.27 (pthreads, Haswell), 2 threads"``."""
    out = []
    for lib in libraries:
        extra = ", ".join(str(lib[k]) for k in ("threading_layer", "architecture") if lib.get(k))
        name = f"{lib.get('internal_api')} {lib.get('version') or ''}".strip()
        out.append(f"{name}{f' ({extra})' if extra else ''}, {lib.get('num_threads')} threads")
    return out


def machine_info(threads: int) -> dict:
    """The ``machine`` section of the report.

    Parameters
    ----------
    threads : int
        Threads every implementation was allowed to use.

    Returns
    -------
    dict
        ``cpu``, ``cores`` (logical CPUs usable), ``cpu_count``, ``threads``, ``platform``,
        ``blas`` (threadpoolctl records of the parent process), ``versions``, ``env``,
        ``flush_denormals`` (fastnn trains with denormals flushed, ``fastnn.denormals``),
        ``date``.
    """
    from ..denormals import get_flush_denormals

    return {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "cpu_count": os.cpu_count(),
        "threads": int(threads),
        "platform": platform.platform(),
        "python_executable": sys.executable,
        "blas": blas_libraries(),
        "versions": versions(),
        "env": {name: os.environ[name] for name in ENV_VARS if name in os.environ},
        "flush_denormals": get_flush_denormals(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
