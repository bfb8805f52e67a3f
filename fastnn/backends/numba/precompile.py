"""Compile the Numba backend ahead of time into its store (:mod:`.jit`, Design H).

``fastnn compile`` (or :func:`compile_store`) runs once after install; afterwards the first
fit of a new process loads machine code instead of compiling for 18-28 s (measured here).

Design:

A. What a fit compiles depends on the *types* it meets, never on the data: when Numba
   compiles a kernel it compiles every kernel that kernel can call, whatever the run-time
   branches take. So one short fit per kind of fit compiles everything any fit of that kind
   runs, on any data size, batch size, width or activation. A kind is a dtype, a loss, an
   optimizer, a thread count (one thread: no ``team``; two: the thread-split loops) and one
   hidden layer or any other depth up to ``jit.TUPLE_LAYERS - 1`` (:mod:`.jit`, Design I).
   :func:`workloads` lists one tiny fit and its predicts (batch 1 and a large batch) per
   kind, one fit with diagnostics (the per-batch kernels) and a small CNN. The default,
   float32 with every loss and optimizer: 63 fits, about 4 minutes here (243-254 s).
B. The workloads run in a child process (:func:`compile_store`) whose kernels write to the
   store only (``jit.FILLING_ENV``): nothing there is loaded from the user's own cache, so
   the store is complete, and the user's cache is not touched. The child writes a fresh
   directory beside the store, which replaces the old store only when every workload has
   run: a failed or interrupted compile leaves the old store as it was, never half of one.
C. Kinds left out (float64 unless asked for, a loss or optimizer not asked for) still work:
   they compile on first use and go to the user's cache, as without a store.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..._atomic import not_writable
from .jit import FILLING_ENV, STORE_ENV, store_dir

LOSSES = ("cross_entropy", "cross_entropy_soft", "mse", "binary_cross_entropy", "kl_divergence")
OPTIMIZERS = ("sgd", "momentum", "adam")
DTYPES = ("float32", "float64")


@dataclass
class StoreReport:
    """What :func:`compile_store` did.

    Attributes
    ----------
    store : Path
        The store directory.
    workloads : int
        Fits and predicts run.
    entries : int
        Compiled kernels (index files) in the store.
    megabytes : float
    seconds : float
        Wall time of the whole compile.
    """

    store: Path
    workloads: int
    entries: int
    megabytes: float
    seconds: float


def _data(dtype: str, loss: str, n: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-like rows (81% zeros) and targets of the type ``loss`` takes."""
    rng = np.random.default_rng(0)
    X = rng.random((n, 784)).astype(dtype)
    X[rng.random(X.shape) < 0.81] = 0
    labels = rng.integers(0, 10, n)
    if loss == "cross_entropy":
        return X, labels
    y = np.eye(10, dtype=dtype)[labels]
    if loss in ("cross_entropy_soft", "kl_divergence"):
        y = (0.9 * y + 0.01).astype(dtype)  # probabilities: rows sum to 1
    return X, y


def _optimizer(name: str):  # noqa: ANN202
    import fastnn

    return {"sgd": lambda: fastnn.SGD(0.01), "momentum": lambda: fastnn.SGD(0.01, momentum=0.9),
            "adam": lambda: fastnn.Adam(1e-3)}[name]()  # fmt: skip


def _mlp(dtype: str, loss: str, optimizer: str, threads: int, hidden: int = 1,
         diagnostics: bool = False) -> None:  # fmt: skip
    import fastnn

    fastnn.set_num_threads(threads)
    X, y = _data(dtype, loss)
    sizes = [784] + [32] * hidden + [10]
    layers = [fastnn.Dense(a, b, "relu") for a, b in zip(sizes[:-2], sizes[1:-1], strict=True)]
    model = fastnn.Sequential([*layers, fastnn.Dense(sizes[-2], 10)], seed=0, dtype=dtype)
    fit_loss = "cross_entropy" if loss == "cross_entropy_soft" else loss
    model.fit(X, y, loss=fit_loss, optimizer=_optimizer(optimizer), batch_size=64, epochs=1,
              backend="numba", diagnostics=diagnostics)  # fmt: skip
    for rows in (1, len(X)):  # the batch-1 path and the large-batch plan (predict.py)
        model.predict_proba(X[:rows])  # on fit's backend


def _cnn(dtype: str, threads: int) -> None:
    import fastnn

    fastnn.set_num_threads(threads)
    rng = np.random.default_rng(0)
    X = rng.random((32, 1, 12, 12)).astype(dtype)
    y = rng.integers(0, 10, 32)
    model = fastnn.Sequential(
        [fastnn.Conv2D(1, 4, 3, padding=1, activation="relu"), fastnn.MaxPool2D(2),
         fastnn.Conv2D(4, 4, 3, activation="relu"), fastnn.Flatten(), fastnn.Dropout(0.1),
         fastnn.Dense(64, 10)],
        seed=0, dtype=dtype, input_shape=(1, 12, 12),
    )  # fmt: skip
    model.fit(X, y, optimizer=fastnn.Adam(1e-3), batch_size=16, epochs=1, backend="numba")
    model.predict_proba(X)


def workloads(
    dtypes: Sequence[str] = ("float32",),
    losses: Sequence[str] = LOSSES,
    optimizers: Sequence[str] = OPTIMIZERS,
    threads: Sequence[int] | None = None,
) -> list[tuple[str, Callable[[], None]]]:
    """The fits and predicts whose kernels the store keeps (Design A), as (label, run).

    ``threads`` defaults to 1 and 2 (only 1 on a one-core machine).
    """
    for label, values, known in (("dtype", dtypes, DTYPES), ("loss", losses, LOSSES),
                                 ("optimizer", optimizers, OPTIMIZERS)):  # fmt: skip
        unknown = sorted(set(values) - set(known))
        if unknown or not values:
            raise ValueError(f"unknown {label} {unknown or values}; choose from {list(known)}")
    if threads is None:
        threads = (1, 2) if (os.cpu_count() or 1) > 1 else (1,)
    jobs: list[tuple[str, Callable[[], None]]] = []
    for dtype in dtypes:
        for t in threads:
            for hidden in (1, 2):  # one hidden layer, and the padded tuples of the other depths
                for loss in losses:
                    for opt in optimizers:
                        jobs.append((f"mlp {dtype} {hidden} hidden {loss} {opt} {t} thread(s)",
                                     lambda d=dtype, l=loss, o=opt, t=t, h=hidden:
                                     _mlp(d, l, o, t, h)))  # fmt: skip
            jobs.append((f"cnn {dtype} {t} thread(s)", lambda d=dtype, t=t: _cnn(d, t)))
        jobs.append((f"mlp {dtype} diagnostics",
                     lambda d=dtype: _mlp(d, losses[0], "sgd", 1, diagnostics=True)))  # fmt: skip
    return jobs


def resolve_store(store: str | os.PathLike[str] | None = None) -> Path | None:
    """``store`` as a path, or by default :func:`.jit.store_dir` (None: turned off)."""
    return store_dir() if store is None else Path(store).expanduser()


def store_entries(store: str | os.PathLike[str] | None = None) -> tuple[int, float]:
    """(index files, megabytes) of the store (0, 0 when it does not exist or is off)."""
    store = resolve_store(store)
    if store is None or not store.is_dir():
        return 0, 0.0
    files = list(store.iterdir())
    size = sum(f.stat().st_size for f in files if f.is_file())
    return sum(f.suffix == ".nbi" for f in files), size / 2**20


def compile_store(
    dtypes: Sequence[str] = ("float32",),
    losses: Sequence[str] = LOSSES,
    optimizers: Sequence[str] = OPTIMIZERS,
    store: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> StoreReport:
    """Fill the precompiled store with the kernels of :func:`workloads` (Designs A, B).

    Parameters
    ----------
    dtypes, losses, optimizers : sequence of str
        The kinds of fit to compile for; others compile on first use (Design C).
    store : path, optional
        The store directory (default: :func:`.jit.store_dir`, beside the package). A fit
        reads a store elsewhere when ``FASTNN_NUMBA_PRECOMPILED`` names it.
    progress : bool, default True
        A progress bar on standard error.

    Returns
    -------
    StoreReport

    Raises
    ------
    ValueError
        An unknown dtype, loss or optimizer, or the store turned off by the environment.
    PermissionError
        The store's parent directory is not writable.
    RuntimeError
        A workload failed (its output is in the message); the old store is kept.
    """
    workloads(dtypes, losses, optimizers)  # validate before starting anything
    target = resolve_store(store)
    if target is None:
        raise ValueError(
            f"the precompiled store is turned off ({STORE_ENV}={os.environ[STORE_ENV]!r})"
        )
    target = target.resolve()
    parent = target.parent
    reason = not_writable(parent)
    if reason is not None:
        raise PermissionError(f"cannot write the precompiled store in {parent}: {reason}")
    fresh = parent / f"{target.name}.new-{os.getpid()}"
    shutil.rmtree(fresh, ignore_errors=True)
    env = {**os.environ, STORE_ENV: str(fresh), FILLING_ENV: "1"}
    cmd = [sys.executable, "-m", __name__, ",".join(dtypes), ",".join(losses),
           ",".join(optimizers), "1" if progress else "0"]  # fmt: skip
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"fastnn compile failed (exit {done.returncode}, its error is "
                               f"above); the store at {target} is unchanged")  # fmt: skip
        n_jobs = int(done.stdout.split()[-1])
        old = parent / f"{target.name}.old-{os.getpid()}"
        if target.exists():
            target.rename(old)
        fresh.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    entries, megabytes = store_entries(target)
    return StoreReport(target, n_jobs, entries, megabytes, time.perf_counter() - start)


def _fill(dtypes: str, losses: str, optimizers: str, progress: str) -> None:
    """The child process of :func:`compile_store`: run the workloads (their kernels write to
    the store, Design B) and print how many ran."""
    import warnings

    from tqdm import tqdm

    jobs = workloads(dtypes.split(","), losses.split(","), optimizers.split(","))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny fits: convergence and speed warnings mean nothing
        for label, run in tqdm(jobs, desc="compiling", unit="fit", disable=progress != "1",
                               file=sys.stderr):  # fmt: skip
            try:
                run()
            except Exception as exc:
                raise RuntimeError(f"workload {label!r} failed: {exc}") from exc
    print(len(jobs))


if __name__ == "__main__":
    _fill(*sys.argv[1:5])
