"""The ``fastnn`` command: ``fastnn bench``, ``train``, ``info``, ``compile``, ``export``,
``sweep``.

Each subcommand lives in its own module and is imported only when used, so ``fastnn info``
does not pay for loading the benchmark's peers.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

COMMANDS = {
    "bench": ("fastnn.bench.cli", "time MNIST training: backends vs the reference and peers"),
    "train": ("fastnn.cli_train", "train an MLP on MNIST (or an .npz) and watch it learn"),
    "info": ("fastnn.cli_info", "version, backends, threads, BLAS and CPU"),
    "compile": ("fastnn.cli_compile", "compile the numba kernels ahead of time (after install)"),
    "export": ("fastnn.cli_export", "write a saved model (.npz) as an ONNX file"),
    "sweep": ("fastnn.cli_sweep", "hyper-parameter search over recipe keys, on Dask or here"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fastnn`` console script; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        lines = [f"usage: fastnn {{{','.join(COMMANDS)}}} [options]", ""]
        lines += [f"  {name:<8} {help_}" for name, (_, help_) in COMMANDS.items()]
        print("\n".join(lines))
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        from . import __version__

        print(f"fastnn {__version__}")
        return 0
    if args[0] not in COMMANDS:
        print(f"fastnn: unknown command {args[0]!r}; choose from {', '.join(COMMANDS)}",
              file=sys.stderr)  # fmt: skip
        return 2
    import importlib

    module = importlib.import_module(COMMANDS[args[0]][0])
    return int(module.main(args[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
