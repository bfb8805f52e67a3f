"""Sweep throughput: trials per minute on a Dask LocalCluster against one process, and the
per-trial scheduling overhead.

    python benchmarks/sweep_throughput.py                       # generated MNIST-shaped data
    python benchmarks/sweep_throughput.py --trials 24 --samples 54000 --hidden 512

Measured, side by side in one run:

1. the same ``--trials`` trials (identical work: one configuration, different seeds) run one
   after another in this process with ``--threads`` (2) threads, then with 1 thread, and on
   ``LocalCluster(--workers (2) x 1 thread)``; all after a warm-up (imports, JIT caches), the
   cluster's start-up timed apart;
2. the scheduling overhead of one trial: a trivial task's round trip (submit -> result, one at a
   time), and a trivial trial through the whole sweep machinery (task, row, thread report,
   result files), with 1 and with 10 trials per task;
3. the one-off scatter of the data to every worker.

Printed as a markdown table (``--json PATH`` also writes the numbers). The data is generated
(``fastnn.datasets.make_blobs``, 784 features, 10 classes) so the script runs anywhere.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fastnn.datasets import make_blobs
from fastnn.sweep import SweepData, TrialOutcome, default_cluster, sweep


def _trivial_trial(config, data, backend=None) -> TrialOutcome:  # noqa: ANN001
    """No training: what a sweep costs per trial besides the training itself."""
    return TrialOutcome(dict.fromkeys(("val_accuracy", "val_loss")), {}, [], 0)


def _noop(i: int) -> int:
    return i


def _data(n: int) -> SweepData:
    X, y = make_blobs(n + n // 9, 784, 10, spread=0.5, seed=0, dtype="float32")
    return SweepData(X[:n], y[:n], X[n:], y[n:], n_classes=10)


def _timed_sweep(space: dict, data: SweepData, base: dict, **kwargs) -> tuple[float, list]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = sweep(space, data, base=base, results=Path(tmp) / "s.json", progress=False,
                       **kwargs)  # fmt: skip
        seconds = time.perf_counter() - t0
    if result.count("ok") != len(result.rows) and kwargs.get("trial") is None:
        raise RuntimeError(f"a trial failed: {[r['error'] for r in result.rows if r['error']]}")
    return seconds, result.rows


def _overhead(client, data: SweepData, n: int) -> dict[str, float]:  # noqa: ANN001
    """Milliseconds per trivial task: sequential round trips, and n trials through ``sweep``."""
    _noop_rtt = []
    for i in range(min(n, 50)):
        t0 = time.perf_counter()
        client.submit(_noop, i, pure=False).result()
        _noop_rtt.append(time.perf_counter() - t0)
    out = {"round_trip_ms": 1e3 * statistics.median(_noop_rtt)}
    space = {"seed": list(range(n))}
    for k in (1, 10):
        seconds, _ = _timed_sweep(space, data, {}, client=client, trial=_trivial_trial,
                                  trials_per_task=k)  # fmt: skip
        out[f"sweep_ms_per_trial_k{k}"] = 1e3 * seconds / n
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--samples", type=int, default=20000, help="training samples per trial")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="threads of the one-process run")
    p.add_argument("--backend", default=None, help="fastnn backend (default: auto)")
    p.add_argument("--overhead-trials", type=int, default=200)
    p.add_argument("--json", default=None, metavar="PATH")
    args = p.parse_args(argv)
    from distributed import Client

    data = _data(args.samples)
    base = {"hidden": [args.hidden], "epochs": args.epochs, "batch_size": 128}
    space = {"seed": list(range(args.trials))}
    warm = {"seed": [1000, 1001]}
    common = {"backend": args.backend}

    _timed_sweep(warm, data, base, in_process=True, threads=args.threads, **common)
    one_s, one_rows = _timed_sweep(space, data, base, in_process=True, threads=args.threads,
                                   **common)  # fmt: skip
    # The same with 1 thread: tells the gain of 2 trials at once from that of 2-thread BLAS.
    single_s, single_rows = _timed_sweep(space, data, base, in_process=True, threads=1, **common)
    t0 = time.perf_counter()
    cluster = default_cluster(args.workers, 1)
    client = Client(cluster)
    start_s = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        client.scatter(data, broadcast=True, hash=False).result()
        scatter_s = time.perf_counter() - t0
        _timed_sweep(warm, data, base, client=client, **common)
        dask_s, dask_rows = _timed_sweep(space, data, base, client=client, **common)
        overhead = _overhead(client, _data(100), args.overhead_trials)
    finally:
        client.close()
        cluster.close()
    report = {
        "trials": args.trials, "samples": args.samples, "hidden": args.hidden,
        "epochs": args.epochs, "workers": args.workers, "threads": args.threads,
        "one_process_s": one_s, "dask_s": dask_s, "cluster_start_s": start_s,
        "single_thread_s": single_s,
        "single_thread_trial_s": statistics.mean(r["seconds"] for r in single_rows),
        "scatter_s": scatter_s, "data_mb": (data.X.nbytes + data.X_val.nbytes) / 1e6,
        "one_process_trial_s": statistics.mean(r["seconds"] for r in one_rows),
        "dask_trial_s": statistics.mean(r["seconds"] for r in dask_rows),
        "threads_seen": sorted({json.dumps(r["threads"], sort_keys=True) for r in dask_rows}),
        **overhead,
    }  # fmt: skip
    print(_markdown(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


def _markdown(r: dict) -> str:
    per_min = {k: 60 * r["trials"] / r[f"{k}_s"] for k in ("one_process", "single_thread", "dask")}
    lines = [
        f"{r['trials']} trials, each {r['epochs']} epochs of 784-{r['hidden']}-10 on "
        f"{r['samples']:,} samples ({r['data_mb']:.0f} MB of data)",
        "",
        "| run | trials/min | wall s | mean s per trial (in the trial) |",
        "|---|---|---|---|",
        f"| one process, {r['threads']} threads, one trial after another | "
        f"{per_min['one_process']:.1f} | {r['one_process_s']:.1f} | "
        f"{r['one_process_trial_s']:.2f} |",
        f"| one process, 1 thread, one trial after another | {per_min['single_thread']:.1f} | "
        f"{r['single_thread_s']:.1f} | {r['single_thread_trial_s']:.2f} |",
        f"| LocalCluster {r['workers']} workers x 1 thread | {per_min['dask']:.1f} | "
        f"{r['dask_s']:.1f} | {r['dask_trial_s']:.2f} |",
        "",
        f"speed-up of the cluster: {r['one_process_s'] / r['dask_s']:.2f}x; cluster start-up "
        f"{r['cluster_start_s']:.1f} s (not in the wall time); scatter of the data to the "
        f"workers {r['scatter_s']:.2f} s, once",
        "",
        "| per-trial scheduling overhead | ms |",
        "|---|---|",
        f"| trivial task round trip (submit -> result, one at a time) | {r['round_trip_ms']:.1f} |",
        f"| trivial trial through sweep(), 1 trial per task | {r['sweep_ms_per_trial_k1']:.1f} |",
        f"| trivial trial through sweep(), 10 trials per task | "
        f"{r['sweep_ms_per_trial_k10']:.1f} |",
        "",
        f"threads seen by the cluster's trials: {', '.join(r['threads_seen'])}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
