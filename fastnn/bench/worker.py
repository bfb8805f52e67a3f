"""One measurement job: a row (warm-up + timed epochs), a start-up probe, or time-to-accuracy.

A job is a JSON-serializable ``spec`` dict. :func:`run_job` runs it in this process;
:func:`run_in_subprocess` runs it in a fresh interpreter, which is how ``fastnn bench`` measures
by default: each row then has its own peak resident memory (``ru_maxrss`` is a process-wide
high-water mark) and its own import and first-epoch cost, and no row inherits another's warm
caches, thread pools or allocator state.

The child is started with :data:`BOOTSTRAP`, which imports only NumPy (common to every
implementation) before timing the implementation's ``import_code``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

from .registry import Setup, load_factory

DATA_FILES = ("X_train", "y_train", "X_test", "y_test")

BOOTSTRAP = """\
import json, sys, time
import numpy
spec = json.loads(open(sys.argv[1], encoding="utf-8").read())
t0 = time.perf_counter()
exec(spec["import_code"], {})
import_s = time.perf_counter() - t0
from fastnn.bench.worker import child_main
child_main(spec, import_s, sys.argv[2])
"""


def peak_rss_mb() -> float | None:
    """Peak resident set size of this process so far, in MiB (None where unsupported).

    On Linux this is ``VmHWM`` of ``/proc/self/status``: ``ru_maxrss`` would not do there,
    because the kernel carries the parent's peak across fork and exec into the child, so every
    row would report at least the parent's memory.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes vs KiB


def save_inputs(directory: Path, data: tuple, weights: list[np.ndarray]) -> None:
    """Write the data and the initial weights where child processes read them."""
    for name, array in zip(DATA_FILES, data, strict=True):
        np.save(directory / f"{name}.npy", np.ascontiguousarray(array))
    np.savez(directory / "weights.npz", *weights)


def load_inputs(directory: Path) -> tuple[tuple, list[np.ndarray]]:
    data = tuple(np.load(directory / f"{name}.npy") for name in DATA_FILES)
    with np.load(directory / "weights.npz") as z:
        weights = [z[f"arr_{i}"] for i in range(len(z.files))]
    return data, weights


def _setup(spec: dict, data: tuple, weights: list[np.ndarray]) -> Setup:
    X, y, X_test, y_test = data
    return Setup(
        X=X, y=y, X_test=X_test, y_test=y_test, weights=[w.copy() for w in weights],
        activation=spec["activation"], optimizer=dict(spec["optimizer"]),
        batch_size=int(spec["batch_size"]), threads=int(spec["threads"]),
        seed=int(spec["seed"]), options=dict(spec.get("options", {})),
    )  # fmt: skip


def run_job(spec: dict, data: tuple, weights: list[np.ndarray]) -> dict:
    """Run one job in this process.

    Parameters
    ----------
    spec : dict
        ``mode`` ("row", "startup" or "tta"), ``factory``, ``options``, ``activation``,
        ``optimizer``, ``batch_size``, ``threads``, ``seed``, ``warmup`` and ``epochs``
        (timed epochs for a row; the maximum for "tta"), ``target`` (tta).
    data : tuple of ndarray
        ``(X_train, y_train, X_test, y_test)``.
    weights : list of ndarray
        Initial parameters W0, b0, W1, b1, ...

    Returns
    -------
    dict
        Row: ``epoch_s_all``, ``first_epoch_s``, ``compile_s``, ``test_accuracy``,
        ``eval_s``, ``setup_s``. Start-up: ``first_epoch_s``. Time-to-accuracy: ``reached``,
        ``epochs``, ``seconds``, ``epoch_s_all``, ``accuracy_curve``, ``eval_s``.
    """
    mode = spec["mode"]
    t0 = time.perf_counter()
    trainer = load_factory(spec["factory"])(_setup(spec, data, weights))
    result: dict = {"setup_s": time.perf_counter() - t0}
    if hasattr(trainer, "backend"):
        result["backend"] = trainer.backend
    clock = _EpochClock(trainer, spec.get("target") if mode == "tta" else None)
    warmup = int(spec.get("warmup", 1)) if mode != "tta" else 0
    epochs = warmup + int(spec["epochs"]) if mode != "startup" else 1
    t_call = time.perf_counter()
    trainer.run(epochs, clock.begin, clock.end)
    times = clock.epoch_times()
    if mode == "tta":
        evals, curve = clock.evals, clock.curve
        result.update(
            reached=bool(curve) and curve[-1] >= spec["target"], epochs=len(times),
            epoch_s_all=times, accuracy_curve=curve, eval_s=float(sum(evals)),
            # Wall clock from the training call to the end of the last epoch, without the
            # evaluations that ran between epochs.
            seconds=(clock.ends[-1] - t_call - sum(evals[:-1])) if times else None,
        )  # fmt: skip
        return result
    # The first epoch counts from the training call: a user waits for validation, buffer
    # allocation and JIT compilation before the first epoch is done.
    result["first_epoch_s"] = clock.ends[0] - t_call
    if mode == "startup":
        return result
    timed = times[warmup:]
    result["epoch_s_all"] = timed
    result["compile_s"] = max(0.0, result["first_epoch_s"] - float(np.median(timed)))
    e0 = time.perf_counter()
    result["test_accuracy"] = trainer.test_accuracy()
    result["eval_s"] = time.perf_counter() - e0
    return result


class _EpochClock:
    """The hooks handed to ``Trainer.run``: timestamps, and test accuracy when chasing a target.

    The evaluation runs after the epoch's end mark, so it is never inside a timed epoch.
    """

    def __init__(self, trainer, target: float | None) -> None:  # noqa: ANN001
        self.trainer = trainer
        self.target = target
        self.begins: list[float] = []
        self.ends: list[float] = []
        self.evals: list[float] = []
        self.curve: list[float] = []

    def begin(self, epoch: int) -> None:
        self.begins.append(time.perf_counter())

    def end(self, epoch: int) -> bool:
        self.ends.append(time.perf_counter())
        if self.target is None:
            return False
        e0 = time.perf_counter()
        self.curve.append(self.trainer.test_accuracy())
        self.evals.append(time.perf_counter() - e0)
        return self.curve[-1] >= self.target

    def epoch_times(self) -> list[float]:
        return [e - b for b, e in zip(self.begins, self.ends, strict=True)]


def child_main(spec: dict, import_s: float, out_path: str) -> None:
    """Entry point of a child process (see :data:`BOOTSTRAP`): run the job, write JSON."""
    try:
        data, weights = load_inputs(Path(spec["data_dir"]))
        rss_data = peak_rss_mb()
        result = run_job(spec, data, weights)
        result.update(import_s=import_s, peak_rss_mb=peak_rss_mb(), data_rss_mb=rss_data)
        from .machine import blas_libraries, describe_blas

        result["blas"] = describe_blas(blas_libraries())
    except Exception as exc:  # reported in the row, never fatal to the benchmark
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    Path(out_path).write_text(json.dumps(result), encoding="utf-8")


def run_in_subprocess(spec: dict, env: dict | None = None, timeout: float | None = None) -> dict:
    """Run ``spec`` (which must hold ``data_dir`` and ``import_code``) in a fresh interpreter.

    Failures (a crash, a timeout, an exception in the job) come back as ``{"error": ...}``.
    """
    with tempfile.TemporaryDirectory(prefix="fastnn-bench-job-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        cmd = [sys.executable, "-c", BOOTSTRAP, str(spec_path), str(out_path)]
        try:
            proc = subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True,
                                  text=True, timeout=timeout, check=False)  # fmt: skip
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        if out_path.exists():
            return json.loads(out_path.read_text(encoding="utf-8"))
        tail = (proc.stderr or "").strip().splitlines()[-3:]
        return {"error": f"child exited with code {proc.returncode}: {' | '.join(tail)}"}
