"""``fastnn info``: version, backends (and why one did not load), threads, BLAS and CPU.

The first thing to paste into a bug report, and the quickest way to see which compiled backend
``"auto"`` picks on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Sequence
from typing import Any

from .threads import thread_pools


def _cpu() -> dict[str, Any]:
    info: dict[str, Any] = {"machine": platform.machine(), "model": platform.processor() or None}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:  # not Linux
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not info.get("model_name"):
            info["model"] = value.strip()
            info["model_name"] = True
        elif key.strip() == "flags" and "simd" not in info:
            flags = set(value.split())
            wanted = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "neon", "asimd")
            info["simd"] = [f for f in wanted if f in flags]
    info.pop("model_name", None)
    info["logical_cpus"] = os.cpu_count()
    if hasattr(os, "sched_getaffinity"):
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    return info


def _numba() -> dict[str, Any] | None:
    try:
        import numba
    except ImportError:
        return None
    from .backends.numba.precompile import resolve_store, store_entries

    store = resolve_store()
    entries, megabytes = store_entries(store)
    return {
        "version": numba.__version__,
        "num_threads": numba.get_num_threads(),
        "max_threads": numba.config.NUMBA_NUM_THREADS,
        "threading_layer_setting": numba.config.THREADING_LAYER,
        "precompiled_store": None if store is None else str(store),
        "precompiled_kernels": entries,
        "precompiled_megabytes": round(megabytes, 1),
    }


def collect() -> dict[str, Any]:
    """Everything ``fastnn info`` prints, as a JSON-serializable dict."""
    import numpy

    import fastnn
    from fastnn.backends import AUTO_ORDER, backend_status
    from fastnn.backends._blas import scipy_blas_idle

    status = backend_status()  # loads every backend: also sets up their thread pools
    try:
        auto = fastnn.get_backend()
    except ImportError as exc:  # pragma: no cover - numpy always loads
        auto = f"none ({exc})"
    try:
        import scipy

        scipy_version = scipy.__version__
    except ImportError:
        scipy_version = None
    env = {k: os.environ[k] for k in ("FASTNN_BACKEND", "FASTNN_DATA", "OMP_NUM_THREADS",
           "OPENBLAS_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT", "MKL_NUM_THREADS",
           "NUMBA_NUM_THREADS", "OMP_WAIT_POLICY", "NUMBA_THREADING_LAYER",
           "FASTNN_FLUSH_DENORMALS")
           if k in os.environ}  # fmt: skip
    return {
        "fastnn": fastnn.__version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy_version,
        "platform": platform.platform(),
        "backends": status,
        "auto_order": list(AUTO_ORDER),
        "default_backend": auto,
        "threads": {"fastnn": fastnn.get_num_threads(), "numba": _numba()},
        "flush_denormals": {
            "supported": fastnn.flush_denormals_supported(),
            "enabled": fastnn.get_flush_denormals(),
        },  # fmt: skip
        "thread_pools": thread_pools(load_blas=True),
        "scipy_blas_idle": scipy_blas_idle(),
        "cpu": _cpu(),
        "environment": env,
    }


def format_info(info: dict[str, Any]) -> str:
    """The human-readable report of :func:`collect`'s dict."""
    lines = [
        f"fastnn {info['fastnn']}  (Python {info['python']}, NumPy {info['numpy']}, "
        f"SciPy {info['scipy'] or 'not installed'})",
        f"platform: {info['platform']}",
        f"backends (auto tries {', '.join(info['auto_order'])}; default now: "
        f"{info['default_backend']}):",
    ]
    for name, status in info["backends"].items():
        lines.append(f"  {name:<7} {'loaded' if status == 'ok' else 'NOT loaded: ' + status}")
    fd = info["flush_denormals"]
    lines.append(
        "training flushes denormals: "
        + ("yes" if fd["enabled"] else "no")
        + ("" if fd["supported"] else " (not supported: needs x86-64 and a compiled backend)")
    )
    t = info["threads"]
    lines.append(f"threads: fastnn {t['fastnn']}")
    if t["numba"] is not None:
        nb = t["numba"]
        lines.append(f"  numba {nb['version']}: {nb['num_threads']} of {nb['max_threads']} "
                     f"threads, threading layer setting "
                     f"{nb['threading_layer_setting']!r}")  # fmt: skip
        if nb["precompiled_store"] is None:
            lines.append("  numba precompiled store: turned off (FASTNN_NUMBA_PRECOMPILED)")
        else:
            lines.append(f"  numba precompiled store: {nb['precompiled_kernels']} kernels "
                         f"({nb['precompiled_megabytes']} MB) in {nb['precompiled_store']}"
                         + ("" if nb["precompiled_kernels"] else
                            "; run `fastnn compile` once for a fast first fit"))  # fmt: skip
    else:
        lines.append("  numba: not installed")
    lines.append("thread pools (threadpoolctl):")
    if not info["thread_pools"]:
        lines.append("  none found")
    for p in info["thread_pools"]:
        extra = f", {p['threading_layer']}" if "threading_layer" in p else ""
        name = f"{p.get('internal_api')} {p.get('version') or ''}".strip()
        lines.append(f"  {p.get('user_api')}: {name} ({p.get('num_threads')} threads{extra}) "
                     f"{p.get('filepath', '')}")  # fmt: skip
    if info.get("scipy_blas_idle"):
        lines.append(f"  idle workers of SciPy's OpenBLAS: {info['scipy_blas_idle']}")
    cpu = info["cpu"]
    usable = f", {cpu['usable_cpus']} usable" if "usable_cpus" in cpu else ""
    lines.append(f"CPU: {cpu.get('model') or 'unknown'} ({cpu['machine']}), "
                 f"{cpu['logical_cpus']} logical CPUs{usable}")  # fmt: skip
    if cpu.get("simd"):
        lines.append(f"  SIMD: {' '.join(cpu['simd'])}")
    for key, value in info["environment"].items():
        lines.append(f"env {key}={value}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fastnn info``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="fastnn info", description="Version, backends, threads, BLAS and CPU."
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    info = collect()
    print(json.dumps(info, indent=1) if args.json else format_info(info))
    sys.stdout.flush()
    return 0
