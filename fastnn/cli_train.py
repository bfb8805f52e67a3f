"""``fastnn train``: train a multilayer perceptron on MNIST (or an .npz) and watch it learn.

A terminal playground: change a hyper-parameter, see the result within seconds. Each epoch
shows a progress bar (iterations, loss, samples/s) and then one summary line; ``--diagnostics``
adds a per-layer table of gradient norms, weight norms, update ratios and dead ReLU units, with
a named remedy when gradients vanish or explode. The last line gives the test accuracy, seconds,
iterations and epochs. Exit codes: 0 trained, 1 training diverged (the model keeps its last
finite weights) or an output could not be written, 2 bad arguments or data.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .callbacks import Callback
from .diagnostics import GradientWarning, format_epoch
from .layers import ACTIVATIONS
from .recipes import MNIST_98, MNIST_99, MODELS, SCHEDULES, build, standardize

OPTIMIZER_CHOICES = ("sgd", "momentum", "adam")
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.2, "adam": 1e-3}
# The optimizer a recipe names takes the recipe's rate by default.
RECIPE_LR = {"mlp": MNIST_98["lr"], "cnn": MNIST_99["lr"]}


def _hidden(text: str) -> list[int]:
    if text.strip() in ("", "none", "0"):
        return []
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        msg = f"--hidden takes sizes like 128,64, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"hidden layer sizes must be >= 1, got {text!r}")
    return sizes


def _batch_size(text: str) -> int | None:
    if text.lower() == "full":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--batch-size takes N or 'full', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"--batch-size must be >= 1, got {value}")
    return value


RECIPES = {"mlp": MNIST_98, "cnn": MNIST_99}


def _betas(text: str) -> tuple[float, float]:
    try:
        b1, b2 = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--betas takes B1,B2 like 0.9,0.999, got {text!r}"
        ) from None
    return b1, b2


def build_parser(model: str = "mlp") -> argparse.ArgumentParser:
    """The argument parser of ``fastnn train``; its defaults are the recipe of ``model``
    (``MNIST_98`` for "mlp", ``MNIST_99`` for "cnn")."""
    r = RECIPES[model]
    p = argparse.ArgumentParser(
        prog="fastnn train",
        description="Train an MLP or a CNN on MNIST (or an .npz) and watch it learn.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = p.add_argument
    add(
        "--model",
        default=model,
        choices=MODELS,
        help="mlp: fastnn.recipes.MNIST_98's MLP; cnn: MNIST_99's convolutional network "
        "(images (n, 1, 28, 28), standardised); each brings its recipe's defaults",
    )
    add(
        "--dataset",
        default="mnist",
        help="'mnist', or an .npz file with X_train, y_train, X_test, y_test",
    )
    add(
        "--subset",
        type=int,
        default=None,
        metavar="N",
        help="train on the first N training samples only (quick runs)",
    )
    add(
        "--hidden",
        type=_hidden,
        default=list(r["hidden"]),
        help="hidden layer sizes, comma-separated ('none' for no hidden layer)",
    )
    hidden_acts = [a for a in ACTIVATIONS if a not in ("identity", "softmax")]
    add("--activation", default=r["activation"], choices=hidden_acts,
        help="activation of the hidden layers")  # fmt: skip
    add("--init", default="auto", choices=("auto", "he", "xavier", "normal"))
    add("--loss", default="cross_entropy", choices=("cross_entropy", "mse", "kl_divergence"))
    add("--optimizer", default=r["optimizer"], choices=OPTIMIZER_CHOICES)
    add(
        "--lr",
        type=float,
        default=None,
        help=f"learning rate (default: sgd 0.1, momentum {DEFAULT_LR['momentum']:g}, adam 0.001)",
    )
    add("--momentum", type=float, default=r.get("momentum") or 0.9,
        help="for --optimizer momentum (default 0.9)")  # fmt: skip
    add("--nesterov", action="store_true", help="Nesterov momentum")
    add(
        "--betas",
        type=_betas,
        default=tuple(r.get("betas", (0.9, 0.999))),
        help="Adam's beta1,beta2",
    )
    add("--weight-decay", type=float, default=0.0, help="L2 penalty")
    add(
        "--schedule",
        default=r["schedule"],
        choices=SCHEDULES,
        help="learning-rate schedule over the epochs",
    )
    add(
        "--batch-size",
        type=_batch_size,
        default=r["batch_size"],
        help="N (1 = stochastic, N = mini-batch) or 'full' (full-batch gradient descent)",
    )
    add("--epochs", type=int, default=r["epochs"])
    add("--clip-grad-norm", type=float, default=None, help="clip each batch's gradient norm")
    add("--backend", default=None, help="auto, numpy, numba or cython (default: auto)")
    add("--threads", type=int, default=None, help="threads for BLAS and the backends")
    add("--dtype", default="float32", choices=("float32", "float64"))
    add("--seed", type=int, default=0)
    add(
        "--validation-fraction",
        type=float,
        default=0.0,
        help="hold out this fraction of the training set for validation",
    )
    add(
        "--early-stopping",
        type=int,
        default=None,
        metavar="PATIENCE",
        help="stop after PATIENCE epochs without improvement (val_loss, else loss)",
    )
    add(
        "--diagnostics",
        action="store_true",
        help="per-layer gradient/weight/update/dead-unit table and warnings each epoch",
    )
    add("--save", default=None, metavar="PATH", help="save the trained model (.npz)")
    add("--plot", default=None, metavar="PATH", help="write loss/accuracy curves (PNG)")
    add("--json", default=None, metavar="PATH", help="write the history and results as JSON")
    add("--quiet", action="store_true", help="no progress bar")
    return p


def load_data(spec: str, dtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(X_train, y_train, X_test, y_test)`` of MNIST or of an .npz file.

    Parameters
    ----------
    spec : str
        ``"mnist"`` or the path of an .npz holding ``X_train`` (n, d) (or (n, h, w), flattened),
        ``y_train`` (n,) integer labels, ``X_test``, ``y_test``. Read without pickle.
    dtype : str

    Returns
    -------
    X_train (n, d), y_train (n,), X_test (m, d), y_test (m,)
    """
    if spec == "mnist":
        from .datasets import load_mnist

        return load_mnist(dtype=dtype)
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"--dataset: no such file {spec!r} (give 'mnist' or an .npz path)")
    keys = ("X_train", "y_train", "X_test", "y_test")
    if not zipfile.is_zipfile(path):  # np.load would call it "pickled data"
        raise ValueError(f"--dataset {spec}: not an .npz archive (not a zip file)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise ValueError(f"--dataset {spec}: missing arrays {missing} (needs {keys})")
            arrays = [npz[k] for k in keys]
    except (OSError, EOFError) as exc:
        raise ValueError(f"--dataset {spec}: not a readable .npz file ({exc})") from exc
    except AttributeError:  # a .npy array has no .files
        raise ValueError(f"--dataset {spec}: not an .npz archive") from None
    X_train, y_train, X_test, y_test = arrays
    X_train = X_train.reshape(len(X_train), -1).astype(dtype, copy=False)
    X_test = X_test.reshape(len(X_test), -1).astype(dtype, copy=False)
    return X_train, y_train, X_test, y_test


def _default_lr(args: argparse.Namespace) -> float:
    if args.optimizer == RECIPES[args.model]["optimizer"]:
        return RECIPE_LR[args.model]
    return DEFAULT_LR[args.optimizer]


def _images(X: np.ndarray, spec: str) -> np.ndarray:
    """Square one-channel images (n, 1, s, s), standardised with MNIST's mean and std."""
    side = int(round(np.sqrt(X.shape[1])))
    if side * side != X.shape[1]:
        raise ValueError(f"--model cnn needs square images; {spec} has {X.shape[1]} features")
    return standardize(X.reshape(len(X), 1, side, side))


def _split(X: np.ndarray, y: np.ndarray, fraction: float, seed: int):  # noqa: ANN202
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"--validation-fraction must be in [0, 1), got {fraction}")
    n_val = int(round(len(X) * fraction))
    if n_val == 0:
        return X, y, None
    order = np.random.default_rng(seed).permutation(len(X))
    val, train = order[:n_val], order[n_val:]
    return X[train], y[train], (X[val], y[val])


def _callbacks(args: argparse.Namespace, has_val: bool) -> list:
    import fastnn

    cbs: list = [] if args.quiet else [fastnn.ProgressBar()]
    if args.early_stopping is not None:
        cbs.append(fastnn.EarlyStopping("val_loss" if has_val else "loss", args.early_stopping))
    if args.diagnostics:
        cbs.append(_DiagnosticsPrinter())
    return cbs


class _DiagnosticsPrinter(Callback):
    """Prints the diagnostics table of each epoch under its summary line."""

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        if self.history.diagnostics:
            print(format_epoch(self.history.diagnostics[-1]), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fastnn train``; returns the exit code (0 ok, 1 diverged/write failed, 2 usage)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--model", default="mlp", choices=MODELS)
    known, _ = pre.parse_known_args(argv)
    parser = build_parser(known.model)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, message already printed)
        return int(exc.code or 0)
    try:
        return _run(args)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"fastnn train: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import fastnn

    if args.epochs < 0:
        raise ValueError(f"--epochs must be >= 0, got {args.epochs}")
    if args.threads is not None:
        fastnn.set_num_threads(args.threads)
    if args.backend is not None:
        fastnn.set_backend(args.backend)
    X, y, X_test, y_test = load_data(args.dataset, args.dtype)
    if args.subset is not None:
        if args.subset < 1:
            raise ValueError(f"--subset must be >= 1, got {args.subset}")
        X, y = X[: args.subset], y[: args.subset]
    n_classes = int(max(np.max(y), np.max(y_test))) + 1
    if args.model == "cnn":
        X, X_test = (_images(a, args.dataset) for a in (X, X_test))
    X, y, val = _split(X, y, args.validation_fraction, args.seed)
    recipe = {
        **RECIPES[args.model],
        "hidden": args.hidden, "activation": args.activation, "init": args.init,
        "optimizer": args.optimizer, "momentum": args.momentum, "nesterov": args.nesterov,
        "lr": _default_lr(args) if args.lr is None else args.lr,
        "weight_decay": args.weight_decay, "schedule": args.schedule, "epochs": args.epochs,
        "dtype": args.dtype, "seed": args.seed, "betas": args.betas,
    }  # fmt: skip
    model, opt, schedule = build(recipe, n_classes=n_classes, input_shape=X.shape[1:])
    arch = "-".join(str(s) for s in [X.shape[1], *args.hidden, n_classes])
    arch += f" {args.activation}"
    if args.model == "cnn":
        arch = "CNN " + " ".join(layer.describe() for layer in model.layers)
    print(f"data: {len(X)} training, {0 if val is None else len(val[0])} validation, "
          f"{len(X_test)} test samples of shape {X.shape[1:]}, {n_classes} classes")  # fmt: skip
    print(f"model: {arch} ({args.dtype}), loss {args.loss}, {opt!r}, "
          f"batch {args.batch_size or 'full'}, backend {fastnn.get_backend()}")  # fmt: skip
    diverged = None
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # The printed table already carries every diagnostics warning, epoch by epoch.
        warnings.simplefilter("ignore", GradientWarning)
        try:
            history = model.fit(
                X, y, loss=args.loss, optimizer=opt, batch_size=args.batch_size,
                epochs=args.epochs, seed=args.seed, validation_data=val,
                callbacks=[*schedule, *_callbacks(args, val is not None)],
                diagnostics=args.diagnostics,
                clip_grad_norm=args.clip_grad_norm,
            )  # fmt: skip
        except fastnn.TrainingDivergedError as exc:
            diverged = exc
            history = None
    seconds = time.perf_counter() - t0
    scores = model.evaluate(X_test, y_test, args.loss)
    if diverged is not None:
        print(f"fastnn train: {diverged}", file=sys.stderr)
        print(f"test accuracy {scores['accuracy']:.4f} (weights from before the divergence), "
              f"{seconds:.2f} s")  # fmt: skip
        return 1
    print(f"test accuracy {scores['accuracy']:.4f} - test loss {scores['loss']:.4f} - "
          f"{seconds:.2f} s - {history.iterations} iterations - "
          f"{history.epochs} epochs")  # fmt: skip
    return _write_outputs(args, model, history, scores, seconds)


def _write_outputs(args, model, history, scores: dict, seconds: float) -> int:  # noqa: ANN001
    """Save, write JSON, plot: each failure is reported and makes the exit code 1."""
    record = {
        "config": vars(args),
        "test_accuracy": scores["accuracy"],
        "test_loss": scores["loss"],
        "seconds": seconds,
        "history": history.to_dict(),
    }
    actions = [
        (args.save, "model saved to", lambda path: model.save(path)),
        (args.json, "history written to", lambda path: Path(path).write_text(
            json.dumps(record, indent=1, default=_json_default))),
        (args.plot, "curves plotted to", history.plot),
    ]  # fmt: skip
    status = 0
    for path, done, action in actions:
        if not path:
            continue
        try:
            action(path)
            print(f"{done} {path}")
        except (OSError, ImportError, ValueError) as exc:
            print(f"fastnn train: cannot write {path}: {exc}", file=sys.stderr)
            status = 1
    return status


def _json_default(value: object) -> object:
    if isinstance(value, (np.integer, np.floating)):
        v = value.item()
        return v if not isinstance(v, float) or math.isfinite(v) else None
    raise TypeError(f"not JSON-serializable: {type(value).__name__}")
