"""``fastnn export``: write a saved model (``.npz``) as an ONNX file.

::

    fastnn export model.npz model.onnx [--output probabilities] [--opset 17]

The ONNX graph takes ``"input"``, float32 (batch, n_features), and returns ``"logits"`` (what
``model.decision_function`` gives, the default) or ``"probabilities"`` (``predict_proba``).
Exit codes: 0 written, 1 the file could not be written (nothing is left behind), 2 bad
arguments, an unreadable model, a model ONNX cannot express, or onnx not installed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``fastnn export``."""
    from .export.onnx import DEFAULT_OPSET, MIN_OPSET, OUTPUT_KINDS

    p = argparse.ArgumentParser(
        prog="fastnn export", description="Write a saved fastnn model (.npz) as an ONNX file."
    )
    p.add_argument("model", help="model file written by model.save / fastnn train --save")
    p.add_argument("onnx", help="ONNX file to write (replaced if it exists)")
    p.add_argument("--output", choices=OUTPUT_KINDS, default="logits",
                   help="what the graph returns: decision_function (logits, default) or "
                        "predict_proba (probabilities)")  # fmt: skip
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX operator set, >= {MIN_OPSET} (default {DEFAULT_OPSET})")  # fmt: skip
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fastnn export``; returns the exit code (0 ok, 1 write failed, 2 other errors)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, message already printed)
        return int(exc.code or 0)
    import fastnn
    from fastnn.export import to_onnx

    try:
        model = fastnn.load(args.model)
    except (FileNotFoundError, ValueError) as exc:  # ModelFileError is a ValueError
        return _fail(exc, 2)
    try:
        path = to_onnx(model, args.onnx, output=args.output, opset=args.opset)
    except (ImportError, ValueError, TypeError, NotImplementedError) as exc:
        return _fail(exc, 2)
    except OSError as exc:  # the destination cannot be written; nothing was left there
        return _fail(exc, 1)
    shape = f"(batch, {model.n_features}) -> {args.output} (batch, {model.n_outputs})"
    n = len(model.layers)
    print(f"wrote {path}: opset {args.opset}, {n} layer{'s' if n != 1 else ''}, {shape}")
    return 0


def _fail(exc: BaseException, code: int) -> int:
    print(f"fastnn export: error: {exc}", file=sys.stderr)
    return code
