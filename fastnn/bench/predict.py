"""Inference speed: batch-1 latency and batch-1024 throughput of one model in several runtimes.

A served model predicts one sample at a time all day, so what counts there is the latency of
one call (median and 99th percentile over many calls); batch jobs care about throughput.
:func:`measure_predict` times any named predict callables on the same inputs; the builders give
the usual ones with the same weights: fastnn's backends (``model.predict_proba``), onnxruntime
on the exported file, and the PyTorch module under ``torch.inference_mode()``.

Rounds interleave the predictors (each runs a share of its calls in every round), so a burst of
load on a shared machine hits them alike and the ratios within one run stay meaningful.

Run it::

    python -m fastnn.bench.predict --calls 2000 --sizes 784,128,10
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

PredictFn = Callable[[np.ndarray], Any]  # float32 (n, n_features) -> array-like (n, n_outputs)


@dataclass
class PredictRow:
    """One predictor's numbers.

    Attributes
    ----------
    name : str
    latency_median_us, latency_p99_us : float
        Microseconds per batch-1 call: median and 99th percentile over ``calls`` calls.
    throughput : float
        Samples per second at batch ``batch``, sustained: ``repeats`` calls in all, run back to
        back in each round's share, divided into their total time.
    first_batch_ms : float
        Milliseconds of the untimed first batch call of each round's share (the median over the
        rounds): a batch that comes after batch-1 calls or an idle moment, where thread pools
        that sleep between calls wake up. Not part of ``throughput``.
    calls, batch, repeats : int
    max_abs_diff : float
        Largest difference of its outputs from the first predictor's, on the batch inputs.
    """

    name: str
    latency_median_us: float
    latency_p99_us: float
    throughput: float
    first_batch_ms: float
    calls: int
    batch: int
    repeats: int
    max_abs_diff: float


def _shares(total: int, rounds: int) -> list[int]:
    base, extra = divmod(total, rounds)
    return [base + (r < extra) for r in range(rounds)]


def _check(name: str, out: Any, n: int, reference: np.ndarray | None) -> np.ndarray:
    arr = np.asarray(out, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(f"predictor {name!r} returned shape {arr.shape} for {n} samples")
    if reference is not None and arr.shape != reference.shape:
        raise ValueError(f"predictor {name!r} returned shape {arr.shape}, others {reference.shape}")
    return arr


def _compare_and_warm_up(
    predictors: Sequence[tuple[str, PredictFn]], X: np.ndarray, x1: np.ndarray, warmup: int
) -> list[float]:
    """Check every output shape, return each max |difference| from the first predictor."""
    reference, diffs = None, []
    for name, fn in predictors:
        out = _check(name, fn(X), X.shape[0], reference)
        _check(name, fn(x1), 1, None)
        reference = out if reference is None else reference
        diffs.append(float(np.abs(out - reference).max()))
        for _ in range(warmup):
            fn(x1)
    return diffs


def _time_in_rounds(
    predictors: Sequence[tuple[str, PredictFn]], X: np.ndarray, x1: np.ndarray,
    calls: int, repeats: int, rounds: int, settle: float = 0.0,
) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:  # fmt: skip
    """Nanoseconds of each batch-1 call, of each timed batch call and of each round's first
    (untimed) batch call, per predictor; ``settle`` seconds of idle time before each
    predictor's share of a round."""
    latency: list[list[int]] = [[] for _ in predictors]
    per_batch: list[list[int]] = [[] for _ in predictors]
    first: list[list[int]] = [[] for _ in predictors]
    clock = time.perf_counter_ns
    for n_calls, n_batches in zip(_shares(calls, rounds), _shares(repeats, rounds), strict=True):
        for i, (_, fn) in enumerate(predictors):
            time.sleep(settle)
            for _ in range(n_calls):
                t0 = clock()
                fn(x1)
                latency[i].append(clock() - t0)
            if n_batches:
                t0 = clock()
                fn(X)
                first[i].append(clock() - t0)
            for _ in range(n_batches):
                t0 = clock()
                fn(X)
                per_batch[i].append(clock() - t0)
    return latency, per_batch, first


def measure_predict(
    predictors: Sequence[tuple[str, PredictFn]],
    n_features: int,
    *,
    calls: int = 1000,
    warmup: int = 100,
    batch: int = 1024,
    repeats: int = 20,
    rounds: int = 5,
    settle: float = 0.2,
    seed: int = 0,
    inputs: np.ndarray | None = None,
) -> list[PredictRow]:
    """Time each predictor at batch 1 (latency) and at batch ``batch`` (throughput).

    Parameters
    ----------
    predictors : sequence of (name, fn)
        ``fn(X)`` takes float32 ``X`` of shape (n, n_features), C-contiguous, and returns its
        outputs (n, n_outputs). All should compute the same thing (their outputs are compared).
    n_features : int
    calls : int, default 1000
        Timed batch-1 calls per predictor, after ``warmup`` untimed ones.
    batch, repeats : int, default 1024 and 20
        Batch size and timed calls of the throughput measurement; each round's share of them
        follows one untimed call (reported as ``first_batch_ms``).
    rounds : int, default 5
        The calls are split over this many rounds that interleave the predictors.
    settle : float, default 0.2
        Idle seconds before each predictor's share of a round: the worker threads the previous
        predictor left spinning (NumPy's OpenBLAS ~0.1 s, onnxruntime's and OpenMP's pools)
        have stopped by then, so no predictor runs beside another's spinning threads.
    seed : int
        Seed of the random standard-normal inputs.
    inputs : ndarray, shape (>= batch, n_features), optional
        Real samples to predict instead (e.g. MNIST test digits, whose zero pixels the sparse
        loops skip); the first ``batch`` rows are used, the first one for the latency.

    Returns
    -------
    list of PredictRow, in the order of ``predictors``.
    """
    if not predictors:
        raise ValueError("measure_predict needs at least one predictor")
    for label, value in (("calls", calls), ("batch", batch), ("repeats", repeats),
                         ("rounds", rounds), ("n_features", n_features)):  # fmt: skip
        if int(value) < 1:
            raise ValueError(f"{label} must be >= 1, got {value}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    rng = np.random.default_rng(seed)
    if inputs is not None:
        X = np.ascontiguousarray(inputs[:batch], dtype=np.float32)
        if X.shape != (batch, n_features):
            raise ValueError(
                f"inputs must have shape (>= {batch}, {n_features}), got {inputs.shape}"
            )
    else:
        X = np.ascontiguousarray(rng.standard_normal((batch, n_features)), dtype=np.float32)
    x1 = np.ascontiguousarray(X[:1])
    diffs = _compare_and_warm_up(predictors, X, x1, warmup)
    if settle < 0:
        raise ValueError(f"settle must be >= 0, got {settle}")
    latency, per_batch, first = _time_in_rounds(predictors, X, x1, calls, repeats, rounds, settle)
    rows = []
    for (name, _), lat, big, cold, diff in zip(predictors, latency, per_batch, first, diffs,
                                               strict=True):  # fmt: skip
        lat_us = np.asarray(lat, dtype=np.float64) / 1e3
        seconds = float(np.sum(big)) / 1e9
        rows.append(PredictRow(
            name=name, latency_median_us=float(np.median(lat_us)),
            latency_p99_us=float(np.percentile(lat_us, 99)),
            throughput=batch * len(big) / seconds, first_batch_ms=float(np.median(cold)) / 1e6,
            calls=calls, batch=batch, repeats=repeats, max_abs_diff=diff,
        ))  # fmt: skip
    return rows


# -- the usual predictors ---------------------------------------------------------------------
def fastnn_predictors(
    model: Any, backends: Sequence[str] | None = None
) -> list[tuple[str, PredictFn]]:
    """``model.predict_proba`` on each backend (default: every backend that loads).

    Each uses a shallow copy of ``model`` (same weight arrays) with its ``backend`` attribute
    set, which ``predict_proba`` honours; the process-wide default backend is left alone.
    """
    import fastnn

    out = []
    for name in backends if backends is not None else fastnn.available_backends():
        clone = copy.copy(model)
        clone.backend = name
        out.append((f"fastnn-{name}", clone.predict_proba))
    return out


def onnxruntime_predictor(model: Any, threads: int | None = None) -> tuple[str, PredictFn]:
    """onnxruntime on the file ``fastnn.export.to_onnx(model, ..., "probabilities")`` writes."""
    import onnxruntime as ort

    from fastnn.export import to_onnx

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    with tempfile.TemporaryDirectory() as tmp:
        path = to_onnx(model, Path(tmp) / "model.onnx", output="probabilities")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    run = session.run
    return "onnxruntime", lambda x: run(None, {"input": x})[0]


def torch_predictor(model: Any) -> tuple[str, PredictFn]:
    """The ``fastnn.interop.to_torch(model, output="probabilities")`` module, inference mode."""
    import torch

    from fastnn.interop import to_torch

    module = to_torch(model, output="probabilities").eval()

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x)).numpy()

    return "torch", predict


def default_predictors(model: Any) -> tuple[list[tuple[str, PredictFn]], dict[str, str]]:
    """fastnn's backends, then onnxruntime and torch where installed; (predictors, skipped)."""
    predictors = fastnn_predictors(model)
    skipped = {}
    for name, build in (("onnxruntime", onnxruntime_predictor), ("torch", torch_predictor)):
        try:
            predictors.append(build(model))
        except ImportError as exc:
            skipped[name] = f"not installed ({exc})"
    return predictors, skipped


def mlp(sizes: Sequence[int] = (784, 128, 10), seed: int = 0) -> Any:
    """A ReLU MLP with random weights and a softmax output (what ``predict_proba`` returns)."""
    import fastnn

    n = len(sizes) - 1
    acts = ["relu"] * (n - 1) + ["softmax"]
    layers = [fastnn.Dense(i, o, a) for i, o, a in zip(sizes[:-1], sizes[1:], acts, strict=True)]
    return fastnn.Sequential(layers, seed=seed)


def format_rows(rows: Sequence[PredictRow], baseline: str = "onnxruntime") -> str:
    """A table; with a ``baseline`` row, each row's latency and throughput relative to it."""
    base = next((r for r in rows if r.name == baseline), None)
    head = (f"{'predictor':<16}{'p50 us':>10}{'p99 us':>10}{'samples/s':>14}"
            f"{'1st batch ms':>14}{'max diff':>10}")  # fmt: skip
    if base:
        head += f"{'p50/' + baseline[:4]:>11}{'thr/' + baseline[:4]:>11}"
    lines = [head]
    for r in rows:
        line = (f"{r.name:<16}{r.latency_median_us:>10.1f}{r.latency_p99_us:>10.1f}"
                f"{r.throughput:>14,.0f}{r.first_batch_ms:>14.2f}"
                f"{r.max_abs_diff:>10.1e}")  # fmt: skip
        if base:
            line += f"{r.latency_median_us / base.latency_median_us:>11.2f}"
            line += f"{r.throughput / base.throughput:>11.2f}"
        lines.append(line)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fastnn.bench.predict``: time the default predictors on a random MLP."""
    p = argparse.ArgumentParser(prog="python -m fastnn.bench.predict", description=__doc__)
    p.add_argument("--sizes", default="784,128,10", help="layer sizes (default 784,128,10)")
    p.add_argument("--calls", type=int, default=1000, help="timed batch-1 calls per predictor")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--batch", type=int, default=1024, help="batch size of the throughput run")
    p.add_argument("--repeats", type=int, default=20, help="timed calls at --batch")
    p.add_argument("--json", action="store_true", help="print the rows as JSON lines")
    args = p.parse_args(argv)
    model = mlp([int(s) for s in args.sizes.split(",")])
    predictors, skipped = default_predictors(model)
    rows = measure_predict(predictors, model.n_features, calls=args.calls, warmup=args.warmup,
                           batch=args.batch, repeats=args.repeats)  # fmt: skip
    if args.json:
        import json

        print("\n".join(json.dumps(asdict(r)) for r in rows))
    else:
        print(format_rows(rows))
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
