"""Run the benchmark: choose the implementations, schedule the jobs, assemble the report.

Fairness rules this module enforces: every row trains the same MLP from the same initial
weights with the same hyper-parameters on the same data, under the same thread limit; the
repeats loop is outermost and, inside it, every implementation runs one batch size before the
next batch size starts, so a noisy minute on a shared machine hits all implementations
alike; each row runs in a fresh process unless ``isolate=False``.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import registry, tta
from .flops import (
    FLOP_FORMULA,
    FLOP_FORMULA_NONZERO,
    flops_per_epoch,
    flops_per_sample,
    mean_nonzeros,
    nonzero_flops_per_sample,
    sgemm_gflops,
)
from .machine import machine_info
from .worker import run_in_subprocess, run_job, save_inputs

REFERENCE = "numpy"


@dataclass
class BenchConfig:
    """What to measure. ``None`` in ``batch_sizes`` is the full batch (one step per epoch).

    ``backends``/``peers`` None mean every available one. ``n_train`` None means all
    training samples. ``isolate`` runs each row in a fresh process (per-row peak memory and
    start-up); ``startup`` adds a cold/warm start-up probe per implementation.
    """

    batch_sizes: list[int | None] = field(default_factory=lambda: [1, 32, 128, None])
    hidden: list[int] = field(default_factory=lambda: [128])
    backends: list[str] | None = None
    peers: list[str] | None = None
    epochs: int = 3
    repeats: int = 1
    warmup: int = 1
    threads: int | None = None
    lr: float = 0.05
    seed: int = 0
    n_train: int | None = None
    activation: str = "relu"
    isolate: bool = True
    startup: bool = True
    time_to_accuracy: float | None = None
    data_root: str | None = None
    timeout: float = 1800.0
    quick: bool = False


# --quick: a subset of MNIST, three batch sizes, no start-up probes (a cold Numba compile
# alone takes many seconds); under a minute on the project's 2-core machine.
QUICK = {"n_train": 10_000, "batch_sizes": [32, 128, None], "epochs": 3, "repeats": 1,
         "startup": False}  # fmt: skip


def quick_config(**overrides: object) -> BenchConfig:
    """The ``--quick`` configuration, with ``overrides`` applied."""
    return BenchConfig(**{**QUICK, "quick": True, **overrides})  # type: ignore[arg-type]


def select_impls(config: BenchConfig) -> tuple[list[registry.Impl], list[dict]]:
    """The implementations to run (reference first) and the skipped ones with a reason.

    Unknown names raise ValueError; unavailable ones are skipped and reported.
    """
    problems = registry.load_plugins()
    chosen: list[registry.Impl] = []
    skipped = [
        {"impl": module, "kind": "plugin", "reason": why} for module, why in problems.items()
    ]
    for kind, names in (("backend", config.backends), ("peer", config.peers)):
        known = [impl.name for impl in registry.registered(kind)]
        wanted = known if names is None else list(dict.fromkeys(names))
        if kind == "peer" and "sklearn" in wanted and "fastnn-sklearn" in known:
            # Users asking for the scikit-learn peer also see the one-import-line switch.
            wanted.insert(wanted.index("sklearn") + 1, "fastnn-sklearn")
            wanted = list(dict.fromkeys(wanted))
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise ValueError(
                f"unknown {kind}(s) {', '.join(unknown)}; choose from {', '.join(known)}"
            )
        for name in wanted:
            impl = registry.get_impl(name)
            reason = registry.unavailable_reason(impl)
            if reason is None:
                chosen.append(impl)
            else:
                skipped.append({"impl": name, "kind": kind, "reason": reason})
    chosen.sort(key=lambda impl: impl.name != REFERENCE)  # stable: reference first
    return chosen, skipped


def load_data(config: BenchConfig) -> tuple[tuple, str]:
    """MNIST (through ``fastnn.datasets.load_mnist``) and a description of it."""
    from ..datasets import load_mnist

    X, y, X_test, y_test = load_mnist(root=config.data_root)
    return (X, y, X_test, y_test), "MNIST"


def initial_weights(layer_sizes: list[int], activation: str, seed: int) -> list[np.ndarray]:
    """fastnn's initialisation (He for ReLU) of the MLP, shared by every implementation."""
    from .. import Dense, Sequential

    acts = [activation] * (len(layer_sizes) - 2) + [None]
    pairs = zip(layer_sizes[:-1], layer_sizes[1:], acts, strict=True)
    return Sequential([Dense(d, k, a) for d, k, a in pairs], seed=seed).get_weights()


class _Runner:
    """Runs job specs in subprocesses (with files in a temporary directory) or in process."""

    def __init__(self, config: BenchConfig, workdir: Path, bar) -> None:  # noqa: ANN001
        self.config = config
        self.workdir = workdir
        self.bar = bar  # tqdm: one step per job
        self.inputs: dict[str, tuple[tuple, list[np.ndarray]]] = {}

    def add_inputs(self, key: str, data: tuple, weights: list[np.ndarray]) -> None:
        self.inputs[key] = (data, weights)
        if self.config.isolate:
            (self.workdir / key).mkdir()
            save_inputs(self.workdir / key, data, weights)

    def __call__(self, spec: dict, inputs: str, label: str, env: dict | None = None) -> dict:
        self.bar.set_postfix_str(label)
        t0 = time.perf_counter()
        if self.config.isolate:
            spec = {**spec, "data_dir": str(self.workdir / inputs)}
            result = run_in_subprocess(spec, env=env, timeout=self.config.timeout)
        else:
            from threadpoolctl import threadpool_limits

            data, weights = self.inputs[inputs]
            try:
                with threadpool_limits(limits=None):  # give back the BLAS/OpenMP thread counts
                    result = run_job(spec, data, weights)
            except Exception as exc:  # one failing row must not end the benchmark
                result = {"error": f"{type(exc).__name__}: {exc}"}
        result["job_s"] = time.perf_counter() - t0
        self.bar.update()
        return result


def _spec(impl: registry.Impl, mode: str, batch_size: int, base: dict) -> dict:
    return {**base, "mode": mode, "impl": impl.name, "factory": impl.factory,
            "import_code": impl.import_code, "options": dict(impl.options),
            "batch_size": int(batch_size)}  # fmt: skip


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def assemble_row(impl: registry.Impl, batch_size: int, results: list[dict], n_train: int,
                 layer_sizes: list[int], sgemm: float,
                 nonzero_flops: float | None = None) -> dict:  # fmt: skip
    """One report row from the results of its repeats (medians; peak memory is the maximum).

    ``nonzero_flops`` (per sample, see :mod:`.flops`) gives the row's ``pct_of_limit``."""
    ok = [r for r in results if "error" not in r]
    row: dict = {"impl": impl.name, "label": impl.label, "batch_size": int(batch_size),
                 "full_batch": batch_size >= n_train,
                 "iterations_per_epoch": math.ceil(n_train / batch_size)}  # fmt: skip
    if not ok:
        row.update({k: None for k in ("epoch_s", "compile_s", "samples_per_s", "gflops",
                                      "pct_of_sgemm", "pct_of_limit", "test_accuracy",
                                      "peak_rss_mb")})  # fmt: skip
        row.update(epoch_s_all=[], speedup_vs_reference=None,
                   error=results[0]["error"] if results else "not run")  # fmt: skip
        return row
    epochs = [t for r in ok for t in r["epoch_s_all"]]
    epoch_s = float(np.median(epochs))
    gflops = flops_per_epoch(layer_sizes, n_train) / epoch_s / 1e9
    rss = [r["peak_rss_mb"] for r in ok if r.get("peak_rss_mb") is not None]
    imports = [r["import_s"] for r in ok if r.get("import_s") is not None]
    first = _median([r["first_epoch_s"] for r in ok])
    row.update(
        epoch_s=epoch_s, epoch_s_all=epochs,
        compile_s=_median([r["compile_s"] for r in ok]),
        samples_per_s=n_train / epoch_s, gflops=gflops,
        pct_of_sgemm=100.0 * gflops / sgemm if sgemm else None,
        pct_of_limit=(100.0 * nonzero_flops * n_train / epoch_s / 1e9 / sgemm
                      if sgemm and nonzero_flops else None),
        speedup_vs_reference=None,
        test_accuracy=_median([r["test_accuracy"] for r in ok]),
        peak_rss_mb=max(rss) if rss else None,
        data_rss_mb=_median([r["data_rss_mb"] for r in ok if r.get("data_rss_mb") is not None]),
        first_epoch_s=first, import_s=_median(imports),
        startup_s=(_median(imports) + first - epoch_s) if imports else None,
        eval_s=_median([r["eval_s"] for r in ok]),
        job_s=_median([r["job_s"] for r in ok if "job_s" in r]),
        backend=ok[0].get("backend"), blas=ok[0].get("blas"),
        repeats=len(ok),
    )  # fmt: skip
    if len(ok) < len(results):
        row["error"] = next(r["error"] for r in results if "error" in r)
    return row


def add_speedups(rows: list[dict]) -> None:
    """Fill ``speedup_vs_reference``: reference epoch time / row epoch time, same batch size."""
    ref = {r["batch_size"]: r["epoch_s"] for r in rows if r["impl"] == REFERENCE and r["epoch_s"]}
    for row in rows:
        if row["epoch_s"] and row["batch_size"] in ref:
            row["speedup_vs_reference"] = ref[row["batch_size"]] / row["epoch_s"]


def run_benchmark(
    config: BenchConfig,
    data: tuple | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    on_row: Callable[[dict], None] | None = None,
) -> dict:
    """Run the benchmark and return the report (see ``benchmarks/README.md`` for its keys).

    Parameters
    ----------
    config : BenchConfig
    data : (X_train, y_train, X_test, y_test), optional
        Arrays of shapes (n, 784) float32, (n,) int, (m, 784) float32, (m,) int; default MNIST.
    progress : bool
        Show a tqdm bar over the jobs.
    log : callable, optional
        Receives status lines (default: ``tqdm.write``).
    on_row : callable, optional
        Receives each partial row (first repeat) as soon as it is measured.

    Returns
    -------
    dict
        ``machine``, ``sgemm_gflops``, ``config``, ``rows``, ``skipped``, ``startup`` and,
        when asked, ``time_to_accuracy``.
    """
    from tqdm.auto import tqdm

    from ..threads import get_num_threads

    t_start = time.perf_counter()
    write = log or tqdm.write
    threads = int(config.threads or get_num_threads())
    impls, skipped = select_impls(config)
    for s in skipped:
        write(f"skipped {s['impl']}: {s['reason']}")
    source = "user-supplied arrays"
    if data is None:
        data, source = load_data(config)
    full = _as_arrays(data)
    n_train = min(config.n_train or len(full[0]), len(full[0]))
    train = (full[0][:n_train], full[1][:n_train], full[2], full[3])
    layer_sizes = [train[0].shape[1], *[int(h) for h in config.hidden], _n_classes(full)]
    batch_sizes = [n_train if b is None else min(int(b), n_train) for b in config.batch_sizes]
    batch_sizes = list(dict.fromkeys(batch_sizes))

    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        sgemm = sgemm_gflops()
        machine = machine_info(threads)
    report: dict = {
        "machine": machine,
        "sgemm_gflops": sgemm["gflops"],
        "sgemm": sgemm,
        "config": _config_section(config, layer_sizes, batch_sizes, train, source, threads),
        "skipped": skipped,
        "rows": [],
        "startup": {},
    }
    base = {"activation": config.activation, "optimizer": {"name": "sgd", "lr": config.lr},
            "threads": threads, "seed": config.seed, "warmup": config.warmup,
            "epochs": config.epochs}  # fmt: skip
    recipe = recipe_source = None
    if config.time_to_accuracy is not None:
        recipe, recipe_source = tta.best_recipe()
    tta_impls = [i for i in impls if i.name == "torch"] if recipe else []
    n_jobs = config.repeats * len(batch_sizes) * len(impls)
    if config.startup and config.isolate:
        n_jobs += sum(len(_startup_envs(impl, Path())) for impl in impls)
    n_jobs += 1 + len(tta_impls) if recipe else 0
    bar = tqdm(total=n_jobs, desc="fastnn bench", unit="job", disable=not progress, leave=False)

    with tempfile.TemporaryDirectory(prefix="fastnn-bench-") as tmp:
        run = _Runner(config, Path(tmp), bar)
        run.add_inputs("rows", train, initial_weights(layer_sizes, config.activation, config.seed))
        results: dict[tuple[str, int], list[dict]] = {}
        first_rows: list[dict] = []  # the first repeat, for the live table

        def row_of(impl: registry.Impl, bs: int, runs: list[dict]) -> dict:
            return assemble_row(impl, bs, runs, n_train, layer_sizes, sgemm["gflops"],
                                report["config"]["nonzero_flops_per_sample"])  # fmt: skip

        for _ in range(config.repeats):
            for bs in batch_sizes:
                for impl in impls:
                    label = f"{impl.name} batch {'full' if bs == n_train else bs}"
                    result = run(_spec(impl, "row", bs, base), "rows", label)
                    results.setdefault((impl.name, bs), []).append(result)
                    if on_row is not None and len(results[(impl.name, bs)]) == 1:
                        first_rows.append(row_of(impl, bs, [result]))
                        add_speedups(first_rows)
                        on_row(first_rows[-1])
        rows = [row_of(impl, bs, results[(impl.name, bs)]) for bs in batch_sizes for impl in impls]
        add_speedups(rows)
        report["rows"] = rows
        if config.startup and config.isolate:
            report["startup"] = _startup(run, impls, rows, base, max(batch_sizes), Path(tmp))
        if recipe is not None:
            report["time_to_accuracy"] = _time_to_accuracy(
                run, recipe, str(recipe_source), float(config.time_to_accuracy), full, threads,
                tta_impls,
            )  # fmt: skip
    bar.close()
    report["bench_seconds"] = time.perf_counter() - t_start
    return report


def _as_arrays(data: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(X_train, y_train, X_test, y_test)`` as C-contiguous float32 and int64 arrays."""
    X, y, X_test, y_test = data
    images = (np.ascontiguousarray(a, dtype=np.float32) for a in (X, X_test))
    labels = (np.asarray(a, dtype=np.int64) for a in (y, y_test))
    (X, X_test), (y, y_test) = images, labels
    return X, y, X_test, y_test


def _n_classes(data: tuple) -> int:
    return int(max(data[1].max(), data[3].max())) + 1


def _config_section(config: BenchConfig, layer_sizes: list[int], batch_sizes: list[int],
                    train: tuple, source: str, threads: int) -> dict:  # fmt: skip
    """The ``config`` section of the report: what every row shares."""
    nnz = mean_nonzeros(train[0])
    return {
        "hidden": layer_sizes[1:-1], "layer_sizes": layer_sizes, "lr": config.lr,
        "epochs": config.epochs, "warmup_epochs": config.warmup, "repeats": config.repeats,
        "dtype": "float32", "activation": config.activation, "loss": "softmax_cross_entropy",
        "optimizer": "sgd (momentum 0, weight decay 0)", "batch_sizes": batch_sizes,
        "n_train": len(train[0]), "n_test": len(train[2]), "data": source, "seed": config.seed,
        "threads": threads, "isolated_processes": config.isolate, "quick": config.quick,
        "flops_per_sample": flops_per_sample(layer_sizes), "flop_formula": FLOP_FORMULA,
        "nonzero_inputs_per_sample": nnz,
        "nonzero_flops_per_sample": nonzero_flops_per_sample(layer_sizes, nnz),
        "nonzero_flop_formula": FLOP_FORMULA_NONZERO,
    }  # fmt: skip


def _startup_envs(impl: registry.Impl, tmp: Path) -> dict[str, dict[str, str]]:
    """The environment of each start-up phase of ``impl`` (see :func:`_startup`)."""
    cache = str(tmp / f"jit-cache-{impl.name}")
    envs = {"cold": {"NUMBA_CACHE_DIR": cache}, "warm": {"NUMBA_CACHE_DIR": cache}}
    if impl.name == "numba":
        envs["scratch"] = {"NUMBA_CACHE_DIR": str(tmp / "jit-scratch-numba"),
                           "FASTNN_NUMBA_PRECOMPILED": "off"}  # fmt: skip
    return envs


def _startup(run: _Runner, impls: list[registry.Impl], rows: list[dict], base: dict, bs: int,
             tmp: Path) -> dict:  # fmt: skip
    """Cold and warm start-up per implementation: import + first epoch - steady epoch.

    Cold: a fresh process with an empty JIT cache (``NUMBA_CACHE_DIR`` pointed at a new
    directory, so nobody's real cache is touched). Warm: a second fresh process reusing that
    now filled cache. The operating system's file cache is warm in both. Numba's cold start
    reads the precompiled store of ``fastnn compile`` where one exists (its kernel count is
    reported); ``scratch`` is a third process with an empty cache and the store turned off,
    which compiles everything.
    """
    steady = {r["impl"]: r["epoch_s"] for r in rows if r["batch_size"] == bs}
    out: dict = {}
    for impl in impls:
        envs = _startup_envs(impl, tmp)
        entry: dict = {"batch_size": bs, "steady_epoch_s": steady.get(impl.name)}
        if "scratch" in envs:
            from ..backends.numba.precompile import store_entries

            entry["precompiled_kernels"] = store_entries()[0]
        for phase, env in envs.items():
            r = run(_spec(impl, "startup", bs, base), "rows", f"{impl.name} {phase} start-up", env)
            if "error" in r or entry["steady_epoch_s"] is None:
                entry[phase] = {"error": r.get("error", "no steady epoch time")}
                continue
            entry[phase] = {
                "import_s": r["import_s"],
                "first_epoch_s": r["first_epoch_s"],
                "startup_s": r["import_s"] + r["first_epoch_s"] - entry["steady_epoch_s"],
            }
        out[impl.name] = entry
    return out


def _time_to_accuracy(run: _Runner, recipe: dict, source: str, target: float, data: tuple,
                      threads: int, peers: list[registry.Impl]) -> dict:  # fmt: skip
    """fastnn's best configuration, and PyTorch with the same one, until ``target`` accuracy."""
    n = len(data[0])
    sizes = [data[0].shape[1], *recipe["hidden"], _n_classes(data)]
    run.add_inputs("tta", data, initial_weights(sizes, recipe["activation"], recipe["seed"]))
    bs = n if recipe["batch_size"] is None else min(recipe["batch_size"], n)
    base = {"activation": recipe["activation"], "optimizer": recipe["optimizer"],
            "threads": threads, "seed": recipe["seed"], "epochs": recipe["epochs"],
            "target": target}  # fmt: skip
    fastnn_impl = registry.Impl(
        name="fastnn", kind="backend", factory="fastnn.bench.trainers:fastnn_trainer",
        import_code=f"import fastnn; fastnn.set_backend({recipe['backend']!r})",
        options={"backend": recipe["backend"]}, label=f"fastnn, backend {recipe['backend']}",
    )  # fmt: skip
    results = []
    for impl in (fastnn_impl, *peers):
        r = run(_spec(impl, "tta", bs, base), "tta", f"{impl.name} time to {target:.1%}")
        results.append({"impl": impl.name, **{k: v for k, v in r.items() if k != "traceback"}})
    return {"target": target, "config": recipe, "source": source, "batch_size": bs,
            "n_train": n, "results": results}  # fmt: skip
