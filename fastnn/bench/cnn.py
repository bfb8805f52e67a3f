"""The CNN benchmark (``fastnn bench --model cnn``): MNIST_99's network, epoch times and
time to 99%, fastnn's backends against PyTorch, every row in a fresh process.

Every implementation trains the network of ``fastnn.recipes.MNIST_99`` from the *same* initial
weights (fastnn's initialisation, copied into PyTorch: the weight layouts are the same, a dense
layer's ``W`` transposed) on the same standardised images ``(n, 1, 28, 28)``, visiting the
samples in the same order (one NumPy permutation per epoch from the same seed), with the same
optimizer and per-iteration schedule. The reference may train on a subset of the epoch (it is
slow): its row then says so and its epoch time is scaled to the full epoch.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .registry import Setup
from .runner import REFERENCE, _Runner

BATCH_SIZES = (32, 128, 256)
#: Samples the reference trains on per row by default (about a tenth of an epoch).
REFERENCE_SAMPLES = 6144


def _recipe(setup: Setup) -> dict:
    from ..recipes import MNIST_99

    return {**MNIST_99, **setup.options.get("recipe", {}), "batch_size": setup.batch_size}


# fastnn -------------------------------------------------------------------------------------
class FastnnCNNTrainer:
    """``Sequential.fit`` of the recipe's CNN on one backend; a callback marks every epoch."""

    def __init__(self, setup: Setup) -> None:
        import fastnn
        from fastnn.recipes import build

        from ..backends import resolve_backend

        self.setup = setup
        wanted = setup.options.get("backend", "auto")
        self.backend = resolve_backend(wanted).NAME
        if wanted != "auto" and self.backend != wanted:  # never time the fallback under its name
            raise RuntimeError(f"fastnn backend {wanted!r} is unavailable in this process")
        fastnn.set_num_threads(setup.threads)
        self.recipe = _recipe(setup)
        self.model, self.optimizer, self.schedule = build(self.recipe)
        self.model.set_weights(setup.weights)
        # Not timed: one batch on a throwaway copy compiles (or loads) every kernel first.
        spare, spare_opt, _ = build(self.recipe)
        spare.fit(
            setup.X[: setup.batch_size],
            setup.y[: setup.batch_size],
            optimizer=spare_opt,
            batch_size=setup.batch_size,
            backend=self.backend,
            track_accuracy=False,
        )

    def run(self, epochs: int, on_epoch_begin: Callable[[int], None],
            on_epoch_end: Callable[[int], bool]) -> None:  # fmt: skip
        import fastnn

        class Marks(fastnn.Callback):
            def on_epoch_begin(self, epoch: int) -> None:
                on_epoch_begin(epoch)

            def on_epoch_end(self, epoch: int, logs: dict) -> None:
                if on_epoch_end(epoch):
                    self.model.stop_training = True

        s = self.setup
        self.model.fit(s.X, s.y, loss="cross_entropy", optimizer=self.optimizer,
                       batch_size=s.batch_size, epochs=epochs, seed=s.seed,
                       backend=self.backend, track_accuracy=False,
                       callbacks=[*self.schedule, Marks()])  # fmt: skip

    def test_accuracy(self) -> float:
        return float(np.mean(self.model.predict(self.setup.X_test) == self.setup.y_test))


def fastnn_cnn_trainer(setup: Setup) -> FastnnCNNTrainer:
    """fastnn with the backend ``setup.options["backend"]``."""
    return FastnnCNNTrainer(setup)


# PyTorch --------------------------------------------------------------------------------------
class TorchCNNTrainer:
    """The same network as PyTorch users write it: ``nn.Sequential`` of ``Conv2d``, ``ReLU``,
    ``MaxPool2d``, ``Flatten``, ``Linear``; ``optim.Adam`` and ``OneCycleLR`` stepped per batch."""

    def __init__(self, setup: Setup) -> None:
        import torch

        self.torch, self.setup = torch, setup
        torch.set_num_threads(setup.threads)
        nn = torch.nn
        recipe = _recipe(setup)
        modules: list = []
        weights = iter(setup.weights)
        channels = setup.X.shape[1]
        for filters, k in recipe["conv"]:
            conv = nn.Conv2d(channels, filters, k)
            _copy(torch, conv, next(weights), next(weights), transpose=False)
            modules += [conv, nn.ReLU(), nn.MaxPool2d(recipe.get("pool", 2))]
            channels = filters
        modules.append(nn.Flatten())
        rest = list(weights)
        for i in range(0, len(rest), 2):
            W, b = rest[i], rest[i + 1]
            linear = nn.Linear(W.shape[0], W.shape[1])
            _copy(torch, linear, W, b, transpose=True)  # fastnn's W is (in, out)
            modules.append(linear)
            if i + 2 < len(rest):
                modules.append(nn.ReLU())
        self.model = nn.Sequential(*modules)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=recipe["lr"],
                                          betas=tuple(recipe["betas"]))  # fmt: skip
        self.recipe = recipe
        self.X, self.y = torch.from_numpy(setup.X), torch.from_numpy(setup.y)
        self.X_test = torch.from_numpy(setup.X_test)
        self.rng = np.random.default_rng(setup.seed)
        self._warm_up(nn)

    def _warm_up(self, nn: Any) -> None:
        """Not timed: one step of a throwaway copy, so that oneDNN builds its kernels first."""
        import copy

        spare = copy.deepcopy(self.model)
        opt = self.torch.optim.Adam(spare.parameters(), lr=1e-3)
        bs = self.setup.batch_size
        nn.CrossEntropyLoss()(spare(self.X[:bs]), self.y[:bs]).backward()
        opt.step()

    def run(self, epochs: int, on_epoch_begin: Callable[[int], None],
            on_epoch_end: Callable[[int], bool]) -> None:  # fmt: skip
        torch = self.torch
        n, bs = self.X.shape[0], self.setup.batch_size
        steps = epochs * math.ceil(n / bs)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=self.recipe["lr"], total_steps=steps, cycle_momentum=False
        )
        model, opt, X, y = self.model, self.optimizer, self.X, self.y
        loss_fn = torch.nn.CrossEntropyLoss()
        model.train()
        for epoch in range(epochs):
            on_epoch_begin(epoch)
            order = torch.from_numpy(self.rng.permutation(n))
            for start in range(0, n, bs):
                idx = order[start : start + bs]
                opt.zero_grad()
                loss_fn(model(X[idx]), y[idx]).backward()
                opt.step()
                sched.step()
            if on_epoch_end(epoch):
                break

    def test_accuracy(self) -> float:
        with self.torch.inference_mode():
            pred = self.model(self.X_test).argmax(dim=1).numpy()
        return float(np.mean(pred == self.setup.y_test))


def _copy(torch: Any, module: Any, W: np.ndarray, b: np.ndarray, transpose: bool) -> None:
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T if transpose else W)))
        module.bias.copy_(torch.from_numpy(b))


def torch_cnn_trainer(setup: Setup) -> TorchCNNTrainer:
    """PyTorch CPU, ``torch.set_num_threads(setup.threads)``."""
    return TorchCNNTrainer(setup)


# The benchmark ---------------------------------------------------------------------------------
def cnn_data(data_root: str | None = None) -> tuple:
    """MNIST as standardised images: X (60000, 1, 28, 28) float32, y, X_test, y_test."""
    from ..datasets import load_mnist
    from ..recipes import standardize

    X, y, X_test, y_test = load_mnist(root=data_root)
    return (standardize(X.reshape(-1, 1, 28, 28)), y.astype(np.int64),
            standardize(X_test.reshape(-1, 1, 28, 28)), y_test.astype(np.int64))  # fmt: skip


def cnn_flops_per_sample(model: Any) -> float:
    """Multiply-adds x 2 of forward + backward per sample (a dense count: zeros included);
    the first layer computes no input gradient."""
    total = 0.0
    for i, layer in enumerate(model.layers):
        if not layer.param_names:
            continue
        macs = float(layer.parameters()[0].size)
        if len(layer.output_shape) == 3:
            macs *= layer.output_shape[1] * layer.output_shape[2]  # per output position
        total += macs * (2 if i == 0 else 3)
    return 2.0 * total


def _impls(backends: list[str] | None, peers: bool) -> list[tuple[str, str, dict]]:
    from ..backends import available_backends

    names = [b for b in available_backends() if backends is None or b in backends]
    here = f"{__name__}"
    rows = [(b, f"{here}:fastnn_cnn_trainer", {"backend": b}) for b in names]
    if peers:
        import importlib.util

        if importlib.util.find_spec("torch") is not None:
            rows.append(("torch", f"{here}:torch_cnn_trainer", {}))
    return rows


def run_cnn_benchmark(
    threads: int,
    batch_sizes: tuple[int, ...] = BATCH_SIZES,
    backends: list[str] | None = None,
    peers: bool = True,
    n_train: int | None = None,
    reference_samples: int = REFERENCE_SAMPLES,
    time_to_accuracy: float | None = 0.99,
    data_root: str | None = None,
    log: Callable[[str], None] = print,
    timeout: float = 3600.0,
) -> dict:
    """Epoch rows and time to ``time_to_accuracy`` for MNIST_99's CNN.

    Returns
    -------
    dict
        ``rows`` (impl, batch_size, epoch_s, trained_samples, scaled, speedup_vs_reference,
        speedup_vs_torch, gflops, test_accuracy), ``time_to_accuracy`` (per impl: reached,
        seconds, accuracy), ``config``.
    """
    from tqdm.auto import tqdm

    from ..recipes import MNIST_99, build

    full = cnn_data(data_root)
    n = min(n_train or len(full[0]), len(full[0]))
    weights = build(MNIST_99)[0].get_weights()
    flops = cnn_flops_per_sample(build(MNIST_99)[0])
    impls = _impls(backends, peers)
    base = {"activation": "relu", "optimizer": {"name": "adam"}, "threads": threads,
            "seed": MNIST_99["seed"], "warmup": 0, "epochs": 1}  # fmt: skip
    report: dict = {"config": {"threads": threads, "n_train": n, "batch_sizes": list(batch_sizes),
                               "recipe": "fastnn.recipes.MNIST_99",
                               "reference_samples": min(reference_samples, n),
                               "flops_per_sample": flops}, "rows": []}  # fmt: skip
    jobs = len(impls) * len(batch_sizes) + (2 if time_to_accuracy else 0)
    bar = tqdm(total=jobs, desc="fastnn bench --model cnn", unit="job", leave=False)
    config = type("C", (), {"isolate": True, "timeout": timeout})()
    with tempfile.TemporaryDirectory(prefix="fastnn-bench-cnn-") as tmp:
        run = _Runner(config, Path(tmp), bar)
        run.add_inputs("full", (full[0][:n], full[1][:n], full[2], full[3]), weights)
        m = min(reference_samples, n)
        run.add_inputs("subset", (full[0][:m], full[1][:m], full[2], full[3]), weights)
        for bs in batch_sizes:
            for name, factory, options in impls:
                inputs = "subset" if name == REFERENCE and m < n else "full"
                spec = {**base, "mode": "row", "factory": factory, "options": options,
                        "import_code": "import fastnn", "batch_size": bs}  # fmt: skip
                result = run(spec, inputs, f"{name} batch {bs}")
                report["rows"].append(_row(name, bs, result, m if inputs == "subset" else n,
                                           n, flops))  # fmt: skip
                log(_line(report["rows"][-1]))
        _speedups(report["rows"])
        if time_to_accuracy:
            report["time_to_accuracy"] = _tta(run, impls, base, time_to_accuracy, log,
                                              _fastest(report["rows"]))  # fmt: skip
    bar.close()
    return report


def _row(name: str, bs: int, result: dict, trained: int, n: int, flops: float) -> dict:
    row: dict = {"impl": name, "batch_size": bs, "trained_samples": trained,
                 "scaled": trained < n}  # fmt: skip
    if "error" in result:
        return {**row, "epoch_s": None, "error": result["error"]}
    seconds = float(np.median(result["epoch_s_all"]))
    epoch_s = seconds * n / trained  # the reference's subset, scaled to a full epoch
    return {**row, "epoch_s": epoch_s, "measured_s": seconds,
            "gflops": flops * n / epoch_s / 1e9, "test_accuracy": result.get("test_accuracy"),
            "backend": result.get("backend")}  # fmt: skip


def _speedups(rows: list[dict]) -> None:
    by = {(r["impl"], r["batch_size"]): r["epoch_s"] for r in rows if r.get("epoch_s")}
    for r in rows:
        if not r.get("epoch_s"):
            continue
        ref, torch = by.get((REFERENCE, r["batch_size"])), by.get(("torch", r["batch_size"]))
        r["speedup_vs_reference"] = ref / r["epoch_s"] if ref else None
        r["speedup_vs_torch"] = torch / r["epoch_s"] if torch else None


def _fastest(rows: list[dict]) -> str | None:
    """The fastnn backend with the shortest epoch at MNIST_99's batch size in this run."""
    from ..recipes import MNIST_99

    timed = [r for r in rows if r["impl"] != "torch" and r.get("epoch_s")
             and r["batch_size"] == MNIST_99["batch_size"]]  # fmt: skip
    return min(timed, key=lambda r: r["epoch_s"])["impl"] if timed else None


def _tta(run: _Runner, impls: list, base: dict, target: float, log: Callable,
         fastnn_name: str | None) -> dict:  # fmt: skip
    """Time to ``target`` for the fastest fastnn backend of the rows and for torch, with
    MNIST_99's recipe."""
    from ..recipes import MNIST_99

    rows = {name: (factory, options) for name, factory, options in impls}
    out: dict = {"target": target, "recipe": "fastnn.recipes.MNIST_99", "results": []}
    for name in (fastnn_name, "torch"):
        if name not in rows:
            continue
        factory, options = rows[name]
        spec = {**base, "mode": "tta", "factory": factory, "options": options, "target": target,
                "import_code": "import fastnn", "batch_size": MNIST_99["batch_size"],
                "epochs": MNIST_99["epochs"]}  # fmt: skip
        t0 = time.perf_counter()
        r = run(spec, "full", f"{name} time to {target:.0%}")
        entry = {"impl": name, "wall_s": time.perf_counter() - t0,
                 **{k: r.get(k) for k in ("reached", "seconds", "epochs", "accuracy_curve",
                                          "error")}}  # fmt: skip
        out["results"].append(entry)
        log(f"time to {target:.0%}: {name} {entry.get('seconds')} s, reached {entry['reached']}")
    return out


def _line(row: dict) -> str:
    if row.get("epoch_s") is None:
        return f"{row['impl']:>8} batch {row['batch_size']:>4}: error {row.get('error')}"
    note = f" (scaled from {row['trained_samples']} samples)" if row["scaled"] else ""
    return (
        f"{row['impl']:>8} batch {row['batch_size']:>4}: {row['epoch_s']:.2f} s/epoch, "
        f"{row['gflops']:.1f} GFLOP/s, test accuracy {row.get('test_accuracy')}{note}"
    )


def cnn_markdown(report: dict) -> str:
    """The CNN section of the benchmark report (markdown)."""
    cfg = report["config"]
    lines = [
        "## CNN: MNIST_99's network (conv 1->24 k5, pool, conv 24->32 k3, pool, 800-256-10)",
        "",
        f"Threads: {cfg['threads']}; {cfg['n_train']:,} training samples; Adam + OneCycle "
        "(fastnn.recipes.MNIST_99); same initial weights and sample order in every row. "
        f"Dense-count work: {cfg['flops_per_sample'] / 1e6:.1f} MFLOP per sample (forward + "
        "backward).",
        "",
        "| impl | batch | s/epoch | GFLOP/s | x reference | x torch | test acc | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        if r.get("epoch_s") is None:
            lines.append(f"| {r['impl']} | {r['batch_size']} | error | | | | | {r.get('error')} |")
            continue
        note = f"scaled from {r['trained_samples']:,} samples" if r["scaled"] else ""
        ref, tor = r.get("speedup_vs_reference"), r.get("speedup_vs_torch")
        acc = r.get("test_accuracy")
        lines.append(
            f"| {r['impl']} | {r['batch_size']} | {r['epoch_s']:.2f} | {r['gflops']:.1f} | "
            f"{'' if ref is None else f'{ref:.1f}x'} | {'' if tor is None else f'{tor:.2f}x'} | "
            f"{'' if acc is None or r['scaled'] else f'{acc:.4f}'} | {note} |"
        )
    tta = report.get("time_to_accuracy")
    if tta:
        lines += ["", f"Time to {tta['target']:.0%} test accuracy ({tta['recipe']}, training "
                      "time, evaluation excluded):", ""]  # fmt: skip
        for e in tta["results"]:
            acc = (e.get("accuracy_curve") or [None])[-1]
            lines.append(f"- {e['impl']}: {e.get('seconds') or float('nan'):.2f} s, reached "
                         f"{e.get('reached')}, final test accuracy {acc}")  # fmt: skip
    return "\n".join(lines) + "\n"
