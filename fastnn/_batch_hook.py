"""The hook the per-batch loop runs between backward and update (training.py's helper).

Per-iteration learning-rate schedules, gradient clipping and diagnostics need Python between
the backward pass and the update of every batch; when none is asked for there is no hook and
the backend's fused epoch runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ._codes import H_LR
from .backends.workspace import Workspace
from .optimizers import Optimizer


def between_batches(
    ws: Workspace, clip: float | None, recorder: Any, schedules: list[Any], opt: Optimizer
) -> Callable[[int, int], None] | None:
    """The hook the eager loop runs between backward and update, or None for the fused path:
    per-iteration learning rates, gradient clipping, diagnostics."""
    if clip is None and recorder is None and not schedules:
        return None
    grads = ws.parameter_gradients()

    def hook(batch: int, rows: int) -> None:
        for schedule in schedules:
            opt.lr = schedule.next_rate()
            ws.hyper[H_LR] = opt.lr
        if clip is not None:
            norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
            if norm > clip:
                scale = grads[0].dtype.type(clip / (norm + 1e-12))
                for g in grads:
                    g *= scale
        if recorder is not None:
            recorder.after_backward(batch, rows)

    return hook
