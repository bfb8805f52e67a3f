"""Malformed input, one row each, across fit, predict, the layers, load, load_mnist and the CLI.

Every row calls the public API with one thing wrong and expects an exception of a given type
whose message matches a pattern that names the problem. A row marked ``xfail`` documents a
case whose fix belongs to a module another change owns (the reason says which); ``strict``
makes it fail once fixed, so the mark is then removed.

The network is never used: ``load_mnist`` rows fail before any download (or have none to do).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import fastnn
import fastnn.datasets
from fastnn import cli
from fastnn.datasets import _download, load_mnist
from fastnn.io import ModelFileError

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 4))
Y = RNG.integers(0, 3, 40)


def net(last: str | None = None, outputs: int = 3) -> fastnn.Sequential:
    return fastnn.Sequential([fastnn.Dense(4, 5, "relu"), fastnn.Dense(5, outputs, last)], seed=0)


def fit(*args, **kwargs):
    return lambda tmp: net().fit(*args, **kwargs)


def with_x(**cells) -> np.ndarray:
    """X with some cells replaced: ``with_x(nan=np.nan)`` puts NaN at (3, 1)."""
    out = X.copy()
    for i, value in enumerate(cells.values()):
        out[3 + i, 1] = value
    return out


def trained() -> fastnn.Sequential:
    model = net()
    model.fit(X, Y, backend="numpy")
    return model


def saved(tmp: Path) -> Path:
    path = tmp / "model.npz"
    trained().save(path)
    return path


def file_with(tmp: Path, content: bytes, name: str = "model.npz") -> Path:
    path = tmp / name
    path.write_bytes(content)
    return path


def truncated_model(tmp: Path) -> Path:
    data = saved(tmp).read_bytes()
    return file_with(tmp, data[: len(data) // 2], "cut.npz")


def npz(tmp: Path, name: str = "data.npz", **arrays) -> Path:
    path = tmp / name
    np.savez(path, **arrays)
    return path


def dataset(tmp: Path) -> Path:
    return npz(tmp, X_train=X, y_train=Y, X_test=X[:8], y_test=Y[:8])


def mnist_root(tmp: Path, stems=tuple(fastnn.datasets.MNIST_SHA256)) -> Path:
    """A directory holding IDX files of the right layout but not MNIST's content."""
    root = tmp / "mnist"
    root.mkdir(exist_ok=True)
    for stem in stems:
        shape = (3, 28, 28) if "images" in stem else (3,)
        header = bytes([0, 0, 8, len(shape)]) + b"".join(n.to_bytes(4, "big") for n in shape)
        body = np.ones(shape, np.uint8).tobytes()
        (root / f"{stem}.gz").write_bytes(gzip.compress(header + body))
    return root


def with_member(path: Path, name: str) -> Path:
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr(name, "print('this never runs')")
    return path


def mnist_from_mirrors(tmp: Path, mirrors: str):
    old = os.environ.get("FASTNN_MNIST_MIRRORS")
    os.environ["FASTNN_MNIST_MIRRORS"] = mirrors
    try:
        return load_mnist(tmp / "m")
    finally:
        if old is None:
            del os.environ["FASTNN_MNIST_MIRRORS"]
        else:
            os.environ["FASTNN_MNIST_MIRRORS"] = old


class CLIFailed(Exception):
    """A CLI run that exited non-zero; the message is ``exit <code>: <stderr>``."""


def run_cli(*argv: str) -> Callable[[Path], None]:
    def call(tmp: Path) -> None:
        argv_ = [a.replace("{tmp}", str(tmp)) for a in argv]
        if "{dataset}" in " ".join(argv):
            argv_ = [a.replace("{dataset}", str(dataset(tmp))) for a in argv_]
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli.main(argv_)
        if code != 0:
            raise CLIFailed(f"exit {code}: {err.getvalue()}")

    return call


def needs(file: str, what: str):
    return pytest.mark.xfail(strict=True, reason=f"needs fix in {file}: {what}")


def setattr_(obj, name, value):
    return lambda tmp: setattr(obj, name, value)


V, T, F, M, NF = ValueError, TypeError, FileNotFoundError, ModelFileError, IsADirectoryError
CASES = [
    # -- fit: X ------------------------------------------------------------------------------
    ("X-1d", fit(X[:, 0], Y), V, r"X must be 2-D .* got shape \(40,\)"),
    ("X-3d", fit(X[:, :, None], Y), V, r"X must be 2-D"),
    ("X-strings", fit(np.full((40, 4), "a"), Y), T, "X must hold real numbers"),
    ("X-complex", fit(X + 1j, Y), T, "X must hold real numbers, got dtype complex"),
    ("X-object", fit(X.astype(object), Y), T, "X must hold real numbers, got dtype object"),
    ("X-nan", fit(with_x(a=np.nan), Y), V, "X contains 1 NaN or infinite"),
    ("X-inf", fit(with_x(a=np.inf, b=-np.inf), Y), V, "X contains 2 NaN or infinite"),
    ("X-float32-range", fit(with_x(a=1e39), Y), V, "out of float32 range"),
    ("X-empty", fit(X[:0], Y[:0]), V, r"X is empty \(0 samples\)"),
    ("X-features", fit(np.zeros((40, 5)), Y), V, "X has 5 features, the model expects 4"),
    # -- fit: y ------------------------------------------------------------------------------
    ("y-length", fit(X, Y[:-1]), V, "X has 40 samples but y has 39"),
    ("y-scalar", fit(X, 1), V, "X has 40 samples but y has 0"),
    ("y-too-big", fit(X, Y + 3), V, r"labels must lie in 0\.\.2 .* from 3 to 5"),
    ("y-negative", fit(X, Y - 1), V, r"labels must lie in 0\.\.2"),
    ("y-non-integer", fit(X, Y + 0.5), V, "labels must be integers 0..2, got non-integers"),
    ("y-nan", fit(X, np.full(40, np.nan)), V, "labels contain NaN"),
    ("y-strings", fit(X, np.full(40, "cat")), T, "labels must be integers, got dtype <U3"),
    ("y-column", fit(X, Y[:, None]), V, r"class labels must be 1-D with shape \(n,\)"),
    ("y-onehot-width", fit(X, np.eye(4)[Y]), V, r"targets must have shape \(n, 3\)"),
    ("y-not-probs", fit(X, np.full((40, 3), 0.5)), V, "rows of probabilities"),
    ("mse-width", fit(X, np.zeros((40, 2)), loss="mse"), V, r"mse targets .* \(n, 3\)"),
    ("kl-not-probs", fit(X, -np.eye(3)[Y], loss="kl_divergence"), V, "rows of probabilities"),
    # -- fit: settings ----------------------------------------------------------------------
    ("epochs-negative", fit(X, Y, epochs=-1), V, "epochs must be >= 0, got -1"),
    ("epochs-float", fit(X, Y, epochs=1.5), T, "epochs must be an integer"),
    ("epochs-string", fit(X, Y, epochs="3"), T, "epochs must be a number"),
    ("batch-zero", fit(X, Y, batch_size=0), V, "batch_size must be > 0"),
    ("batch-string", fit(X, Y, batch_size="32"), T, "batch_size must be a number"),
    ("loss-name", fit(X, Y, loss="hinge"), V, "unknown loss 'hinge'; valid names"),
    ("loss-class", fit(X, Y, loss=fastnn.losses.CrossEntropy), V, "unknown loss"),
    ("optimizer-name", fit(X, Y, optimizer="rmsprop"), V, "unknown optimizer 'rmsprop'"),
    ("backend-name", fit(X, Y, backend="gpu"), V, "unknown backend 'gpu'; valid names"),
    ("backend-type", fit(X, Y, backend=1), T, "backend name must be a string"),
    ("clip-negative", fit(X, Y, clip_grad_norm=-1.0), V, "clip_grad_norm must be > 0"),
    ("clip-nan", fit(X, Y, clip_grad_norm=np.nan), V, "clip_grad_norm must be finite"),
    ("val-features", fit(X, Y, validation_data=(X[:, :3], Y)), V, "X_val has 3 features"),
    ("relu-logits", lambda tmp: net("relu").fit(X, Y), V, "works on logits.*not 'relu'"),
    ("ce-one-output", lambda tmp: net(outputs=1).fit(X, Y), V, "needs a last layer with >= 2"),
    ("bce-range", lambda tmp: net(outputs=1).fit(X, Y, loss="binary_cross_entropy"), V,
     r"binary_cross_entropy targets must lie in \[0, 1\]"),
    pytest.param("shuffle-string", fit(X, Y, shuffle="no"), T, "shuffle must be True or False"),
    pytest.param("track-accuracy-string", fit(X, Y, track_accuracy="no"), T,
                 "track_accuracy must be True or False"),
    pytest.param("validation-not-pair", fit(X, Y, validation_data=X), V,
                 r"validation_data must be a pair \(X_val, y_val\)"),
    pytest.param("callback-type", fit(X, Y, callbacks=[print]), T,
                 "callbacks must be fastnn.Callback instances"),
    pytest.param("fit-seed", fit(X, Y, seed="abc"), T, "seed must be an integer"),
    # -- optimizers (construction and later changes) ------------------------------------------
    ("sgd-lr-negative", lambda tmp: fastnn.SGD(lr=-0.1), V, "lr must be > 0, got -0.1"),
    ("sgd-lr-set-negative", setattr_(fastnn.SGD(), "lr", -0.1), V, "lr must be > 0, got -0.1"),
    ("sgd-lr-set-nan", setattr_(fastnn.SGD(), "lr", float("nan")), V, "lr must be finite"),
    ("sgd-lr-set-string", setattr_(fastnn.SGD(), "lr", "fast"), T, "lr must be a number"),
    ("momentum-one", lambda tmp: fastnn.SGD(momentum=1.0), V, "momentum must be < 1"),
    ("momentum-set", setattr_(fastnn.SGD(momentum=0.9), "momentum", 1.5), V, "momentum must"),
    ("nesterov-no-momentum", lambda tmp: fastnn.SGD(nesterov=True), V, "needs momentum > 0"),
    ("nesterov-string", lambda tmp: fastnn.SGD(0.1, 0.9, "yes"), T, "nesterov must be True"),
    ("weight-decay", setattr_(fastnn.SGD(), "weight_decay", -1), V, "weight_decay must be >= 0"),
    ("adam-betas", lambda tmp: fastnn.Adam(betas=(1, 1)), V, r"betas must be two numbers"),
    ("adam-betas-set", setattr_(fastnn.Adam(), "betas", (1, 1)), V, r"betas .* \[0, 1\)"),
    ("adam-betas-one", setattr_(fastnn.Adam(), "betas", (0.9,)), V, "betas must be two"),
    ("adam-eps-set", setattr_(fastnn.Adam(), "eps", 0.0), V, "eps must be > 0"),
    # -- predict / evaluate / weights ----------------------------------------------------------
    ("predict-features", lambda tmp: net().predict(np.zeros((2, 5))), V, "has 5 features"),
    ("predict-1d", lambda tmp: net().predict(X[0]), V, r"X must be 2-D .* \(4,\)"),
    ("predict-nan", lambda tmp: net().predict(with_x(a=np.nan)), V, "NaN or infinite"),
    ("predict-empty", lambda tmp: net().predict(X[:0]), V, "X is empty"),
    ("proba-strings", lambda tmp: net().predict_proba(np.full((2, 4), "x")), T, "real numbers"),
    ("evaluate-length", lambda tmp: trained().evaluate(X, Y[:-1]), V, "40 samples but y has 39"),
    ("evaluate-labels", lambda tmp: trained().evaluate(X, Y + 5), V, r"labels must lie in 0\.\.2"),
    ("evaluate-loss", lambda tmp: trained().evaluate(X, Y, loss="l1"), V, "unknown loss 'l1'"),
    ("weights-count", lambda tmp: net().set_weights([X]), V, "expected 4 arrays"),
    ("weights-shape", lambda tmp: net().set_weights([X] * 4), V, r"array 0 has shape \(40, 4\)"),
    ("weights-nan", lambda tmp: net().set_weights([np.full(p.shape, np.nan) for p in
                                                   net().parameters()]), V, "array 0 .* NaN"),
    # -- layers and Sequential -----------------------------------------------------------------
    ("dense-zero", lambda tmp: fastnn.Dense(0, 3), V, "in_features must be > 0"),
    ("dense-negative", lambda tmp: fastnn.Dense(4, -1), V, "out_features must be > 0"),
    ("dense-float", lambda tmp: fastnn.Dense(2.5, 3), T, "in_features must be an integer"),
    ("dense-string", lambda tmp: fastnn.Dense("4", 3), T, "in_features must be a number"),
    ("dense-bool", lambda tmp: fastnn.Dense(True, 3), T, "in_features must be a number"),
    ("dense-activation", lambda tmp: fastnn.Dense(4, 3, "rleu"), V, "unknown activation 'rleu'"),
    ("dense-init", lambda tmp: fastnn.Dense(4, 3, init="zeros"), V, "unknown init 'zeros'"),
    ("dense-slope", lambda tmp: fastnn.Dense(4, 3, negative_slope=-1), V,
     "negative_slope must be >= 0"),
    ("dense-slope-nan", lambda tmp: fastnn.Dense(4, 3, negative_slope=np.nan), V,
     "negative_slope must be finite"),
    ("dense-unbuilt", lambda tmp: fastnn.Dense(4, 3).forward(X), RuntimeError,
     r"Dense\(4, 3.*is not built: put it in a Sequential first"),
    ("sequential-empty", lambda tmp: fastnn.Sequential([]), V, "at least one layer"),
    ("sequential-sizes", lambda tmp: fastnn.Sequential([fastnn.Dense(4, 5), fastnn.Dense(6, 3)]),
     V, r"layer 1: Dense\(6, 3.* expects inputs of shape \(n, 6\), got \(n, 5\)"),
    ("sequential-type", lambda tmp: fastnn.Sequential(["dense"]), T, "layer 0 is str"),
    ("sequential-dtype", lambda tmp: fastnn.Sequential([fastnn.Dense(4, 3)], dtype="int32"), T,
     "dtype must be 'float32' or 'float64', got int32"),
    ("sequential-dtype-name", lambda tmp: fastnn.Sequential([fastnn.Dense(4, 3)], dtype="f3"),
     T, "dtype must be 'float32' or 'float64'"),
    pytest.param("sequential-seed", lambda tmp: fastnn.Sequential([fastnn.Dense(4, 3)], seed="a"),
                 T, "seed must be an integer"),
    # -- load ----------------------------------------------------------------------------------
    ("load-missing", lambda tmp: fastnn.load(tmp / "none.npz"), F, "no model file at"),
    ("load-directory", lambda tmp: fastnn.load(tmp), NF, "is a directory, not a model file"),
    ("load-text", lambda tmp: fastnn.load(file_with(tmp, b"hello")), M, "not a zip archive"),
    ("load-empty", lambda tmp: fastnn.load(file_with(tmp, b"")), M, "an empty file"),
    ("load-pickle", lambda tmp: fastnn.load(file_with(tmp, b"\x80\x04K\x01.")), M,
     "not a fastnn model file: not a zip"),
    ("load-npy", lambda tmp: (np.save(tmp / "a.npy", X), fastnn.load(tmp / "a.npy")), M,
     r"\.npy, not \.npz"),
    ("load-plain-npz", lambda tmp: fastnn.load(npz(tmp, a=X)), M, "no '__fastnn__' record"),
    ("load-truncated", lambda tmp: fastnn.load(truncated_model(tmp)), M, "not a readable"),
    ("load-max-bytes", lambda tmp: fastnn.load(saved(tmp), max_bytes=64), M, "max_bytes=64"),
    ("load-max-bytes-bad", lambda tmp: fastnn.load(saved(tmp), max_bytes=-1), V,
     "max_bytes must be > 0"),
    ("load-extra-member", lambda tmp: fastnn.load(with_member(saved(tmp), "run.py")), M,
     "unexpected member 'run.py'"),
    # -- load_mnist ----------------------------------------------------------------------------
    ("mnist-missing-root", lambda tmp: load_mnist(tmp / "typo", download=False), F,
     "MNIST files not found: train-images.*looked in: .*typo"),
    ("mnist-partial-root", lambda tmp: load_mnist(mnist_root(tmp, ["train-images-idx3-ubyte"]),
                                                  download=False), F, "not found: train-labels"),
    ("mnist-not-mnist", lambda tmp: load_mnist(mnist_root(tmp), download=False), V,
     "SHA-256 .* not the original MNIST"),
    ("mnist-dtype", lambda tmp: load_mnist(tmp, dtype="int32"), V, "dtype must be float32, fl"),
    ("mnist-dtype-name", lambda tmp: load_mnist(tmp, dtype="f3"), T, "dtype must be float32"),
    ("mnist-uint8-normalize", lambda tmp: load_mnist(tmp, dtype="uint8"), V, "normalize=False"),
    ("mnist-root-type", lambda tmp: load_mnist(42), T, "root must be a directory path, got int"),
    ("mnist-download-string", lambda tmp: load_mnist(tmp, download="no"), T,
     "download must be True or False, got 'no'"),
    ("mnist-flatten-string", lambda tmp: load_mnist(tmp, flatten="yes"), T, "flatten must be"),
    ("mnist-verify-false", lambda tmp: load_mnist(tmp / "fashion", verify=False), F,
     "Not downloading: verify=False"),
    ("mnist-unwritable", lambda tmp: load_mnist(file_with(tmp, b"x", "f") / "m"), F,
     "Cannot download into .* not writable"),
    ("mnist-mirrors", lambda tmp: mnist_from_mirrors(tmp, "ftp://127.0.0.1/"), V,
     "FASTNN_MNIST_MIRRORS must hold .* http"),
    # -- the CLI -------------------------------------------------------------------------------
    ("cli-command", run_cli("frobnicate"), CLIFailed, "exit 2: .*unknown command 'frobnicate'"),
    ("cli-epochs", run_cli("train", "--dataset", "{dataset}", "--epochs", "-1"), CLIFailed,
     "exit 2: .*--epochs must be >= 0"),
    ("cli-epochs-text", run_cli("train", "--epochs", "many"), CLIFailed,
     "exit 2: .*--epochs: invalid int value: 'many'"),
    ("cli-batch-zero", run_cli("train", "--batch-size", "0"), CLIFailed,
     "exit 2: .*--batch-size must be >= 1"),
    ("cli-batch-text", run_cli("train", "--batch-size", "big"), CLIFailed,
     "exit 2: .*--batch-size takes N or 'full'"),
    ("cli-hidden", run_cli("train", "--hidden", "12,x"), CLIFailed,
     "exit 2: .*--hidden takes sizes like 128,64"),
    ("cli-hidden-zero", run_cli("train", "--hidden", "0,5"), CLIFailed,
     "exit 2: .*hidden layer sizes must be >= 1"),
    ("cli-activation", run_cli("train", "--activation", "swish2"), CLIFailed,
     "exit 2: .*invalid choice: 'swish2'"),
    ("cli-dtype", run_cli("train", "--dtype", "int8"), CLIFailed, "exit 2: .*invalid choice"),
    ("cli-dataset-missing", run_cli("train", "--dataset", "{tmp}/none.npz"), CLIFailed,
     "exit 2: .*--dataset: no such file"),
    ("cli-dataset-text", lambda tmp: (file_with(tmp, b"text", "d.npz"),
                                      run_cli("train", "--dataset", "{tmp}/d.npz")(tmp)),
     CLIFailed, r"exit 2: .*not an \.npz archive"),
    ("cli-dataset-keys", lambda tmp: (npz(tmp, "d.npz", X_train=X),
                                      run_cli("train", "--dataset", "{tmp}/d.npz")(tmp)),
     CLIFailed, r"exit 2: .*missing arrays \['y_train', 'X_test', 'y_test'\]"),
    ("cli-subset", run_cli("train", "--dataset", "{dataset}", "--subset", "0"), CLIFailed,
     "exit 2: .*--subset must be >= 1"),
    ("cli-val-fraction", run_cli("train", "--dataset", "{dataset}", "--validation-fraction",
                                 "1.5"), CLIFailed, r"exit 2: .*must be in \[0, 1\)"),
    ("cli-lr", run_cli("train", "--dataset", "{dataset}", "--lr", "-1"), CLIFailed,
     "exit 2: .*lr must be > 0"),
    ("cli-momentum", run_cli("train", "--dataset", "{dataset}", "--optimizer", "momentum",
                             "--momentum", "1.5"), CLIFailed, "exit 2: .*momentum must be < 1"),
    ("cli-backend", run_cli("train", "--dataset", "{dataset}", "--backend", "gpu"), CLIFailed,
     "exit 2: .*unknown backend 'gpu'"),
    ("cli-threads", run_cli("train", "--dataset", "{dataset}", "--threads", "0"), CLIFailed,
     "exit 2: .*number of threads must be an integer >= 1"),
    ("cli-info-option", run_cli("info", "--verbose"), CLIFailed,
     "exit 2: .*unrecognized arguments: --verbose"),
]  # fmt: skip


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """No network and no npm, a private cache, no FASTNN_DATA or FASTNN_MNIST_MIRRORS."""

    def no_network(*args, **kwargs):
        raise AssertionError("a bad-input case tried to download")

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FASTNN_DATA", raising=False)
    monkeypatch.delenv("FASTNN_MNIST_MIRRORS", raising=False)
    monkeypatch.setattr(_download, "_urlopen", no_network)
    monkeypatch.setattr(_download, "_run_command", no_network)
    monkeypatch.setattr(_download.shutil, "which", lambda name: None)


def _id(case) -> str:
    return case.values[0] if hasattr(case, "values") else case[0]


@pytest.mark.parametrize(("name", "call", "error", "pattern"), CASES, ids=map(_id, CASES))
def test_bad_input_is_refused_with_a_message_naming_it(tmp_path, name, call, error, pattern):
    with pytest.raises(error, match=f"(?s){pattern}"):  # "." also spans lines
        call(tmp_path)


def test_the_table_is_big_enough():
    # The issue asks for at least 50 malformed inputs, each with its own row.
    names = [_id(case) for case in CASES]
    assert len(names) == len(set(names)) >= 50
