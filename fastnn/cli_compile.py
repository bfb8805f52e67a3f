"""``fastnn compile``: compile the Numba backend ahead of time, once after install.

Without it the first fit of every kind compiles its kernels (18-28 s here) and caches them for
later processes; with it, the first fit loads them from the precompiled store
(``fastnn/backends/numba/precompile.py``; how the store is read: ``jit.py``, Design H).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``fastnn compile``."""
    from .backends.numba.precompile import DTYPES, LOSSES, OPTIMIZERS

    parser = argparse.ArgumentParser(
        prog="fastnn compile",
        description="Compile the numba backend's kernels ahead of time into its precompiled "
        "store, so that the first fit of a new process loads machine code instead of "
        "compiling it. Kinds of fit not compiled here compile on first use as before.",
    )
    parser.add_argument(
        "--dtypes",
        type=_list,
        default=["float32"],
        help=f"comma list from {','.join(DTYPES)} (default float32)",
    )
    parser.add_argument(
        "--losses",
        type=_list,
        default=list(LOSSES),
        help=f"comma list (default all: {','.join(LOSSES)})",
    )
    parser.add_argument(
        "--optimizers",
        type=_list,
        default=list(OPTIMIZERS),
        help=f"comma list (default all: {','.join(OPTIMIZERS)})",
    )
    parser.add_argument(
        "--store",
        default=None,
        help="store directory (default: beside the package, or "
        "$FASTNN_NUMBA_PRECOMPILED); fits read a store elsewhere only "
        "through that variable",
    )
    parser.add_argument(
        "--status",
        action="store_true",
        help="print where the store is and what it holds, compile nothing",
    )
    parser.add_argument("--clear", action="store_true", help="delete the store")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fastnn compile``; returns the exit code."""
    try:  # before the parser, whose defaults come from the numba backend
        import numba  # noqa: F401
    except ImportError:
        print("fastnn compile: numba is not installed (pip install 'fastnn[numba]')",
              file=sys.stderr)  # fmt: skip
        return 2
    args = build_parser().parse_args(argv)
    from .backends.numba.precompile import compile_store, resolve_store, store_entries

    store = resolve_store(args.store)
    if args.status or args.clear:
        if store is None:
            print("precompiled store: turned off (FASTNN_NUMBA_PRECOMPILED)")
            return 0
        if args.clear and store.exists():
            shutil.rmtree(store)
            print(f"deleted {store}")
        entries, megabytes = store_entries(store)
        print(f"precompiled store: {store}: {entries} kernels, {megabytes:.1f} MB")
        return 0
    try:
        report = compile_store(args.dtypes, args.losses, args.optimizers,
                               store=args.store, progress=not args.no_progress)  # fmt: skip
    except (ValueError, PermissionError, RuntimeError) as exc:
        print(f"fastnn compile: {exc}", file=sys.stderr)
        return 1
    print(f"compiled {report.workloads} fits into {report.store}: {report.entries} kernels, "
          f"{report.megabytes:.1f} MB, in {report.seconds:.0f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
