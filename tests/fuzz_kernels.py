"""Kernel fuzzing: malformed calls of a compiled backend's public kernels, run in a subprocess.

``tests/test_fuzz.py`` draws cases with hypothesis and runs each batch in a fresh process::

    python tests/fuzz_kernels.py BACKEND < cases.json

so a segfault in compiled code kills that process, not the test run, and the test names the
case that was running. A case is a valid call of one kernel (sizes, dtype, activation, loss,
optimizer) plus one mutation of its arguments:

- ``none``: the valid call, which must run;
- ``shape`` (a dimension off by one, or one axis more or fewer), ``dtype``, ``type`` (a list,
  a scalar or None instead of an array), ``layout`` (Fortran order, every other element, reversed)
  and ``value`` (an out-of-range label, index, activation code or batch size): must raise
  ``ValueError``/``TypeError`` when they hit an argument the kernel uses;
- ``alias``: an output overlapping another argument must raise; two inputs may share memory;
- ``ws``: a workspace buffer of ``train_epoch`` with a wrong shape or dtype must raise;
- ``empty``: zero rows; anything but a crash goes.

Each case prints one JSON line ``{"i", "expected", "outcome", "error", "pair"}`` (``pair``:
the output and the argument an ``alias`` case made overlap), after a ``started``
line (flushed, so a crash shows which case it was). ``valid_call`` is also used in-process to
run the valid calls on the NumPy reference, which checks the builders themselves.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from fastnn import _codes as C

ALPHA = 0.1
DTYPES = {"float32": np.float32, "float64": np.float64}
WRONG_DTYPES = ["float32", "float64", "float16", "int64", "int32", "bool", "complex128"]
LAYOUTS = ["fortran", "step", "reverse"]

# role of each argument: "in" / "out" (written) / "unused" (optional, ignored) / "scalar" / "ws"
Call = tuple[list[str], dict[str, Any], dict[str, str]]


def _randn(rng: np.random.Generator, shape: tuple[int, ...], dt: Any) -> np.ndarray:
    return rng.standard_normal(shape).astype(dt)


def _dense_forward(c: dict, rng: np.random.Generator) -> Call:
    n, d, k, dt, act = c["n"], c["d"], c["k"], DTYPES[c["dtype"]], c["act"]
    needs = act in C.NEEDS_PREACTIVATION
    args = {"x": _randn(rng, (n, d), dt), "W": _randn(rng, (d, k), dt), "b": _randn(rng, (k,), dt),
            "act": act, "alpha": ALPHA, "z_out": np.zeros((n, k), dt) if needs else None,
            "out": np.zeros((n, k), dt)}  # fmt: skip
    roles = {"x": "in", "W": "in", "b": "in", "act": "scalar", "alpha": "scalar",
             "z_out": "out" if needs else "unused", "out": "out"}  # fmt: skip
    return list(args), args, roles


def _dense_backward(c: dict, rng: np.random.Generator) -> Call:
    n, d, k, dt, act = c["n"], c["d"], c["k"], DTYPES[c["dtype"]], c["act"]
    needs = act in C.NEEDS_PREACTIVATION
    args = {"x": _randn(rng, (n, d), dt), "W": _randn(rng, (d, k), dt),
            "z": _randn(rng, (n, k), dt) if needs else None, "a": _randn(rng, (n, k), dt),
            "grad": _randn(rng, (n, k), dt), "act": act, "alpha": ALPHA,
            "dW_out": np.zeros((d, k), dt), "db_out": np.zeros(k, dt),
            "grad_x_out": np.zeros((n, d), dt)}  # fmt: skip
    if act == C.SOFTMAX:  # the softmax derivative reads a row of probabilities
        args["a"] = np.abs(args["a"]) / np.abs(args["a"]).sum(axis=1, keepdims=True)
    roles = {"x": "in", "W": "in", "z": "in" if needs else "unused", "a": "in", "grad": "out",
             "act": "scalar", "alpha": "scalar", "dW_out": "out", "db_out": "out",
             "grad_x_out": "out"}  # fmt: skip
    return list(args), args, roles


def _loss(name: str) -> Callable[[dict, np.random.Generator], Call]:
    def build(c: dict, rng: np.random.Generator) -> Call:
        n, k, dt = c["n"], c["k"], DTYPES[c["dtype"]]
        if name == "softmax_cross_entropy":
            targets = rng.integers(0, k, n).astype(np.int64)
        elif name == "mse":
            targets = _randn(rng, (n, k), dt)
        else:
            targets = rng.random((n, k)).astype(dt)
            if name != "binary_cross_entropy":
                targets = (targets / targets.sum(axis=1, keepdims=True)).astype(dt)
        args = {"outputs": _randn(rng, (n, k), dt), "targets": targets,
                "grad_out": np.zeros((n, k), dt)}  # fmt: skip
        return list(args), args, {"outputs": "in", "targets": "in", "grad_out": "out"}

    return build


def _update(name: str) -> Callable[[dict, np.random.Generator], Call]:
    states = {"sgd_update": [], "momentum_update": ["velocity"], "adam_update": ["m", "v"]}[name]
    scalars = {"sgd_update": {"lr": 0.1, "weight_decay": 0.01},
               "momentum_update": {"lr": 0.1, "momentum": 0.9, "nesterov": True,
                                   "weight_decay": 0.01},
               "adam_update": {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                               "weight_decay": 0.0, "step": 3}}[name]  # fmt: skip

    def build(c: dict, rng: np.random.Generator) -> Call:
        p, dt = c["n"] * c["k"], DTYPES[c["dtype"]]
        args = {"param": _randn(rng, (p,), dt), "grad": _randn(rng, (p,), dt)}
        args.update({s: np.abs(_randn(rng, (p,), dt)) for s in states})
        roles = {"param": "out", "grad": "in", **{s: "out" for s in states}}
        args.update(scalars)
        roles.update({s: "scalar" for s in scalars})
        return list(args), args, roles

    return build


def _train_epoch(c: dict, rng: np.random.Generator) -> Call:
    import fastnn
    from fastnn.backends.workspace import Workspace

    n, d, k, dt, bs = c["n"], c["d"], c["k"], DTYPES[c["dtype"]], max(1, min(c["bs"], c["n"]))
    loss, opt = c["loss"], c["opt"]
    sizes = [d, c["h"], k]
    acts = [c["act"] if c["act"] != C.SOFTMAX else C.RELU, C.IDENTITY]
    layers = []
    for (a, b), act in zip(zip(sizes[:-1], sizes[1:], strict=True), acts, strict=True):
        layer = fastnn.Dense(a, b, C.ACTIVATION_NAMES[act])
        layer.build((a,), rng, np.dtype(dt))
        layers.append(layer)
    hyper = np.array([0.01, 0.9, 0.0, 0.0, 0.9, 0.999, 1e-8])
    ws = Workspace(layers, acts, loss, opt, hyper, bs, np.dtype(dt))
    if loss == C.LOSS_CROSS_ENTROPY:
        targets = rng.integers(0, k, n).astype(np.int64)
    else:
        targets = rng.random((n, k)).astype(dt)
        targets /= targets.sum(axis=1, keepdims=True)
    order = rng.permutation(n).astype(np.int64)
    args = {"ws": ws, "X": _randn(rng, (n, d), dt), "targets": targets, "order": order,
            "batch_size": bs, "batch_losses": np.zeros(-(-n // bs))}  # fmt: skip
    roles = {"ws": "ws", "X": "in", "targets": "in", "order": "in", "batch_size": "scalar",
             "batch_losses": "out"}  # fmt: skip
    return list(args), args, roles


def _conv_shapes(c: dict) -> tuple[int, int, int, int]:
    """(H, kernel, stride, padding) that tile: H + 2p - k is a multiple of s."""
    h, k, p = c["h"] + 2, min(c["ksize"], c["h"] + 2), c["padding"]
    s = c["stride"] if (h + 2 * p - k) % c["stride"] == 0 else 1
    return h, k, s, p


def _conv_act(c: dict) -> int:
    return c["act"] if c["act"] != C.SOFTMAX else C.TANH  # a convolution takes no softmax


def _conv2d_forward(c: dict, rng: np.random.Generator) -> Call:
    n, ch, f, dt, act = c["n"], c["d"], c["k"], DTYPES[c["dtype"]], _conv_act(c)
    h, k, s, p = _conv_shapes(c)
    ho = (h + 2 * p - k) // s + 1
    needs = act in C.NEEDS_PREACTIVATION
    args = {"x": _randn(rng, (n, ch, h, h), dt), "W": _randn(rng, (f, ch, k, k), dt),
            "b": _randn(rng, (f,), dt), "stride": s, "padding": p, "act": act, "alpha": ALPHA,
            "z_out": np.zeros((n, f, ho, ho), dt) if needs else None,
            "out": np.zeros((n, f, ho, ho), dt)}  # fmt: skip
    roles = {"x": "in", "W": "in", "b": "in", "stride": "scalar", "padding": "scalar",
             "act": "scalar", "alpha": "scalar", "z_out": "out" if needs else "unused",
             "out": "out"}  # fmt: skip
    return list(args), args, roles


def _conv2d_backward(c: dict, rng: np.random.Generator) -> Call:
    _, fwd, _ = _conv2d_forward(c, rng)
    f, dt, act = c["k"], DTYPES[c["dtype"]], _conv_act(c)
    needs = act in C.NEEDS_PREACTIVATION
    shape = fwd["out"].shape
    args = {"x": fwd["x"], "W": fwd["W"], "z": _randn(rng, shape, dt) if needs else None,
            "a": _randn(rng, shape, dt), "grad": _randn(rng, shape, dt),
            "stride": fwd["stride"], "padding": fwd["padding"], "act": act, "alpha": ALPHA,
            "dW_out": np.zeros_like(fwd["W"]), "db_out": np.zeros(f, dt),
            "grad_x_out": np.zeros_like(fwd["x"])}  # fmt: skip
    roles = {"x": "in", "W": "in", "z": "in" if needs else "unused", "a": "in", "grad": "out",
             "stride": "scalar", "padding": "scalar", "act": "scalar", "alpha": "scalar",
             "dW_out": "out", "db_out": "out", "grad_x_out": "out"}  # fmt: skip
    return list(args), args, roles


def _pool(c: dict) -> tuple[int, int, int]:
    h, k = c["h"] + 2, min(c["ksize"], c["h"] + 2)
    s = c["stride"] if (h - k) % c["stride"] == 0 else 1
    return h, k, s


def _maxpool2d_forward(c: dict, rng: np.random.Generator) -> Call:
    n, ch, dt = c["n"], c["d"], DTYPES[c["dtype"]]
    h, k, s = _pool(c)
    ho = (h - k) // s + 1
    args = {"x": _randn(rng, (n, ch, h, h), dt), "kernel": k, "stride": s,
            "out": np.zeros((n, ch, ho, ho), dt),
            "argmax_out": np.zeros((n, ch, ho, ho), np.int64)}  # fmt: skip
    roles = {"x": "in", "kernel": "scalar", "stride": "scalar", "out": "out",
             "argmax_out": "out"}  # fmt: skip
    return list(args), args, roles


def _maxpool2d_backward(c: dict, rng: np.random.Generator) -> Call:
    n, ch, dt = c["n"], c["d"], DTYPES[c["dtype"]]
    h, k, s = _pool(c)
    ho = (h - k) // s + 1
    args = {"grad": _randn(rng, (n, ch, ho, ho), dt),
            "argmax": rng.integers(0, h * h, (n, ch, ho, ho)).astype(np.int64),
            "grad_x_out": np.zeros((n, ch, h, h), dt)}  # fmt: skip
    return list(args), args, {"grad": "in", "argmax": "in", "grad_x_out": "out"}


def _pooled_conv(c: dict, rng: np.random.Generator) -> tuple[dict, int, int, tuple]:
    """A valid convolution whose activation the pooled output serves, and a pooling of it."""
    act = _conv_act(c)
    act = C.RELU if act in C.NEEDS_PREACTIVATION else act
    _, fwd, _ = _conv2d_forward({**c, "act": act}, rng)
    ho = fwd["out"].shape[2]
    pk, ps = (2, 1) if ho >= 2 else (1, 1)  # stride 1 tiles any size
    n, f = fwd["out"].shape[:2]
    return fwd, pk, ps, (n, f, ho - pk + 1, ho - pk + 1)


def _conv2d_maxpool_forward(c: dict, rng: np.random.Generator) -> Call:
    fwd, pk, ps, pooled = _pooled_conv(c, rng)
    args = {**{k: fwd[k] for k in ("x", "W", "b", "stride", "padding", "act", "alpha")},
            "kernel": pk, "pool_stride": ps, "out": np.zeros(pooled, fwd["x"].dtype),
            "argmax_out": np.zeros(pooled, np.int64)}  # fmt: skip
    roles = {"x": "in", "W": "in", "b": "in", "stride": "scalar", "padding": "scalar",
             "act": "scalar", "alpha": "scalar", "kernel": "scalar", "pool_stride": "scalar",
             "out": "out", "argmax_out": "out"}  # fmt: skip
    return list(args), args, roles


def _conv2d_maxpool_backward(c: dict, rng: np.random.Generator) -> Call:
    fwd, pk, ps, pooled = _pooled_conv(c, rng)
    dt, ho = fwd["x"].dtype, fwd["out"].shape[2]
    args = {"x": fwd["x"], "W": fwd["W"], "a": _randn(rng, pooled, dt),
            "argmax": rng.integers(0, ho * ho, pooled).astype(np.int64),
            "grad": _randn(rng, pooled, dt), "stride": fwd["stride"],
            "padding": fwd["padding"], "act": fwd["act"], "alpha": ALPHA,
            "dW_out": np.zeros_like(fwd["W"]), "db_out": np.zeros(fwd["W"].shape[0], dt),
            "grad_x_out": np.zeros_like(fwd["x"])}  # fmt: skip
    roles = {"x": "in", "W": "in", "a": "in", "argmax": "in", "grad": "out",
             "stride": "scalar", "padding": "scalar", "act": "scalar", "alpha": "scalar",
             "dW_out": "out", "db_out": "out", "grad_x_out": "out"}  # fmt: skip
    return list(args), args, roles


BUILDERS: dict[str, Callable[[dict, np.random.Generator], Call]] = {
    "dense_forward": _dense_forward,
    "dense_backward": _dense_backward,
    **{name: _loss(name) for name in C.LOSS_KERNEL_NAMES.values()},
    **{name: _update(name) for name in ("sgd_update", "momentum_update", "adam_update")},
    "train_epoch": _train_epoch,
    "conv2d_forward": _conv2d_forward,
    "conv2d_backward": _conv2d_backward,
    "maxpool2d_forward": _maxpool2d_forward,
    "maxpool2d_backward": _maxpool2d_backward,
    "conv2d_maxpool_forward": _conv2d_maxpool_forward,
    "conv2d_maxpool_backward": _conv2d_maxpool_backward,
}


def valid_call(case: dict) -> Call:
    """The valid call of ``case["kernel"]`` for the case's sizes (from its seed)."""
    return BUILDERS[case["kernel"]](case, np.random.default_rng(case["seed"]))


def _reshaped(a: np.ndarray, m: dict, rng: np.random.Generator) -> np.ndarray:
    shape = list(a.shape)
    if m["axis"] >= len(shape) or m["delta"] == 0:  # one axis more or fewer
        shape = shape[:-1] if m["delta"] < 0 and len(shape) > 1 else [*shape, 1]
    else:
        shape[m["axis"]] = max(0, shape[m["axis"]] + m["delta"])
    return _randn(rng, tuple(shape), a.dtype) if a.dtype.kind == "f" else np.zeros(shape, a.dtype)


def _laid_out(a: np.ndarray, how: str) -> np.ndarray:
    if how == "fortran":
        return np.asfortranarray(a)
    if how == "reverse":
        return a[::-1]
    wide = np.repeat(a, 2, axis=-1)
    return wide[..., ::2]  # equal values, every other element of a wider buffer


def _alias(args: dict, roles: dict, m: dict) -> bool:
    """Make an output overlap another array argument; True if it does."""
    outs = [k for k, r in roles.items() if r == "out" and isinstance(args[k], np.ndarray)]
    others = [k for k, a in args.items() if isinstance(a, np.ndarray) and roles[k] in ("in", "out")]
    if not outs:
        return False
    out = m.get("out") or outs[m["arg"] % len(outs)]
    partners = [k for k in others if k != out and args[k].dtype == args[out].dtype
                and args[k].size >= args[out].size > 0]  # fmt: skip
    if not partners or m.get("partner", partners[0]) not in partners:
        return False
    partner = m.get("partner") or partners[m["pick"] % len(partners)]
    src = args[partner]
    args[out] = src.reshape(-1)[: args[out].size].reshape(args[out].shape)
    m["pair"] = [out, partner]
    return True


def _mutate_ws(ws: Any, m: dict) -> bool:
    """Replace one buffer of the workspace by a wrong one; True if it is wrong."""
    attrs = ["x_batch", "y_batch", "hyper", "weights", "biases", "outputs", "grads", "dW", "db",
             "state1_w", "state2_b", "acts"]  # fmt: skip
    name = attrs[m["arg"] % len(attrs)]
    value = getattr(ws, name)
    target = value[m["pick"] % len(value)] if isinstance(value, list) else value
    if m["pick"] % 2:  # a wrong dtype
        wrong = target.astype(np.float16 if target.dtype != np.float16 else np.float32)
    else:  # a wrong shape
        wrong = np.zeros((*target.shape[:-1], target.shape[-1] + 1), target.dtype)
    if name == "acts":
        wrong = np.full_like(target, 97)  # an unknown activation code
    if isinstance(value, list):
        value[m["pick"] % len(value)] = wrong
    else:
        setattr(ws, name, wrong)
    return True


def mutate(case: dict, names: list[str], args: dict, roles: dict) -> str:
    """Apply the case's mutation to ``args`` in place; returns "ok", "raise" or "any"."""
    m, rng = case["mutation"], np.random.default_rng(case["seed"] + 1)
    kind = m["kind"]
    if kind == "none":
        return "ok"
    if kind == "empty":
        return "any"
    if kind == "alias":
        return "raise" if _alias(args, roles, m) else "ok"
    if kind == "ws":
        return "raise" if "ws" in args and _mutate_ws(args["ws"], m) else "ok"
    if kind == "value":
        return _bad_value(case, args)
    arrays = [k for k in names if roles[k] in ("in", "out", "unused")]
    name = arrays[m["arg"] % len(arrays)]
    old = args[name]
    used = roles[name] != "unused"
    if old is None:  # an unused optional argument given anyway, of any shape
        args[name] = _randn(rng, (2, 3), np.float64)
        return "any"
    if kind == "shape":
        args[name] = _reshaped(old, m, rng)
    elif kind == "dtype":
        new = np.dtype(WRONG_DTYPES[m["pick"] % len(WRONG_DTYPES)])
        if new == old.dtype:
            return "ok"
        args[name] = old.astype(new)
    elif kind == "layout":
        args[name] = _laid_out(old, LAYOUTS[m["pick"] % len(LAYOUTS)])
        if args[name].flags.c_contiguous:
            return "ok"
    elif kind == "type":
        args[name] = [old.tolist(), 1.0, None][m["pick"] % 3]
        if args[name] is None and name == "grad_x_out" and case["kernel"] != "maxpool2d_backward":
            return "ok"  # None is how a first layer skips its input gradient (pooling has none)
    return "raise" if used else "any"


def _bad_value(case: dict, args: dict) -> str:
    """An out-of-range scalar or index where the kernel has one; "ok" where it has none."""
    m = case["mutation"]
    if "act" in args:
        args["act"] = [97, -1, len(C.ACTIVATION_NAMES)][m["pick"] % 3]
    elif case["kernel"] == "train_epoch":
        if m["pick"] % 2:
            args["batch_size"] = [0, args["ws"].batch_size + 1][m["arg"] % 2]
        else:
            args["order"][m["arg"] % len(args["order"])] = [-1, len(args["order"])][m["arg"] % 2]
    elif case["kernel"] == "softmax_cross_entropy":
        args["targets"][m["arg"] % len(args["targets"])] = [-1, case["k"]][m["pick"] % 2]
    elif case["kernel"] in ("maxpool2d_backward", "conv2d_maxpool_backward"):
        args["argmax"].reshape(-1)[0] = [-1, 10**6][m["pick"] % 2]
    elif case["kernel"] == "maxpool2d_forward":
        args["kernel"] = [0, -2][m["pick"] % 2]
    else:
        return "ok"
    return "raise"


def run_case(B: Any, case: dict) -> dict:
    """Build, mutate and call one case on backend module ``B``."""
    if case["mutation"]["kind"] == "empty":
        case = {**case, "n": 0}
    try:
        names, args, roles = valid_call(case)
        expected = mutate(case, names, args, roles)
    except Exception as exc:  # noqa: BLE001 - a bug of this file, not of the backend
        return {"expected": "ok", "outcome": "other", "error": f"fuzzer: {exc!r}", "pair": None}
    try:
        with np.errstate(all="ignore"):
            getattr(B, case["kernel"])(*(args[k] for k in names))
    except (ValueError, TypeError) as exc:
        outcome, error = "raised", f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - any other exception is a finding, reported
        outcome, error = "other", f"{type(exc).__name__}: {exc}"
    else:
        outcome, error = "ok", None
    return {"expected": expected, "outcome": outcome, "error": error,
            "pair": case["mutation"].get("pair")}  # fmt: skip


def main() -> int:
    from fastnn.backends import load_backend

    B = load_backend(sys.argv[1])
    if B is None:
        print(json.dumps({"error": f"backend {sys.argv[1]} does not load"}), flush=True)
        return 2
    for i, case in enumerate(json.load(sys.stdin)):
        print(json.dumps({"i": i, "started": True}), flush=True)
        print(json.dumps({"i": i, **run_case(B, case)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
