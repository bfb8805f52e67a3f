"""``fastnn sweep``: grid or random search over recipe keys, on a Dask cluster or here.

    fastnn sweep --grid hidden=64,128 --grid lr=0.05,0.1 --epochs 2 --save best.npz
    fastnn sweep --grid lr=loguniform:0.01:0.5 --grid hidden=128,256x128 --random 20
    fastnn sweep ... --scheduler tcp://10.0.0.5:8786       # an existing cluster

Every ``KEY`` of ``fastnn.sweep.KEYS`` can be swept; the others keep the ``MNIST_98`` recipe's
values. Trials are scored on a validation split of the training data (``--metric``); the test
set only scores the best model, once. Results stream to ``--json`` (and the ``.csv`` and
``.md`` beside it); ``--resume`` continues an interrupted sweep. Exit codes: 0 done, 1 no trial
succeeded or some were lost (rerun with ``--resume``) or the model could not be saved, 2 bad
arguments or data, 130 interrupted (finished trials are kept).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence

import numpy as np

from .recipes import MNIST_98

DEFAULT_JSON = "fastnn-sweep.json"


def _assignment(text: str) -> tuple[str, object]:
    from .sweep import parse_assignment

    try:
        return parse_assignment(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``fastnn sweep``."""
    from .sweep import KEYS, METRICS
    from .sweep.trial import METRIC_ALIASES

    p = argparse.ArgumentParser(
        prog="fastnn sweep",
        description="Grid or random search over fastnn recipe keys, on Dask or in this process.",
        epilog=f"keys: {', '.join(KEYS)}. Hidden layers are written 128x64 ('none': no hidden "
        "layer), as commas separate values.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = p.add_argument
    # fmt: off
    add("--grid", type=_assignment, action="append", default=[], metavar="KEY=V1,V2",
        help="values to try for a recipe key (repeat the option for more keys); "
        "KEY=loguniform:LO:HIGH or uniform:LO:HI for --random")
    add("--random", type=int, default=None, metavar="N",
        help="random search: N draws instead of every combination (each draw runs once per "
        "listed seed)")
    add("--random-seed", type=int, default=0, help="seed of the random draws")
    add("--epochs", type=int, default=None,
        help=f"epochs of every trial (default: the recipe's {MNIST_98['epochs']})")
    add("--metric", default="accuracy", choices=[*METRIC_ALIASES, *METRICS],
        help="what the best trial maximizes/minimizes (accuracy = val_accuracy)")
    add("--dataset", default="mnist",
        help="'mnist', or an .npz file with X_train, y_train, X_test, y_test")
    add("--subset", type=int, default=None, metavar="N", help="first N training samples only")
    add("--validation-fraction", type=float, default=0.1,
        help="fraction of the training data held out to score the trials")
    add("--scheduler", default=None, metavar="ADDRESS",
        help="Dask scheduler of an existing cluster (default: a local cluster)")
    add("--workers", type=int, default=None,
        help="local cluster: worker processes (default: cores / --threads-per-worker)")
    add("--threads-per-worker", type=int, default=1,
        help="local cluster: threads of each worker (its one trial's fastnn and BLAS threads)")
    add("--trials-per-task", type=int, default=1,
        help="trials per Dask task (more for short trials: fewer scheduling round trips)")
    add("--in-process", action="store_true",
        help="run the trials here one after another (also the fallback without Dask)")
    add("--threads", type=int, default=None, help="threads of an --in-process run")
    add("--backend", default=None, help="fastnn backend of every trial (default: auto)")
    add("--json", default=DEFAULT_JSON, metavar="PATH",
        help="results JSON; the .csv and .md go beside it")
    add("--resume", action="store_true", help="continue the sweep in --json: skip finished trials")
    add("--overwrite", action="store_true", help="replace an existing --json")
    add("--save", default=None, metavar="PATH", help="save the best model (.npz, fastnn.load)")
    add("--quiet", action="store_true", help="no progress bar")
    # fmt: on
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fastnn sweep``; returns the exit code (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, message already printed)
        return int(exc.code or 0)
    try:
        return _run(args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, ImportError) as exc:
        print(f"fastnn sweep: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fastnn sweep: interrupted; the finished trials are in {args.json} "
              "(rerun with --resume to continue)", file=sys.stderr)  # fmt: skip
        return 130


def _space(args: argparse.Namespace) -> tuple[dict, dict]:
    space: dict = {}
    for key, values in args.grid:
        if key in space:
            raise ValueError(f"--grid {key} given twice: list its values in one --grid")
        space[key] = values
    if not space:
        raise ValueError("nothing to sweep: give at least one --grid KEY=V1,V2")
    base = {}
    if args.epochs is not None:
        if "epochs" in space:
            raise ValueError("give epochs either with --epochs or with --grid epochs=..., not both")
        base["epochs"] = args.epochs
    return space, base


def _data(args: argparse.Namespace):  # noqa: ANN202
    from .cli_train import load_data
    from .sweep import SweepData

    X, y, X_test, y_test = load_data(args.dataset, "float32")
    if args.subset is not None:
        if args.subset < 2:
            raise ValueError(f"--subset must be >= 2, got {args.subset}")
        X, y = X[: args.subset], y[: args.subset]
    if not 0.0 < args.validation_fraction < 1.0:
        raise ValueError(f"--validation-fraction must be in (0, 1), got {args.validation_fraction}")
    # A fixed split: a resumed sweep scores its new trials on the same samples.
    order = np.random.default_rng(0).permutation(len(X))
    n_val = max(1, int(round(len(X) * args.validation_fraction)))
    val, train = order[:n_val], order[n_val:]
    n_classes = int(max(np.max(y), np.max(y_test))) + 1
    return SweepData(X[train], y[train], X[val], y[val], n_classes), (X_test, y_test)


def _run(args: argparse.Namespace) -> int:
    from .sweep import sweep

    space, base = _space(args)
    in_process = args.in_process
    if not in_process and importlib.util.find_spec("distributed") is None:
        if args.scheduler:
            raise ImportError("--scheduler needs Dask: pip install 'fastnn[dask]'")
        print("fastnn sweep: dask is not installed (pip install 'fastnn[dask]'): running the "
              "trials in this process, one after another", file=sys.stderr)  # fmt: skip
        in_process = True
    data, test = _data(args)
    print(f"data: {len(data.X)} training, {len(data.X_val)} validation, {len(test[0])} test "
          f"samples, {data.n_features} features, {data.n_classes} classes")  # fmt: skip
    result = sweep(
        space, data, n_trials=args.random, metric=args.metric, base=base, seed=args.random_seed,
        scheduler=args.scheduler, n_workers=args.workers,
        threads_per_worker=args.threads_per_worker, trials_per_task=args.trials_per_task,
        in_process=in_process, threads=args.threads, backend=args.backend, results=args.json,
        resume=args.resume, overwrite=args.overwrite, save=args.save, progress=not args.quiet,
        log=lambda note: print(f"trials run {note}", flush=True),
    )  # fmt: skip
    return _report(result, list(space), test)


def _describe(config: dict, keys: Sequence[str]) -> str:
    from .sweep.space import format_value

    return " ".join(f"{k}={format_value(k, config.get(k))}" for k in keys)


def _threads_line(rows: list[dict]) -> str:
    seen = [r["threads"] for r in rows if r.get("threads")]
    if not seen:
        return "threads per trial: none reported"
    parts = []
    for key in ("fastnn", "blas", "openmp", "numba"):
        values = sorted({n for t in seen for n in np.atleast_1d(t.get(key, [])).tolist()})
        if values:
            parts.append(f"{key} {'/'.join(map(str, values))}")
    checks = {t.get("ok") for t in seen}
    verdict = ("not pinned" if checks == {None} else "as pinned" if checks == {True}
               else "NOT as pinned, see the rows")  # fmt: skip
    return f"threads per trial: {', '.join(parts)} ({verdict})"


def _report(result, keys: list[str], test: tuple) -> int:  # noqa: ANN001
    ok, failed, lost = (result.count(s) for s in ("ok", "failed", "lost"))
    print(f"trials: {result.n_configs} in the sweep, {result.n_skipped} already done; "
          f"{ok} ok, {failed} failed, {lost} lost")  # fmt: skip
    for row in [r for r in result.rows if r["status"] != "ok"][:3]:
        print(f"  trial {row['trial']} {row['status']} ({_describe(row['config'], keys)}): "
              f"{row['error']}")  # fmt: skip
    print(_threads_line(result.rows))
    status = 1 if ok == 0 or lost else 0
    for row in result.top(5):
        metrics = " ".join(f"{k} {v:.4f}" for k, v in row["metrics"].items() if v is not None)
        print(f"  trial {row['trial']:>4}  {metrics}  {_describe(row['config'], keys)}")
    if result.best is not None:
        print(f"best: trial {result.best['trial']}, {result.metric} "
              f"{result.best['metrics'][result.metric]:.4f}: "
              f"{_describe(result.best['config'], keys)}")  # fmt: skip
    if result.model is not None:
        accuracy = result.model.evaluate(*test).get("accuracy")
        if accuracy is not None:
            print(f"test accuracy of the best model: {accuracy:.4f}")
    if "json" in result.paths:
        print(f"results written to {result.paths['json']}, {result.paths['csv']}, "
              f"{result.paths['md']}")  # fmt: skip
    if result.save_error:
        print(f"fastnn sweep: cannot save the best model: {result.save_error}", file=sys.stderr)
        status = 1
    elif "model" in result.paths:
        print(f"best model saved to {result.paths['model']}")
    if lost:
        print(f"fastnn sweep: {lost} trials were lost with their worker: rerun with --resume",
              file=sys.stderr)  # fmt: skip
    return status
