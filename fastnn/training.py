"""``fit``: validate once, allocate once, then one backend call per epoch (or per slice).

Data flow (DESIGN.md), one named piece each, top-down:

1. :func:`_prepare` validates the inputs (without converting X: :mod:`fastnn._feed` casts it
   part by part when it is not already C-contiguous in the model dtype), resolves the backend
   once and builds one ``Workspace`` (every buffer of the fit);
2. per epoch, :func:`_run_epoch` draws a permutation and runs the backend's fused ``train_epoch``
   (or the per-batch loop of :mod:`fastnn.backends.eager` when something must run between
   batches — diagnostics, gradient clipping — or a layer kind has no fused epoch), in slices
   when a progress bar wants updates, each slice in parts of the input buffer;
3. :func:`_roll_back_if_diverged` restores the last finite weights when a loss was not finite;
4. :func:`_record_epoch` records metrics and validation scores in ``History`` and calls back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from . import denormals
from ._batch_hook import between_batches
from ._feed import Feed
from ._validation import (
    check_bool,
    check_input_scale,
    check_positive,
    check_seed,
    check_X_in_place,
)
from .backends import eager, resolve_backend
from .backends.workspace import Workspace
from .callbacks import Callback, ProgressBar
from .errors import TrainingDivergedError
from .history import History
from .losses import Loss, get_loss
from .optimizers import Optimizer, get_optimizer

PROGRESS_SLICES = 20  # progress updates per epoch when a callback asks for them


@dataclass
class _Run:
    """Everything one ``fit`` holds between epochs."""

    model: Any
    B: ModuleType
    ws: Workspace
    X: np.ndarray
    targets: np.ndarray
    feed: Feed
    scale: float | None
    loss: Loss
    opt: Optimizer
    history: History
    callbacks: list[Callback]
    batch_size: int
    shuffle: bool
    rng: np.random.Generator
    clip: float | None
    recorder: Any
    track_accuracy: bool
    val: tuple[np.ndarray, object] | None
    hook: Callable[[int, int], None] | None = None
    slices: int = 1
    sizes: np.ndarray = field(default_factory=lambda: np.empty(0))
    batch_losses: np.ndarray = field(default_factory=lambda: np.empty(0))

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def fused(self) -> bool:
        """The backend's fused epoch runs this fit (no hook, every layer kind supported)."""
        kinds = getattr(self.B, "FUSED_LAYERS", frozenset())
        return self.hook is None and all(layer.kind in kinds for layer in self.model.layers)

    def scores_accuracy(self) -> bool:
        return self.track_accuracy and self.model.is_classifier()


def fit(
    model: Any,
    X: np.ndarray,
    y: object,
    *,
    loss: str | Loss = "cross_entropy",
    optimizer: str | Optimizer | None = None,
    batch_size: int | None = 32,
    epochs: int = 1,
    shuffle: bool = True,
    seed: int | None = None,
    validation_data: tuple[np.ndarray, object] | None = None,
    backend: str | None = None,
    verbose: int = 0,
    callbacks: Sequence[Callback] | None = None,
    diagnostics: bool = False,
    clip_grad_norm: float | None = None,
    track_accuracy: bool = True,
    input_scale: float | None = None,
) -> History:
    """Train ``model`` (a built :class:`fastnn.Sequential`) on ``(X, y)`` by gradient descent.

    Parameters
    ----------
    X : ndarray, shape (n_samples, *input_shape)
        Any real dtype (float32, float64, uint8 images, ...) and layout, or a
        ``numpy.memmap``. It is never copied whole: an array already C-contiguous in the model
        dtype is read as it is, any other is cast part by part into one buffer of about 5% of
        its size. NaN/inf (and values beyond the model dtype's range) are rejected.
    y : array-like
        Class labels (n_samples,) for cross-entropy (or one-hot/probabilities (n_samples, k));
        targets (n_samples, k) for mse, binary_cross_entropy and kl_divergence.
    loss : {"cross_entropy", "mse", "binary_cross_entropy", "kl_divergence"} or Loss
    optimizer : {"sgd", "momentum", "adam"}, Optimizer or None
        ``None`` is ``SGD(lr=0.01)``. Its state persists across ``fit`` calls.
    batch_size : int or None, default 32
        1: stochastic gradient descent; None (or >= n_samples): full-batch gradient descent;
        otherwise mini-batch. ``iterations per epoch = ceil(n_samples / batch_size)``.
    epochs : int, default 1
        Passes over the data (0 allowed: nothing is trained).
    shuffle : bool, default True
        Visit the samples in a new random order each epoch (an index permutation; the data
        is never copied).
    seed : int, optional
        Seed of the shuffling; default: the model's own generator (seeded by ``Sequential``).
    validation_data : (X_val, y_val), optional
        Evaluated after every epoch into ``val_loss`` / ``val_accuracy``.
    backend : {"auto", "numpy", "numba", "cython"}, optional
        Default: ``fastnn.set_backend`` / ``$FASTNN_BACKEND`` / "auto".
    verbose : int, default 0
        1 shows a progress bar per epoch and a summary line.
    callbacks : list of Callback, optional
    diagnostics : bool, default False
        Record per-layer gradient norms, weight norms, update ratios and dead ReLU fractions
        each epoch, and warn about vanishing/exploding gradients (runs the per-batch loop).
    clip_grad_norm : float, optional
        Rescale the gradient of every batch so its global L2 norm is at most this value.
    track_accuracy : bool, default True
        Measure training-set accuracy after each epoch (classifiers; costs one forward pass).
    input_scale : float, optional
        Multiply every input by this factor as it is cast to the model dtype (in float64),
        also for ``validation_data``: ``input_scale=1/255`` trains on uint8 pixels
        (``load_mnist(dtype="uint8", normalize=False)``, a quarter of float32's memory) as on
        ``load_mnist()``'s floats in [0, 1]. It is not stored in the model or its file: give
        ``predict``, ``predict_proba`` and ``evaluate`` the same ``input_scale``.

    Returns
    -------
    History

    Raises
    ------
    TrainingDivergedError
        The loss became NaN or infinite; the model keeps the weights of the last good epoch.
    """
    epochs = check_positive("epochs", epochs, integer=True, allow_zero=True)
    check_bool("diagnostics", diagnostics)
    if seed is not None:
        check_seed("seed", seed)
    if validation_data is not None and (
        not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2
    ):
        raise ValueError(
            "validation_data must be a pair (X_val, y_val), got "
            f"{type(validation_data).__name__}"
        )
    for cb in callbacks or []:
        # A Callback, or any object with its hooks (duck typing, as fit calls nothing else).
        if not isinstance(cb, Callback) and not callable(getattr(cb, "set_context", None)):
            raise TypeError(
                f"callbacks must be fastnn.Callback instances, got {type(cb).__name__}"
            )
    run = _prepare(
        model, X, y, loss=loss, optimizer=optimizer, batch_size=batch_size,
        shuffle=check_bool("shuffle", shuffle), seed=seed, validation_data=validation_data,
        backend=backend, diagnostics=diagnostics, clip_grad_norm=clip_grad_norm,
        track_accuracy=check_bool("track_accuracy", track_accuracy),
        input_scale=check_input_scale(input_scale),
    )  # fmt: skip
    _begin(run, epochs, verbose, callbacks)
    try:
        for epoch in range(epochs):
            for cb in run.callbacks:
                cb.on_epoch_begin(epoch)
            run.ws.hyper[:] = run.opt.hyper()  # a schedule may have changed the learning rate
            snapshot = [a.copy() for a in (*model.parameters(), *run.ws.state_arrays())]
            step_before = run.ws.step
            with denormals.training_mode():  # subnormals flushed: fastnn.denormals
                done, seconds, eval_seconds = _run_epoch(run, epoch)
            _roll_back_if_diverged(run, epoch, done, snapshot, step_before)
            _record_epoch(run, epoch, seconds, eval_seconds)
            if model.stop_training:
                break
    finally:
        # Also after an interrupt: the optimizer holds the state of the updates made, so a
        # later fit (or a save) resumes exactly where this one stopped.
        _keep_state(run.opt, run.ws)
    for cb in run.callbacks:
        cb.on_train_end()
    return run.history


def _prepare(model: Any, X: np.ndarray, y: object, **options: Any) -> _Run:
    """Validate the inputs once (X is not converted); resolve the backend; build the workspace."""
    scale = options["input_scale"]
    X = check_X_in_place(X, model.input_shape, model.dtype, scale=scale)
    n = X.shape[0]
    y_arr = np.asarray(y)
    if y_arr.ndim == 0 or len(y_arr) != n:
        raise ValueError(f"X has {n} samples but y has {y_arr.shape[0] if y_arr.ndim else 0}")
    batch_size = options["batch_size"]
    batch_size = n if batch_size is None else min(check_positive("batch_size", batch_size, True), n)
    clip = options["clip_grad_norm"]
    if clip is not None:
        clip = check_positive("clip_grad_norm", clip)
    loss_obj = get_loss(options["loss"])
    last = model.layers[-1].activation if hasattr(model.layers[-1], "activation") else "identity"
    if not (loss_obj.accepts_any_activation or last in loss_obj.fused_activations + ("identity",)):
        raise ValueError(
            f"loss {loss_obj.name!r} works on logits: give the last layer activation=None "
            f"(or {' / '.join(loss_obj.fused_activations)}), not {last!r}"
        )
    targets = loss_obj.prepare_targets(y_arr, model.n_outputs, model.dtype)
    val = options["validation_data"]
    if val is not None:
        val = (check_X_in_place(val[0], model.input_shape, model.dtype, "X_val", scale), val[1])
    opt = get_optimizer(options["optimizer"])
    model.loss, model.optimizer = loss_obj, opt
    model._mse_labels = loss_obj.name == "mse" and y_arr.ndim == 1 and model.n_outputs > 1
    model.backend = options["backend"]
    ws = _workspace(model, loss_obj, loss_obj.code(targets), opt, batch_size)
    recorder = None
    if options["diagnostics"]:
        from .diagnostics import DiagnosticsRecorder

        recorder = DiagnosticsRecorder(model, ws)
    seed = options["seed"]
    return _Run(
        model=model, B=resolve_backend(options["backend"]), ws=ws, X=X, targets=targets,
        feed=Feed(X, targets, model.dtype, scale, batch_size), scale=scale, loss=loss_obj,
        opt=opt, history=History(batch_size=batch_size, n_samples=n),
        callbacks=[], batch_size=batch_size, shuffle=options["shuffle"],
        rng=np.random.default_rng(seed) if seed is not None else model._rng,
        clip=clip, recorder=recorder,
        track_accuracy=options["track_accuracy"], val=val,
    )  # fmt: skip


def _workspace(
    model: Any, loss: Loss, loss_code: int, opt: Optimizer, batch_size: int
) -> Workspace:
    """One workspace for the fit, resuming the optimizer's state when it fits this model."""
    acts = [layer.act_code for layer in model.layers]
    acts[-1] = model._loss_input_act(loss)  # a fused softmax/sigmoid: the loss applies it
    ws = Workspace(model.layers, acts, loss_code, opt.code, opt.hyper(), batch_size,
                   model.dtype, step=opt.step)  # fmt: skip
    if opt.state is not None:
        try:
            ws.load_state(opt.state)
        except ValueError:  # a new architecture: start the optimizer afresh
            ws.step = 0
    return ws


def _begin(run: _Run, epochs: int, verbose: int, callbacks: Sequence[Callback] | None) -> None:
    """Set up callbacks, the progress slicing and the per-batch bookkeeping."""
    run.callbacks = list(callbacks or [])
    if verbose and not any(isinstance(cb, ProgressBar) for cb in run.callbacks):
        run.callbacks.append(ProgressBar())
    n_batches = run.history.iterations_per_epoch
    params = {"epochs": epochs, "batch_size": run.batch_size, "n_samples": run.n,
              "iterations_per_epoch": n_batches}  # fmt: skip
    for cb in run.callbacks:
        cb.set_context(run.model, run.history, params)
        cb.on_train_begin()
    per_step = [cb for cb in run.callbacks if getattr(cb, "per_iteration", False)]
    run.hook = between_batches(run.ws, run.clip, run.recorder, per_step, run.opt)
    run.slices = PROGRESS_SLICES if any(cb.wants_progress for cb in run.callbacks) else 1
    run.batch_losses = np.empty(n_batches)
    run.sizes = np.full(n_batches, run.batch_size, dtype=np.float64)
    run.sizes[-1] = run.n - run.batch_size * (n_batches - 1)
    run.model.stop_training = False


def _run_epoch(run: _Run, epoch: int) -> tuple[int, float, float]:
    """Train one epoch in slices; returns (batches done, epoch seconds, seconds spent scoring
    the progress bar's running accuracy, which the epoch time excludes)."""
    order = run.rng.permutation(run.n) if run.shuffle else np.arange(run.n)
    order = order.astype(np.int64, copy=False)  # int64 already on most platforms: no copy
    n_batches, bs = run.batch_losses.shape[0], run.batch_size
    per_slice = max(1, math.ceil(n_batches / run.slices)) * bs
    t0 = time.perf_counter()
    done, correct, running_eval = 0, 0, 0.0
    for start in range(0, run.n, per_slice):
        chunk = order[start : start + per_slice]
        first = start // bs
        k = _train_slice(run, chunk, first)
        done = first + k
        if k < -(-chunk.shape[0] // bs) or not math.isfinite(run.batch_losses[done - 1]):
            break
        seen = int(run.sizes[:done].sum())
        mean = float(run.batch_losses[:done] @ run.sizes[:done] / seen)
        running = None
        if run.slices > 1 and run.scores_accuracy():
            # The fused epoch keeps no predictions: score this slice's samples with the
            # weights after its last update (timed apart, not counted in the epoch).
            t_eval = time.perf_counter()
            correct += round(_accuracy(run, chunk) * len(chunk))
            running = correct / seen
            running_eval += time.perf_counter() - t_eval
        for cb in run.callbacks:
            cb.on_progress(epoch, done, seen, mean, running)
    return done, time.perf_counter() - t0 - running_eval, running_eval


def _train_slice(run: _Run, chunk: np.ndarray, first: int) -> int:
    """Train the batches of ``chunk`` (the epoch's order from batch ``first`` on, cut at a
    multiple of the batch size) part by part of the input feed; returns the batches done."""
    bs, done, fused = run.batch_size, 0, run.fused
    for X, targets, order in run.feed.parts(chunk):
        out = run.batch_losses[first + done : first + done + -(-order.shape[0] // bs)]
        # Overflow is detected from the loss and reported as TrainingDivergedError.
        with np.errstate(over="ignore", invalid="ignore"):
            if fused:
                k = run.B.train_epoch(run.ws, X, targets, order, bs, out)
            else:
                k = eager.eager_epoch(run.B, run.ws, X, targets, order, bs, out, run.hook,
                                     fuse=run.recorder is None)  # it reads layer outputs
        done += k
        if k < out.shape[0] or not math.isfinite(out[k - 1]):
            break
    return done


def _roll_back_if_diverged(
    run: _Run, epoch: int, done: int, snapshot: list[np.ndarray], step_before: int
) -> None:
    """Raise TrainingDivergedError, with the weights of the epoch's start restored, when a
    loss (or the last update) was not finite."""
    losses, n_batches = run.batch_losses, run.batch_losses.shape[0]
    run.history.iterations += done
    if done == n_batches and not all(np.isfinite(p).all() for p in run.model.parameters()):
        # Every loss was finite but the last update overflowed the weights (float32 tops
        # out at 3.4e38); the next batch would see NaN, so that update is the culprit.
        losses[done - 1] = np.inf
    if done == n_batches and np.isfinite(losses[:done]).all():
        return
    bad = int(np.argmin(np.isfinite(losses[:done])))
    for dst, src in zip((*run.model.parameters(), *run.ws.state_arrays()), snapshot, strict=True):
        dst[...] = src
    run.ws.step = step_before
    _keep_state(run.opt, run.ws)
    raise TrainingDivergedError(epoch + 1, bad + 1, float(losses[bad]))


def _record_epoch(run: _Run, epoch: int, seconds: float, running_eval: float) -> None:
    """History, training accuracy, validation scores, diagnostics; then the callbacks."""
    h = run.history
    h.epochs += 1
    h.seconds.append(seconds)
    h.lr.append(run.opt.lr)
    h.loss.append(float(run.batch_losses @ run.sizes / run.n))
    logs = {"loss": h.loss[-1]}
    t1 = time.perf_counter()
    if run.scores_accuracy():
        logs["accuracy"] = _accuracy(run)
        h.accuracy.append(logs["accuracy"])
    if run.val is not None:
        scores = run.model.evaluate(run.val[0], run.val[1], run.loss, input_scale=run.scale)
        h.val_loss.append(scores["loss"])
        logs["val_loss"] = scores["loss"]
        if "accuracy" in scores:
            h.val_accuracy.append(scores["accuracy"])
            logs["val_accuracy"] = scores["accuracy"]
    h.eval_seconds.append(time.perf_counter() - t1 + running_eval)
    if run.recorder is not None:
        h.diagnostics.append(run.recorder.end_epoch(epoch))
    logs["seconds"] = seconds
    _keep_state(run.opt, run.ws)  # a checkpoint saved by a callback then holds the live state
    for cb in run.callbacks:
        cb.on_epoch_end(epoch, logs)


def _keep_state(opt: Optimizer, ws: Workspace) -> None:
    """Hand the optimizer state back to the optimizer, so the next fit resumes it."""
    opt.state = ws.state_arrays()
    opt.step = ws.step


def _accuracy(run: _Run, rows: np.ndarray | None = None) -> float:
    """Accuracy of the current weights on the training rows ``rows`` (default: all), on the
    fit's backend, scored chunk by chunk (no (n, k) array of outputs; the feed's buffer is
    reused for the cast)."""
    model, n = run.model, run.n if rows is None else rows.shape[0]
    buffer = None if run.feed.direct else run.feed.x_buffer
    chunks = model._forward_chunks(run.B, run.X, model._loss_input_act(run.loss), rows=rows,
                                   scale=run.scale, buffer=buffer)  # fmt: skip
    correct = 0
    for sel, outputs in chunks:
        correct += round(model.score_outputs(outputs, run.targets[sel], run.loss) * len(outputs))
    return correct / n
