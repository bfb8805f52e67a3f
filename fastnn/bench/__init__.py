"""The benchmark behind ``fastnn bench``: how much faster the compiled backends train.

Every implementation — fastnn's backends (the NumPy reference first) and peer libraries
(PyTorch, scikit-learn, plug-ins) — trains the same MLP from the same initial weights with the
same hyper-parameters on the same MNIST data, side by side in one run; the report gives
seconds per epoch (median), samples/s, achieved GFLOP/s against the machine's SGEMM ceiling,
speed-up over the reference, test accuracy, compile and start-up time and peak memory.

Modules: :mod:`~fastnn.bench.cli` (the command), :mod:`~fastnn.bench.runner` (scheduling and
the report), :mod:`~fastnn.bench.worker` (one measurement, in a fresh process),
:mod:`~fastnn.bench.registry` (the implementations; how to add one),
:mod:`~fastnn.bench.trainers` (fastnn, PyTorch, scikit-learn), :mod:`~fastnn.bench.flops`,
:mod:`~fastnn.bench.machine`, :mod:`~fastnn.bench.report`, :mod:`~fastnn.bench.tta`.
"""

from .flops import flops_per_epoch, flops_per_sample
from .registry import Impl, Setup, register_impl
from .runner import BenchConfig, quick_config, run_benchmark

__all__ = [
    "BenchConfig",
    "Impl",
    "Setup",
    "flops_per_epoch",
    "flops_per_sample",
    "quick_config",
    "register_impl",
    "run_benchmark",
]
