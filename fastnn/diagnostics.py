"""Training diagnostics: watch gradients, weights and ReLU units while a network learns.

``fit(..., diagnostics=True)`` creates a :class:`DiagnosticsRecorder`, which looks at the
workspace after every batch's backward pass (before its update) and, after every epoch,
summarises per layer:

``grad_norm``
    Mean over the epoch's batches of the L2 norm of dL/dW (weights only, not biases).
``grad_rms``
    ``grad_norm`` divided by sqrt(number of weights): comparable between layers of different size.
``weight_norm``
    L2 norm of W at the end of the epoch.
``update_ratio``
    Mean over the batches of ||W after - W before|| / ||W before|| for one optimizer step,
    whatever the optimizer. Around 1e-3 is the usual healthy value; ~1e-1 means the steps are
    as large as the weights themselves (learning rate too high).
``dead_fraction``
    For ReLU-family layers: the fraction of units that were not active (output > 0) on a
    single sample of the epoch. A dead ReLU unit has zero gradient, so it never recovers.

and warns (``warnings.warn``, categories below, once per layer and kind in a ``fit``) when:

- gradients vanish toward the input: the first layers' ``grad_rms`` is a tiny fraction of
  the last layer's (remedy: ReLU instead of sigmoid/tanh, He/Xavier initialisation);
- gradients explode: non-finite, a layer's weights grow tenfold in an epoch, or its steps
  are half as large as its weights (remedy: lower learning rate, ``clip_grad_norm``);
- ReLU units die (remedy: lower learning rate, He initialisation, leaky_relu).

Cost: per layer and batch three norms, one subtraction and one copy of the weight matrix and
one comparison of the ReLU outputs; diagnostics also make ``fit`` run the per-batch loop over
the backend's kernels instead of its fused epoch (measured costs: ``benchmarks/README.md``,
"Measured once").
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from .layers import RELU_FAMILY

if TYPE_CHECKING:
    from .backends.workspace import Workspace

# Thresholds, from measurements on 5,000 MNIST digits, 2 epochs: healthy ReLU/He, deep
# tanh/Xavier and Adam nets kept the first/last gradient RMS ratio in 0.13-0.3, update ratios
# below 0.07 (SGD lr 0.5) and their weight norms within x1.3 per epoch. Deep sigmoid nets that
# did not learn had ratios of 2e-4 (Xavier) to 6e-8 (N(0, 0.01)); SGD lr 1.0 with momentum had
# update ratios of 0.11-0.15 and weights growing x120 in its first epoch, then 93-97% dead units.
# Easy data can give a healthy net first-epoch update ratios near 0.1, so the step-size test is
# loose and the weight growth catches most explosions.
VANISHING_RATIO = 1e-2
EXPLODING_UPDATE_RATIO = 0.5
EXPLODING_GROWTH = 10.0
DEAD_FRACTION = 0.5


class GradientWarning(UserWarning):
    """Base class of the warnings the diagnostics give while training."""


class VanishingGradientWarning(GradientWarning):
    """The gradients of the layers near the input are vanishingly small."""


class ExplodingGradientWarning(GradientWarning):
    """The gradients (or the steps they cause) are huge or not finite."""


class DeadUnitsWarning(GradientWarning):
    """Many ReLU units never activate, so they no longer learn."""


def _norm(a: np.ndarray) -> float:
    # vdot of a flat view: one BLAS pass, no temporary array.
    flat = a.reshape(-1)
    square = float(np.vdot(flat, flat))
    if math.isinf(square) and flat.dtype != np.float64:
        # The float32 sum of squares overflows long before the entries do (3.4e38).
        square = float(np.vdot(flat.astype(np.float64), flat.astype(np.float64)))
    return math.sqrt(square)


class DiagnosticsRecorder:
    """Per-layer gradient, weight, update and dead-unit statistics of one ``fit``.

    Parameters
    ----------
    model : Sequential
        The model being trained (for layer activations).
    ws : Workspace
        The training workspace: each layer's ``ws.slots[i]`` holds its parameters (the first
        one, the weights, is what the norms describe), their batch gradients and the layer
        output ``slot.output[:rows]`` when :meth:`after_backward` runs. Layers without
        parameters (pooling, reshaping) are skipped: ``layer`` in the records is the index
        in ``model.layers``.
    warn : bool, default True
        Issue :class:`GradientWarning` warnings (each kind once per layer per fit).
    """

    def __init__(self, model: Any, ws: Workspace, warn: bool = True) -> None:
        self.ws = ws
        self.warn = warn
        # Only layers with parameters learn; their first parameter is the weight array.
        self._index = [i for i, slot in enumerate(ws.slots) if slot.params]
        self._weights = [ws.slots[i].params[0] for i in self._index]
        self._wgrads = [ws.slots[i].grads[0] for i in self._index]
        self._outputs = [ws.slots[i].output for i in self._index]
        self.activations = [getattr(model.layers[i], "activation", "identity") for i in self._index]
        # The output layer's ReLU (rare) is fed to the loss; only hidden ReLUs can "die".
        self._relu = [j for j, a in enumerate(self.activations[:-1]) if a in RELU_FAMILY]
        self._before = [w.copy() for w in self._weights]
        self._diff = [np.empty_like(w) for w in self._weights]
        self._pending = False  # True once _before holds the weights of a batch not yet updated
        self._warned: set[tuple[str, int]] = set()
        self._start_epoch()

    def _start_epoch(self) -> None:
        n = len(self._index)
        self._grad_sum = np.zeros(n)
        self._grad_max = np.zeros(n)
        self._ratio_sum = np.zeros(n)
        self._batches = 0
        self._updates = 0
        # One flag per unit: a dense neuron or a convolution's output channel (axis 1).
        self._active = {j: np.zeros(self._outputs[j].shape[1], dtype=bool) for j in self._relu}
        self._start_norms = [_norm(w) for w in self._weights]

    def after_backward(self, batch_index: int, rows: int) -> None:
        """Record the batch whose gradients are in the workspace (called before its update).

        Parameters
        ----------
        batch_index : int
            Index of the batch (unused: the recorder keeps its own count).
        rows : int
            Samples in the batch: the valid rows of each layer's output.
        """
        measure_update = self._pending
        for i, W in enumerate(self._weights):
            g = _norm(self._wgrads[i])
            self._grad_sum[i] += g
            self._grad_max[i] = max(self._grad_max[i], g)
            if measure_update:
                # _before holds W as it was before the previous batch's update.
                np.subtract(W, self._before[i], out=self._diff[i])
                self._ratio_sum[i] += _norm(self._diff[i]) / max(_norm(self._before[i]), 1e-12)
            self._before[i][...] = W
        for j, active in self._active.items():
            out = self._outputs[j][:rows]
            active |= (out > 0).any(axis=tuple(a for a in range(out.ndim) if a != 1))
        self._batches += 1
        self._updates += measure_update
        self._pending = True

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        """Summarise the epoch and warn about problems; start a new epoch.

        Parameters
        ----------
        epoch : int
            0-based epoch index.

        Returns
        -------
        dict
            ``{"epoch": int (1-based), "layers": [per-layer dict], "warnings": [str]}``; each
            layer dict has ``layer``, ``activation``, ``grad_norm``, ``grad_max``, ``grad_rms``,
            ``weight_norm``, ``update_ratio`` (None before the first measured step) and
            ``dead_fraction`` (None for non-ReLU layers). JSON-serializable.
        """
        batches = max(self._batches, 1)
        layers = []
        for i, W in enumerate(self._weights):
            grad = float(self._grad_sum[i] / batches)
            layers.append({
                "layer": self._index[i],
                "activation": self.activations[i],
                "grad_norm": grad,
                "grad_max": float(self._grad_max[i]),
                "grad_rms": grad / math.sqrt(W.size),
                "weight_norm": _norm(W),
                "update_ratio": (float(self._ratio_sum[i] / self._updates)
                                 if self._updates else None),
                "dead_fraction": (float(1.0 - self._active[i].mean())
                                  if i in self._active else None),
            })  # fmt: skip
        messages = self._check(layers)
        self._start_epoch()
        return {"epoch": epoch + 1, "layers": layers, "warnings": [m for _, m in messages]}

    def _exploding(self, s: dict[str, Any]) -> str | None:
        i, name = s["layer"], f"layer {s['layer']} ({s['activation']})"
        remedy = "remedy: lower the learning rate or set clip_grad_norm"
        if not (math.isfinite(s["grad_norm"]) and math.isfinite(s["weight_norm"])):
            return f"{name}: gradients or weights are not finite; {remedy}"
        growth = s["weight_norm"] / max(self._start_norms[self._index.index(i)], 1e-12)
        if growth > EXPLODING_GROWTH:
            return f"{name}: the weight norm grew x{growth:.3g} in one epoch; the gradients " \
                   f"explode; {remedy}"  # fmt: skip
        ratio = s["update_ratio"]
        if ratio is not None and ratio > EXPLODING_UPDATE_RATIO:
            return f"{name}: each step changes the weights by {ratio:.2g} of their norm " \
                   f"(healthy: ~1e-3); the gradients explode; {remedy}"  # fmt: skip
        return None

    def _check(self, layers: list[dict[str, Any]]) -> list[tuple[type[Warning], str]]:
        found: list[tuple[type[Warning], str, int, str]] = []
        for s in layers:
            message = self._exploding(s)
            if message is not None:
                found.append((ExplodingGradientWarning, "exploding", s["layer"], message))
        last = layers[-1]["grad_rms"]
        # Exploding weights distort every ratio: report vanishing only in a sane epoch.
        for s in layers[:-1] if not found and last > 0 else []:
            if s["grad_rms"] < VANISHING_RATIO * last:
                found.append((VanishingGradientWarning, "vanishing", s["layer"],
                    f"layer {s['layer']} ({s['activation']}): gradient RMS {s['grad_rms']:.2e} "
                    f"is {s['grad_rms'] / last:.1e} of the output layer's; the gradients vanish "
                    "toward the input and this layer barely learns; remedy: ReLU instead of "
                    "sigmoid/tanh, He (ReLU) or Xavier (sigmoid/tanh) initialisation"))  # fmt: skip
        for s in layers:
            dead = s["dead_fraction"]
            if dead is not None and dead >= DEAD_FRACTION:
                found.append((DeadUnitsWarning, "dead", s["layer"],
                    f"layer {s['layer']} ({s['activation']}): {dead:.0%} of the units were never "
                    "active this epoch (dead ReLU units do not learn); remedy: lower the "
                    "learning rate, He initialisation, or leaky_relu"))  # fmt: skip
        for category, kind, i, message in found:
            if self.warn and (kind, i) not in self._warned:
                self._warned.add((kind, i))
                warnings.warn(message, category, stacklevel=5)  # the caller of model.fit
        return [(category, message) for category, _, _, message in found]


def format_epoch(record: dict[str, Any]) -> str:
    """A small table of one epoch's diagnostics (one row per layer), for printing.

    Parameters
    ----------
    record : dict
        One entry of ``History.diagnostics``.

    Returns
    -------
    str
    """
    head = f"{'layer':<18}{'grad norm':>11}{'grad rms':>11}{'weight norm':>13}" \
           f"{'update/weight':>15}{'dead':>7}"  # fmt: skip
    rows = [head]
    for s in record["layers"]:
        ratio = "-" if s["update_ratio"] is None else f"{s['update_ratio']:.2e}"
        dead = "-" if s["dead_fraction"] is None else f"{s['dead_fraction']:.0%}"
        name = f"{s['layer']}: {s['activation']}"
        rows.append(f"{name:<18}{s['grad_norm']:>11.2e}{s['grad_rms']:>11.2e}"
                    f"{s['weight_norm']:>13.3g}{ratio:>15}{dead:>7}")  # fmt: skip
    rows += [f"warning: {m}" for m in record["warnings"]]
    return "\n".join(rows)
