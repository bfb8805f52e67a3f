"""Prediction plans: a model's forward pass kept ready between calls, and the served-model path.

Design:

A. A *plan* runs the forward pass of up to ``rows`` samples over buffers allocated once (a
   served model predicts one sample at a time: allocating per call costs more than the
   arithmetic). A backend with ``prepare_predict_dense`` runs a stack of dense layers in one
   compiled call; otherwise the layers run one by one on their kernels.
B. A plan is rebuilt when a parameter array was replaced (``layer.W = ...``), never reused
   stale: it holds the arrays it was built from and compares them by identity.
C. A plan's buffers serve one call at a time. Two threads predicting with one model (a web
   server) would overwrite each other's outputs, so a call that finds the plan busy runs on a
   fresh plan of its own (same results, its own buffers) instead of waiting.
D. :func:`fast_forward` is the path of the common served call: an ndarray of the model dtype,
   C-contiguous, 2-D, at most ``FAST_ROWS`` rows, no ``input_scale``. It checks exactly what
   :func:`fastnn._validation.check_X_in_place` checks (shape, dtype, NaN/inf) with a few
   attribute reads and one ``isfinite`` pass, and skips the chunking machinery; the result is a
   fresh array, never a view of the plan's buffers. Anything else returns None and takes the
   general path.
E. A plan built from ``prepare_predict_dense`` checks its input in its compiled pass (it
   returns None for NaN or infinite values, having computed nothing): a caller feeding it the
   user's array itself (:func:`checks_input`) skips the separate check of the values, one read
   of ``X`` fewer; :func:`outputs_of` then raises the check's error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Protocol

import numpy as np

from ._feed import is_direct
from ._validation import check_X_in_place
from .backends import eager, resolve_backend
from .backends.workspace import make_slots

#: Rows a served call may have to take the fast path (Design D); its plan holds this many.
FAST_ROWS = 64
#: Plans a model keeps (a few batch sizes and output kinds, not an unbounded cache).
MAX_PLANS = 8

Run = Callable[[np.ndarray], np.ndarray]


class Model(Protocol):
    """What a plan reads of a model (``fastnn.Sequential``; this module never imports it)."""

    layers: list
    dtype: np.dtype
    input_shape: tuple[int, ...] | None
    backend: str | None


class Plan:
    """A forward pass for up to ``rows`` samples on one backend (Design A-C)."""

    __slots__ = ("refs", "run", "lock")

    def __init__(self, model: Model, B: ModuleType, rows: int, last_act: int) -> None:
        self.refs = tuple((la, n, getattr(la, n)) for la in model.layers for n in la.param_names)
        self.run: Callable[[np.ndarray], np.ndarray | None] = _build(model, B, rows, last_act)
        self.lock = threading.Lock()

    def is_current(self) -> bool:
        """False when a parameter array of the model was replaced since (Design B)."""
        for layer, name, array in self.refs:
            if getattr(layer, name) is not array:
                return False
        return True


def checks_input(model: Model, B: ModuleType) -> bool:
    """Whether the model's plans on ``B`` run in one compiled call that checks its input
    (Design A, E)."""
    return hasattr(B, "prepare_predict_dense") and all(la.kind == "dense" for la in model.layers)


def checked_by_plan(model: Model, B: ModuleType, X: object, scale: float | None) -> bool:
    """True when ``X`` goes as it is to plans that check its values (Design E): an ndarray of
    the model's sample shape and dtype, C-contiguous, with no ``scale``."""
    return (
        type(X) is np.ndarray
        and X.shape[1:] == model.input_shape
        and X.shape[0] > 0
        and is_direct(X, model.dtype, scale)
        and checks_input(model, B)
    )


def outputs_of(plan: Plan, x: np.ndarray, model: Model, X: np.ndarray | None = None) -> np.ndarray:
    """``plan.run(x)``, raising the error of :func:`check_X_in_place` on ``X`` (the whole
    input ``x`` is a chunk of; default ``x``) where the plan found NaN or infinite values in
    ``x`` (Design E): the message counts them over all of ``X``."""
    out = plan.run(x)
    if out is None:
        check_X_in_place(x if X is None else X, model.input_shape, model.dtype)
        raise ValueError("X contains NaN or infinite values")  # x changed meanwhile (a race)
    return out


def _build(model: Model, B: ModuleType, rows: int, last_act: int) -> Run:
    layers = model.layers
    acts = [layer.act_code for layer in layers[:-1]] + [last_act]
    if checks_input(model, B):
        return B.prepare_predict_dense(
            [la.W for la in layers], [la.b for la in layers], acts,
            [la.act_alpha for la in layers], rows,
        )  # fmt: skip
    slots = make_slots(layers, acts, rows, model.dtype, training=False)

    fused = eager.fused_pairs(B, layers)

    def run(x: np.ndarray) -> np.ndarray:
        return eager.forward(B, layers, slots, x, x.shape[0], fused)

    return run


def plan_for(model: Model, B: ModuleType, rows: int, last_act: int) -> Plan:
    """The model's plan for (backend, rows, output activation), built on first use."""
    plans = model.__dict__.setdefault("_plans", {})
    key = (B.NAME, rows, last_act)
    plan = plans.get(key)
    if plan is None or not plan.is_current():
        if len(plans) >= MAX_PLANS:
            plans.clear()
        plan = plans[key] = Plan(model, B, rows, last_act)
    return plan


@contextmanager
def exclusive_plan(model: Model, B: ModuleType, rows: int, last_act: int) -> Iterator[Plan]:
    """The model's plan, held for the ``with`` block; a fresh one if another thread holds it
    (Design C). Outputs of ``plan.run`` are views of its buffers, valid inside the block."""
    plan = plan_for(model, B, rows, last_act)
    if not plan.lock.acquire(blocking=False):
        yield Plan(model, B, rows, last_act)
        return
    try:
        yield plan
    finally:
        plan.lock.release()


def fast_forward(
    model: Model, X: object, last_act: int, backend: str | None, input_scale: float | None
) -> np.ndarray | None:
    """Outputs (n, n_outputs) of a served call (Design D), or None for the general path."""
    if (
        input_scale is not None
        or type(X) is not np.ndarray
        or X.ndim != 2
        or X.dtype != model.dtype
        or not X.flags.c_contiguous
        or not 0 < X.shape[0] <= FAST_ROWS
        or model.input_shape is None
        or model.input_shape != X.shape[1:]
    ):
        return None
    B = resolve_backend(backend or model.backend)
    if not checks_input(model, B) and not np.isfinite(X).all():
        check_X_in_place(X, model.input_shape, model.dtype)  # raises with the count
    plan = plan_for(model, B, FAST_ROWS, last_act)
    if not plan.lock.acquire(blocking=False):  # Design C, without a context manager's cost
        plan = Plan(model, B, FAST_ROWS, last_act)
        return outputs_of(plan, X, model).reshape(X.shape[0], -1).copy()
    try:
        return outputs_of(plan, X, model).reshape(X.shape[0], -1).copy()
    finally:
        plan.lock.release()
