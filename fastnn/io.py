"""Save and load a ``Sequential`` as one ``.npz`` file: arrays plus a JSON record.

File layout (a NumPy ``.npz``, i.e. a zip of ``.npy`` arrays, written without pickling):

``__fastnn__``
    0-d unicode array holding a JSON record: ``format`` ("fastnn.Sequential"),
    ``format_version``, ``fastnn_version``, ``dtype``, ``seed``, ``input_shape`` (one sample,
    since version 2), ``layers`` (per layer its ``config()`` plus ``"kind"``, the layer
    registry's name; version 1 files hold dense layers without ``"kind"``), ``loss`` (name or
    null), ``mse_labels``, ``optimizer`` (class name, hyper-parameters, ``step`` and the number
    of state arrays, or null), and ``arrays``: for every array its shape, dtype and SHA-256.
``W0, b0, W1, b1, ...``
    The parameters: each layer's ``param_names`` followed by the layer's index.
``opt0, opt1, ...``
    Optimizer state in the order of ``Workspace.state_arrays()`` (when saved).

Safety: the file is written through an anonymous (``O_TMPFILE``) or pid-named temporary file in
the same directory and renamed into place (``fastnn._atomic``): a crash never leaves half a model
under the final name, and a later save removes what a killed save left. It is read member by
member (``fastnn._npz``): names and declared sizes are checked against the record and a size
limit before anything is decompressed, nothing is unpickled, so loading never runs code; every
field of the record, every shape, dtype and checksum is verified, and any problem raises
:class:`ModelFileError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import _npz
from ._atomic import write_atomic
from ._validation import check_positive
from .layers import LAYERS, Layer, layer_from_config
from .losses import get_loss
from .optimizers import SGD, Adam, Optimizer

FORMAT = "fastnn.Sequential"
# 1: dense layers only.  2: a "kind" per layer record and the model's "input_shape".
FORMAT_VERSION = 2
META_KEY = "__fastnn__"
_FLOAT_DTYPES = ("float32", "float64")
DEFAULT_MAX_BYTES = 2 * 2**30


class ModelFileError(ValueError):
    """A file that is not a valid fastnn model: wrong type, truncated, corrupted or tampered."""


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _optimizer_record(opt: Optimizer, n_state: int) -> dict[str, Any]:
    record: dict[str, Any] = {"lr": opt.lr, "weight_decay": opt.weight_decay,
                              "step": int(opt.step), "n_state": n_state}  # fmt: skip
    if isinstance(opt, Adam):
        record.update(type="Adam", betas=list(opt.betas), eps=opt.eps)
    elif isinstance(opt, SGD):
        record.update(type="SGD", momentum=opt.momentum, nesterov=opt.nesterov)
    else:
        raise TypeError(f"cannot save optimizer of type {type(opt).__name__}")
    return record


def save(model: Any, path: str | os.PathLike[str], include_optimizer: bool = True) -> None:
    """Write ``model`` (architecture, weights, loss and optionally optimizer state) to ``path``.

    Parameters
    ----------
    model : Sequential
        A built model (this module reads its ``layers``, ``dtype``, ``seed``, ``input_shape``,
        ``loss`` and ``optimizer``).
    path : str or path-like
        Destination, used exactly as given (no suffix is added; ``.npz`` is customary).
    include_optimizer : bool, default True
        Also store the optimizer's hyper-parameters, state arrays (momentum velocity, Adam
        moments) and step count, so that ``fit(..., optimizer=model.optimizer)`` resumes.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    for i, layer in enumerate(model.layers):
        for name, param in zip(layer.param_names, layer.parameters(), strict=True):
            arrays[f"{name}{i}"] = param
    opt_record = None
    opt = model.optimizer
    if include_optimizer and opt is not None:
        state = opt.state or []
        for j, a in enumerate(state):
            arrays[f"opt{j}"] = np.asarray(a)
        opt_record = _optimizer_record(opt, len(state))
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fastnn_version": _version(),
        "dtype": str(model.dtype),
        "seed": model.seed,
        "input_shape": list(model.input_shape),
        "layers": [{"kind": layer.kind, **layer.config()} for layer in model.layers],
        "loss": None if model.loss is None else model.loss.name,
        "mse_labels": bool(getattr(model, "_mse_labels", False)),
        "optimizer": opt_record,
        "arrays": {
            k: {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": _digest(a)}
            for k, a in arrays.items()
        },
    }
    payload = {META_KEY: np.array(json.dumps(meta)), **arrays}
    # Anonymous file + link + rename where possible, else a pid-named temporary file; either
    # way a reader sees the old or the new model, and debris of killed saves is removed.
    write_atomic(path, lambda f: np.savez(f, **payload))


def _version() -> str:
    from . import __version__

    return __version__


def read(path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES) -> SavedModel:
    """Read and check a model file written by :func:`save` (``fastnn.load`` builds the model).

    Nothing is decompressed before the member names and their declared sizes have been checked
    against the record and against ``max_bytes``, so a small malicious file cannot make this
    allocate much memory or spend much time; nothing is unpickled.

    Parameters
    ----------
    path : str or path-like
    max_bytes : int, default 2 GiB
        Largest total size of the arrays (weights and optimizer state) the file may declare.
        Raise it to load a model larger than this.

    Returns
    -------
    SavedModel
        The layers (new, unbuilt), dtype, seed, input shape, weights, loss and optimizer (with
        its state when it was saved); ``restore_into`` copies them into a built model, so that
        ``predict`` and ``predict_proba`` give the same results as before ``save``.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    IsADirectoryError
        ``path`` is a directory.
    ModelFileError
        Not a fastnn model file (not a zip, or a zip without a fastnn record), or truncated,
        corrupted, modified, or larger than ``max_bytes``.
    """
    path = Path(path)
    max_bytes = check_positive("max_bytes", max_bytes, integer=True)
    if path.is_dir():
        raise IsADirectoryError(f"{str(path)!r} is a directory, not a model file")
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {str(path)!r}")
    try:
        meta, arrays = _read_checked(path, max_bytes)
    except _npz.NpzError as exc:
        raise ModelFileError(str(exc)) from None
    except ModelFileError:
        raise
    except Exception as exc:
        # Bad zip data, truncation, CRC mismatch, and a corrupted .npy header, whose parser
        # can fail in many ways (tokenize, syntax, Unicode).
        raise ModelFileError(
            f"{path} is not a readable fastnn model file: {type(exc).__name__}: {exc}"
        ) from exc
    try:
        return _build(meta, arrays, path)
    except ModelFileError:
        raise
    except Exception as exc:  # any malformed field of the record
        raise ModelFileError(f"{path}: invalid model record: {type(exc).__name__}: {exc}") from exc


def _read_checked(path: Path, max_bytes: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The record and the arrays of ``path``, each size checked before it is decompressed."""
    _npz.check_is_zip(path)
    with zipfile.ZipFile(path) as zf:
        found = _npz.members(zf, path, META_KEY)
        meta = _parse_meta(_npz.read_record(zf, found.pop(META_KEY), path), path)
        expected = _declared_arrays(meta, path)
        if set(expected) != set(found):
            raise ModelFileError(
                f"{path}: arrays {sorted(found)} do not match the record {sorted(expected)}"
            )
        _npz.check_declared_sizes(found, expected, path, max_bytes)
        arrays = {
            key: _npz.read_member(zf, found[key], path, _FLOAT_DTYPES, shape)
            for key, (shape, _) in expected.items()
        }
    return meta, arrays


def _declared_arrays(meta: dict[str, Any], path: Path) -> dict[str, tuple[tuple[int, ...], Any]]:
    """``{name: (shape, dtype)}`` from the record, every field checked."""
    declared = meta.get("arrays")
    if not isinstance(declared, dict):
        raise ModelFileError(f"{path}: the record has no valid 'arrays' table")
    out = {}
    for name, info in declared.items():
        shape = info.get("shape") if isinstance(info, dict) else None
        dtype = info.get("dtype") if isinstance(info, dict) else None
        if not (isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape)
                and dtype in _FLOAT_DTYPES):  # fmt: skip
            raise ModelFileError(f"{path}: invalid record entry for array {name!r}: {info!r}")
        out[name] = (tuple(shape), np.dtype(dtype))
    return out


def _parse_meta(raw: str, path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}: the {META_KEY!r} record is not valid JSON") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a fastnn Sequential model file")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} has format version {version!r}; this fastnn reads up to {FORMAT_VERSION} "
            "(upgrade fastnn)"
        )
    return meta


def _check_arrays(meta: dict[str, Any], arrays: dict[str, np.ndarray], path: Path) -> None:
    expected = meta["arrays"]
    if not isinstance(expected, dict) or set(expected) != set(arrays):
        raise ModelFileError(
            f"{path}: arrays {sorted(arrays)} do not match the record {sorted(expected)}"
        )
    for name, info in expected.items():
        a = arrays[name]
        if a.dtype.name not in _FLOAT_DTYPES or list(a.shape) != info["shape"] \
                or a.dtype.name != info["dtype"]:  # fmt: skip
            raise ModelFileError(
                f"{path}: array {name!r} is {a.dtype}{list(a.shape)}, the record says "
                f"{info['dtype']}{info['shape']}"
            )
        if _digest(a) != info["sha256"]:
            raise ModelFileError(f"{path}: array {name!r} does not match its checksum "
                                 "(the file was modified or corrupted)")  # fmt: skip


@dataclass
class SavedModel:
    """What a model file holds, checked, before a ``Sequential`` is built from it."""

    layers: list[Layer]
    dtype: str
    seed: int | None
    input_shape: tuple[int, ...] | None
    weights: list[np.ndarray]
    loss: Any
    mse_labels: bool
    optimizer: Optimizer | None

    def restore_into(self, model: Any) -> None:
        """Copy the weights, loss and optimizer into ``model`` (built from ``self.layers``)."""
        model.set_weights(self.weights)
        model.loss = self.loss
        model._mse_labels = self.mse_labels
        model.optimizer = self.optimizer


def _layer_records(meta: dict[str, Any], arrays: dict[str, np.ndarray], path: Path) -> list:
    configs = meta["layers"]
    if not isinstance(configs, list) or not configs:
        raise ModelFileError(f"{path}: the record has no layers")
    layers = []
    for i, cfg in enumerate(configs):
        if not isinstance(cfg, dict):
            raise ModelFileError(f"{path}: invalid layer record {cfg!r}")
        cfg = dict(cfg)
        kind = cfg.pop("kind", "dense")  # version 1 files hold dense layers only
        if kind not in LAYERS:
            raise ModelFileError(f"{path}: layer {i} has unknown kind {kind!r}")
        try:
            layer = layer_from_config(kind, cfg)
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"{path}: invalid layer record {cfg!r}: {exc}") from exc
        # The sizes must match the stored arrays before Sequential allocates anything.
        for name in layer.param_names:
            if f"{name}{i}" not in arrays:
                raise ModelFileError(f"{path}: layer {i} does not match its weight arrays")
        W = arrays.get(f"W{i}")
        if kind == "dense" and (W is None or W.shape != (layer.in_features, layer.out_features)):
            raise ModelFileError(f"{path}: layer {i} does not match its weight array")
        layers.append(layer)
    return layers


def _build(meta: dict[str, Any], arrays: dict[str, np.ndarray], path: Path) -> SavedModel:
    _check_arrays(meta, arrays, path)
    layers = _layer_records(meta, arrays, path)
    seed = meta["seed"]
    if seed is not None and not isinstance(seed, int):
        raise ModelFileError(f"{path}: invalid seed {seed!r}")
    if meta["dtype"] not in _FLOAT_DTYPES:
        raise ModelFileError(f"{path}: invalid dtype {meta['dtype']!r}")
    shape = meta.get("input_shape")
    if shape is not None and (
        not isinstance(shape, list) or not all(isinstance(s, int) and s > 0 for s in shape)
    ):
        raise ModelFileError(f"{path}: invalid input_shape {shape!r}")
    names = [f"{name}{i}" for i, layer in enumerate(layers) for name in layer.param_names]
    if set(names) != {k for k in arrays if not k.startswith("opt")}:
        raise ModelFileError(f"{path}: the parameter arrays do not match the {len(layers)} layers")
    return SavedModel(
        layers=layers, dtype=meta["dtype"], seed=seed,
        input_shape=None if shape is None else tuple(shape),
        weights=[arrays[k] for k in names],
        loss=None if meta["loss"] is None else get_loss(meta["loss"]),
        mse_labels=bool(meta.get("mse_labels", False)),
        optimizer=None if meta["optimizer"] is None
        else _build_optimizer(meta["optimizer"], arrays, path, _state_shapes(layers, arrays)),
    )  # fmt: skip


def _state_shapes(layers: list[Layer], arrays: dict[str, np.ndarray]) -> list[tuple[int, ...]]:
    """Shapes of ``Workspace.state_arrays()``: two moments, each by parameter position then by
    layer (for dense layers: all W then all b, the order of format version 1)."""
    params = [[arrays[f"{name}{i}"].shape for name in layer.param_names]
              for i, layer in enumerate(layers)]  # fmt: skip
    width = max((len(p) for p in params), default=0)
    one = [p[j] for j in range(width) for p in params if len(p) > j]
    return one * 2


def _build_optimizer(
    rec: dict[str, Any], arrays: dict[str, np.ndarray], path: Path,
    want: list[tuple[int, ...]],
) -> Optimizer:  # fmt: skip
    kind = rec.get("type")
    if kind == "SGD":
        opt: Optimizer = SGD(lr=rec["lr"], momentum=rec["momentum"], nesterov=rec["nesterov"],
                             weight_decay=rec["weight_decay"])  # fmt: skip
    elif kind == "Adam":
        betas = rec["betas"]
        if not isinstance(betas, list) or len(betas) != 2:
            raise ModelFileError(f"{path}: invalid Adam betas {betas!r}")
        opt = Adam(lr=rec["lr"], betas=(betas[0], betas[1]), eps=rec["eps"],
                   weight_decay=rec["weight_decay"])  # fmt: skip
    else:
        raise ModelFileError(f"{path}: unknown optimizer type {kind!r}")
    step, n_state = rec["step"], rec["n_state"]
    if not isinstance(step, int) or step < 0 or not isinstance(n_state, int) or n_state < 0:
        raise ModelFileError(f"{path}: invalid optimizer step/state count")
    names = [f"opt{j}" for j in range(n_state)]
    if any(name not in arrays for name in names):
        raise ModelFileError(f"{path}: optimizer state arrays are missing")
    got = [arrays[name].shape for name in names]
    if got and got != want:
        # fit would drop such a state silently; a file that holds one is damaged.
        raise ModelFileError(f"{path}: optimizer state shapes {got} do not match the "
                             f"parameters (expected {want})")  # fmt: skip
    opt.state = [np.array(arrays[name]) for name in names] or None
    opt.step = step
    return opt
