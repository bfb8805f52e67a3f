"""The implementations a benchmark can time: a small registry of row producers.

Every row of the benchmark is one implementation (a fastnn backend or a peer library) at one
batch size. An implementation is an :class:`Impl`: a name, a *factory* that builds a
:class:`Trainer` from a :class:`Setup` (the shared data, initial weights and
hyper-parameters), and the import statement whose cost is its start-up. Rows run in fresh
processes, so the factory is named by a ``"module:function"`` string that the child imports.

Adding a peer
-------------
Write a factory and a ``register_bench_impls`` hook in a module of your own (the benchmark's
own example is :mod:`fastnn.bench.peer_fastnn_sklearn`, the "fastnn-sklearn" row)::

    def my_trainer(setup):                # -> an object with run() and test_accuracy()
        ...

    def register_bench_impls(register):   # called by ``fastnn bench`` with register_impl
        from fastnn.bench.registry import Impl
        register(Impl(name="mylib", factory="mypackage.bench_row:my_trainer",
                      import_code="import mylib", requires=("mylib",)))

The benchmark finds its plug-ins; the libraries it times know nothing of it.

``fastnn bench`` imports each module of :data:`PLUGIN_MODULES` and of the comma-separated
``$FASTNN_BENCH_PLUGINS`` that exists, and calls its ``register_bench_impls`` if it has one.
The new name is then accepted by ``--peers`` and included by default when it is available.
From Python, ``fastnn.bench.register_impl(Impl(...))`` does the same.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

# Modules that may define ``register_bench_impls(register)``; missing ones are ignored.
PLUGIN_MODULES: tuple[str, ...] = ("fastnn.bench.peer_fastnn_sklearn",)
PLUGIN_HOOK = "register_bench_impls"
PLUGIN_ENV = "FASTNN_BENCH_PLUGINS"


@dataclass
class Setup:
    """Everything one row shares with every other row: same model, data and hyper-parameters.

    Attributes
    ----------
    X, y : ndarray, shapes (n, d) float32 and (n,) int64
        Training data, already in memory.
    X_test, y_test : ndarray, shapes (m, d) float32 and (m,) int64
    weights : list of ndarray
        Initial parameters in fastnn's layout, W0 (d0, k0), b0 (k0,), W1, b1, ...; every
        implementation starts from these very values (same initial scale).
    activation : str
        Activation of the hidden layers ("relu"); the output layer is linear and the loss is
        softmax cross-entropy.
    optimizer : dict
        ``name`` ("sgd" or "adam"), ``lr``, ``momentum``, ``nesterov``, ``weight_decay``,
        ``betas``, ``eps``.
    batch_size : int
        Samples per step (n for full batch).
    threads : int
        Threads the implementation may use.
    seed : int
        Shuffling seed: fastnn draws ``np.random.default_rng(seed).permutation(n)`` once per
        epoch; a peer that can use the same orders should.
    options : dict
        Per-implementation options from its :class:`Impl` (e.g. the fastnn backend name).
    """

    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    weights: list[np.ndarray]
    activation: str
    optimizer: dict
    batch_size: int
    threads: int
    seed: int
    options: dict = field(default_factory=dict)

    @property
    def hidden(self) -> list[int]:
        """Widths of the hidden layers."""
        return [int(w.shape[1]) for w in self.weights[0:-2:2]]

    @property
    def n_classes(self) -> int:
        return int(self.weights[-1].shape[0])


class Trainer(Protocol):
    """What a factory returns: a model ready to train on ``setup.X`` (setup is not timed)."""

    def run(
        self,
        epochs: int,
        on_epoch_begin: Callable[[int], None],
        on_epoch_end: Callable[[int], bool],
    ) -> None:
        """Train for up to ``epochs`` epochs, calling the hooks around every epoch.

        ``on_epoch_end`` returns True to stop early (time-to-accuracy). Work between the two
        hooks is the timed epoch: shuffling, batching, forward, backward, update.
        """

    def test_accuracy(self) -> float:
        """Fraction of ``setup.X_test`` classified correctly by the current parameters."""


@dataclass(frozen=True)
class Impl:
    """One implementation that can produce benchmark rows.

    Parameters
    ----------
    name : str
        The row's ``impl`` key ("numba", "torch", ...).
    factory : str
        ``"module:function"``; ``function(setup: Setup) -> Trainer``.
    import_code : str
        Python statements whose run time in a fresh process is the import cost.
    kind : {"backend", "peer"}
        fastnn's own backends are listed by ``--backends``, the others by ``--peers``.
    requires : tuple of str
        Modules that must be importable (checked without importing them).
    options : dict
        Passed to the factory as ``setup.options``.
    label : str
        Human-readable description for the reports.
    """

    name: str
    factory: str
    import_code: str
    kind: str = "peer"
    requires: tuple[str, ...] = ()
    options: dict = field(default_factory=dict)
    label: str = ""


_IMPLS: dict[str, Impl] = {}
_plugins_loaded = False
_plugin_problems: dict[str, str] = {}  # plug-in module -> why it could not be imported


def register_impl(impl: Impl, replace: bool = False) -> None:
    """Add an implementation to the registry (see the module docstring).

    Registering an equal ``Impl`` twice is harmless; a different one under a taken name needs
    ``replace=True``.
    """
    if not isinstance(impl, Impl):
        raise TypeError(f"expected an Impl, got {type(impl).__name__}")
    if impl.kind not in ("backend", "peer"):
        raise ValueError(f"Impl.kind must be 'backend' or 'peer', got {impl.kind!r}")
    if ":" not in impl.factory:
        raise ValueError(f"Impl.factory must be 'module:function', got {impl.factory!r}")
    if impl.name in _IMPLS and not replace and _IMPLS[impl.name] != impl:  # same one: no-op
        raise ValueError(f"an implementation named {impl.name!r} is already registered")
    _IMPLS[impl.name] = impl


def _register_builtins() -> None:
    trainers = "fastnn.bench.trainers"
    for backend in ("numpy", "numba", "cython"):
        register_impl(Impl(
            name=backend, kind="backend", factory=f"{trainers}:fastnn_trainer",
            import_code=f"import fastnn; fastnn.set_backend({backend!r})",
            options={"backend": backend}, label=f"fastnn, {backend} backend",
        ))  # fmt: skip
    register_impl(Impl(
        name="torch", factory=f"{trainers}:torch_trainer", import_code="import torch",
        requires=("torch",), label="PyTorch CPU: nn.Sequential + optim.SGD, eager loop",
    ))  # fmt: skip
    register_impl(Impl(
        name="sklearn", factory=f"{trainers}:sklearn_trainer",
        import_code="import sklearn.neural_network", requires=("sklearn",),
        label="scikit-learn MLPClassifier(solver='sgd'), one partial_fit per epoch",
    ))  # fmt: skip


def load_plugins() -> dict[str, str]:
    """Import the plugin modules once and let them register; returns {module: problem}."""
    global _plugins_loaded
    if _plugins_loaded:
        return dict(_plugin_problems)
    _plugins_loaded = True
    problems = _plugin_problems
    problems.clear()
    extra = [m.strip() for m in os.environ.get(PLUGIN_ENV, "").split(",") if m.strip()]
    for module_name in (*PLUGIN_MODULES, *extra):
        try:
            if importlib.util.find_spec(module_name) is None:
                continue
            module = importlib.import_module(module_name)
        except ImportError as exc:  # a parent package or a dependency is missing
            problems[module_name] = f"{type(exc).__name__}: {exc}"
            continue
        hook = getattr(module, PLUGIN_HOOK, None)
        if hook is not None:
            hook(lambda impl, replace=False: register_impl(impl, replace=replace))
    return dict(problems)


def registered(kind: str | None = None) -> list[Impl]:
    """Registered implementations (of one kind), in registration order."""
    return [impl for impl in _IMPLS.values() if kind is None or impl.kind == kind]


def get_impl(name: str) -> Impl:
    """The registered implementation called ``name`` (KeyError listing the valid names)."""
    try:
        return _IMPLS[name]
    except KeyError:
        raise KeyError(
            f"unknown implementation {name!r}; registered: {', '.join(_IMPLS)}"
        ) from None


def unavailable_reason(impl: Impl) -> str | None:
    """Why ``impl`` cannot run here, or None when it can (imports no peer library)."""
    if impl.kind == "backend":
        from ..backends import backend_status

        status = backend_status().get(impl.options.get("backend", impl.name), "unknown backend")
        return None if status == "ok" else status
    for module_name in impl.requires:
        try:
            found = importlib.util.find_spec(module_name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return f"module {module_name!r} is not installed"
    return None


def load_factory(spec: str) -> Callable[[Setup], Trainer]:
    """The callable named by ``"module:function"``."""
    module_name, _, attr = spec.partition(":")
    target = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return target  # type: ignore[return-value]


_register_builtins()
