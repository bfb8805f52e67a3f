"""``fastnn bench``: time MNIST training of every backend against the reference and peers.

Examples::

    fastnn bench --quick                       # < 1 minute: 10k samples, batches 32, 128, full
    fastnn bench                               # full run: 60k samples, batches 1, 32, 128, full
    fastnn bench --backends numba --peers none --batch-sizes 32 --epochs 5
    fastnn bench --time-to-accuracy 0.98       # adds fastnn's best recipe vs PyTorch
    fastnn bench --update-readme               # regenerate benchmarks/README.md's results
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from .busy import competitor
from .report import limit_seconds
from .runner import QUICK, BenchConfig

DEFAULT_JSON = "fastnn-bench.json"
DEFAULT_MARKDOWN = "fastnn-bench.md"
DEFAULT_README = "benchmarks/README.md"


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _batch_sizes(text: str) -> list[int | None]:
    out: list[int | None] = []
    for part in (p.strip().lower() for p in text.split(",") if p.strip()):
        if part == "full":
            out.append(None)
        elif part.isdigit() and int(part) > 0:
            out.append(int(part))
        else:
            raise argparse.ArgumentTypeError(
                f"batch sizes are positive integers or 'full', got {part!r}"
            )
    if not out:
        raise argparse.ArgumentTypeError("no batch size given")
    return out


def _names(text: str) -> list[str]:
    names = [p.strip().lower() for p in text.split(",") if p.strip()]
    return [] if names in ([], ["none"]) else names


def _fraction(text: str) -> float:
    value = float(text)
    if value > 1:
        value /= 100.0  # 98 means 98 %
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(
            f"accuracy must be in (0, 1] (or a percentage), got {text}"
        )
    return value


def _positive(kind: type) -> object:
    def parse(text: str) -> object:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fastnn bench",
        description="Seconds per training epoch of the MLP 784-hidden-10 on MNIST for each "
        "fastnn backend, the NumPy reference and peer libraries, side by side in one run.",
    )
    a = p.add_argument
    a(
        "--batch-sizes",
        type=_batch_sizes,
        default=None,
        metavar="LIST",
        help="comma list of batch sizes, 'full' = all samples (default 1,32,128,full)",
    )
    a(
        "--hidden",
        type=_int_list,
        default=[128],
        metavar="LIST",
        help="hidden layer widths, comma list for deeper nets (default 128)",
    )
    a(
        "--backends",
        type=_names,
        default=None,
        metavar="LIST",
        help="fastnn backends (default: all available; 'numpy' is the reference)",
    )
    a(
        "--peers",
        type=_names,
        default=None,
        metavar="LIST",
        help="peer libraries, e.g. torch,sklearn, or 'none' (default: those installed)",
    )
    a("--epochs", type=_positive(int), default=None, help="timed epochs per row (default 3)")
    a(
        "--repeats",
        type=_positive(int),
        default=None,
        help="independent runs of every row, interleaved (default 1)",
    )
    a("--warmup", type=int, default=1, help="untimed warm-up epochs per row (default 1)")
    a("--threads", type=_positive(int), default=None, help="threads for every implementation")
    a(
        "--busy-core",
        type=int,
        default=None,
        metavar="N",
        help="run beside a competing process that keeps core N busy (a shared machine)",
    )
    a("--lr", type=_positive(float), default=0.05, help="SGD learning rate (default 0.05)")
    a("--seed", type=int, default=0, help="seed of the initial weights and shuffling")
    a(
        "--n-train",
        type=_positive(int),
        default=None,
        metavar="N",
        help="use the first N training samples (default: all; --quick: 10000)",
    )
    a(
        "--quick",
        action="store_true",
        help=f"a sub-minute run: {QUICK['n_train']:,} samples, batch sizes 32,128,full",
    )
    a(
        "--time-to-accuracy",
        type=_fraction,
        default=None,
        metavar="ACC",
        help="also time fastnn's best recipe and PyTorch until test accuracy >= ACC (e.g. 0.98)",
    )
    a(
        "--in-process",
        action="store_true",
        help="run every row in this process (faster; no per-row memory or start-up numbers)",
    )
    a(
        "--startup",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="cold/warm start-up probe per implementation (default: on, off with --quick)",
    )
    a("--data-root", default=None, help="directory of the MNIST files (default: FASTNN_DATA)")
    a("--json", default=DEFAULT_JSON, metavar="PATH", help="JSON report ('none' to skip)")
    a(
        "--markdown",
        default=DEFAULT_MARKDOWN,
        metavar="PATH",
        help="markdown report ('none' to skip)",
    )
    a("--plot", default=None, metavar="PATH", help="PNG bar chart (needs matplotlib)")
    a(
        "--update-readme",
        nargs="?",
        const=DEFAULT_README,
        default=None,
        metavar="PATH",
        help=f"replace the results block of PATH (default {DEFAULT_README}) with this run",
    )
    a("--no-progress", action="store_true", help="no progress bar")
    a(
        "--predict",
        action="store_true",
        help="only time prediction: batch-1 latency (median, p99) and batch-1024 throughput of "
        "the 784-128-10 MLP on MNIST test digits, per backend, onnxruntime and torch",
    )
    a(
        "--model",
        choices=("mlp", "cnn", "all"),
        default=None,
        help="mlp: the MLP tables; cnn: MNIST_99's CNN rows (batch 32, 128, 256) and time to "
        "99%%; all: both (default: all, mlp with --quick)",
    )
    return p  # fmt: skip


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """The :class:`BenchConfig` described by parsed command-line arguments."""
    settings: dict = dict(QUICK) if args.quick else {}
    explicit = {
        "batch_sizes": args.batch_sizes, "epochs": args.epochs, "repeats": args.repeats,
        "n_train": args.n_train, "startup": args.startup,
    }  # fmt: skip
    settings.update({k: v for k, v in explicit.items() if v is not None})
    return BenchConfig(
        hidden=args.hidden, backends=args.backends, peers=args.peers, warmup=args.warmup,
        threads=args.threads, lr=args.lr, seed=args.seed, isolate=not args.in_process,
        time_to_accuracy=args.time_to_accuracy,
        data_root=args.data_root, quick=args.quick, **settings,
    )  # fmt: skip


def _enabled(path: str | None) -> bool:
    return bool(path) and path.lower() != "none"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fastnn bench`` with ``argv`` (without the program name); returns the exit code.

    Exit code 0 when every row ran (missing peers or backends are reported, not failures),
    1 when a row failed, 2 on a usage error.
    """
    from . import report as rep

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on errors; return its code
        return int(exc.code or 0)
    if args.warmup < 0:
        parser.print_usage(sys.stderr)
        print("fastnn bench: --warmup must be >= 0", file=sys.stderr)
        return 2
    config = config_from_args(args)
    try:
        with competitor(args.busy_core):
            if args.predict:
                return _predict(config, args)
            report = _run(args, config, args.model or ("mlp" if args.quick else "all"))
    except (ValueError, FileNotFoundError) as exc:
        print(f"fastnn bench: {exc}", file=sys.stderr)
        return 2
    report["command"] = shlex.join(["fastnn", "bench", *argv])
    report["busy_core"] = args.busy_core
    md = rep.markdown(report) if report.get("rows") else ""
    if report.get("cnn"):
        from .cnn import cnn_markdown

        md += "\n" + cnn_markdown(report["cnn"])
    if _enabled(args.json):
        rep.write_json(report, args.json)
        print(f"wrote {args.json}")
    if _enabled(args.markdown):
        with open(args.markdown, "w", encoding="utf-8") as fh:
            fh.write(md)
        print(f"wrote {args.markdown}")
    if args.update_readme:
        rep.update_readme(md, args.update_readme)
        print(f"updated {args.update_readme}")
    if args.plot:
        try:
            rep.plot(report, args.plot)
            print(f"wrote {args.plot}")
        except ImportError:
            print("fastnn bench: --plot needs matplotlib (pip install matplotlib)", file=sys.stderr)
    rows = [*report.get("rows", []), *report.get("cnn", {}).get("rows", [])]
    return 1 if any(r.get("error") for r in rows) else 0


def _predict(config: BenchConfig, args: argparse.Namespace) -> int:
    """``fastnn bench --predict``: prediction speed with the same weights in every runtime."""
    import json

    from .. import set_num_threads
    from ..threads import get_num_threads
    from . import predict as bp
    from .runner import load_data

    threads = int(config.threads or get_num_threads())
    set_num_threads(threads)
    try:
        X_test = load_data(config)[0][2]
    except (FileNotFoundError, OSError):
        X_test = None  # random inputs instead of digits
    model = bp.mlp([784, *config.hidden, 10])
    predictors, skipped = bp.default_predictors(model)
    rows = bp.measure_predict(predictors, 784, calls=2000, repeats=60, inputs=X_test)
    print(
        f"prediction, MLP 784-{'-'.join(map(str, config.hidden))}-10, {threads} threads, "
        f"inputs: {'MNIST test digits' if X_test is not None else 'random'}"
    )
    print(bp.format_rows(rows))
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    if _enabled(args.json):
        from dataclasses import asdict

        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"predict": [asdict(r) for r in rows], "threads": threads}, fh, indent=1)
        print(f"wrote {args.json}")
    return 0


def _run(args: argparse.Namespace, config: BenchConfig, model: str) -> dict:
    """The MLP benchmark and/or the CNN benchmark, as ``model`` says."""
    from . import report as rep
    from .runner import run_benchmark

    report: dict = {"rows": []}
    if model in ("mlp", "all"):
        print(rep.console_header(), flush=True)
        report = run_benchmark(
            config, progress=not args.no_progress,
            on_row=lambda row: _print_line(rep.console_line(row)),
        )  # fmt: skip
        print(_summary(report))
    if model in ("cnn", "all"):
        from ..threads import get_num_threads
        from .cnn import run_cnn_benchmark

        report["cnn"] = run_cnn_benchmark(
            threads=int(config.threads or get_num_threads()), backends=config.backends,
            peers=config.peers != [], n_train=config.n_train, data_root=config.data_root,
            log=_print_line,
        )  # fmt: skip
    return report


def _print_line(line: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(line)


def _summary(report: dict) -> str:
    """The part of the report that the live table does not show."""
    lines = [f"SGEMM ceiling: {report['sgemm_gflops']:.1f} GFLOP/s "
             f"({report['machine']['threads']} threads); "
             f"{report['config']['flops_per_sample']:,} FLOP per sample"]  # fmt: skip
    c, limit_s = report["config"], limit_seconds(report)
    if limit_s is not None:
        lines.append(f"work really done: {c['nonzero_flops_per_sample']:,.0f} FLOP per sample "
                     f"({c['nonzero_inputs_per_sample']:.0f} non-zero inputs); limit "
                     f"{limit_s:.3f} s per epoch at the SGEMM ceiling")  # fmt: skip
    for r in report["rows"]:
        if r.get("speedup_vs_reference") is None and r["impl"] != "numpy" and not r.get("error"):
            lines.append("(no speed-up column: the 'numpy' reference was not part of this run)")
            break
    for s in report["skipped"]:
        lines.append(f"not run: {s['impl']} ({s['reason']})")
    for name, e in report.get("startup", {}).items():
        parts = [f"{phase} {e[phase]['startup_s']:.2f} s" if "startup_s" in e[phase]
                 else f"{phase} error" for phase in ("cold", "warm", "scratch")
                 if phase in e]  # fmt: skip
        lines.append(f"start-up {name}: {', '.join(parts)} (import + first epoch - steady epoch)")
    t = report.get("time_to_accuracy")
    for r in (t or {}).get("results", []):
        if "error" in r:
            lines.append(f"time to {t['target']:.1%}: {r['impl']} failed: {r['error']}")
        elif r["reached"]:
            lines.append(f"time to {t['target']:.1%}: {r['impl']} {r['seconds']:.1f} s "
                         f"in {r['epochs']} epochs")  # fmt: skip
        else:
            best = max(r["accuracy_curve"], default=0.0)
            lines.append(f"time to {t['target']:.1%}: {r['impl']} not reached in "
                         f"{r['epochs']} epochs (best {best:.2%})")  # fmt: skip
    lines.append(f"benchmark took {report['bench_seconds']:.0f} s")
    return "\n".join(lines)
