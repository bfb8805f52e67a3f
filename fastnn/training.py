"""``fit``: validate once, allocate once, then one backend call per epoch.

Data flow (DESIGN.md): validate and convert the inputs once → build one ``Workspace`` (every
buffer) → for each epoch draw a permutation and run the backend's fused ``train_epoch`` (or the
per-batch eager loop when something must run between batches: diagnostics, gradient clipping)
→ record metrics in ``History`` → callbacks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np

from ._validation import check_positive, check_X
from .backends import _eager, resolve_backend
from .backends._workspace import Workspace
from .callbacks import Callback, ProgressBar
from .errors import TrainingDivergedError
from .history import History
from .losses import Loss, get_loss
from .model import Sequential, accuracy
from .optimizers import Optimizer, get_optimizer

PROGRESS_SLICES = 20  # progress updates per epoch when a callback asks for them


def fit(
    model: Sequential,
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
) -> History:
    """Train ``model`` on ``(X, y)`` by gradient descent with backpropagation.

    Parameters
    ----------
    X : ndarray, shape (n_samples, n_features)
        Converted once to the model dtype (C-contiguous); NaN/inf are rejected.
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

    Returns
    -------
    History

    Raises
    ------
    TrainingDivergedError
        The loss became NaN or infinite; the model keeps the weights of the last good epoch.
    """
    X = check_X(X, model.n_features, model.dtype)
    n = X.shape[0]
    y_arr = np.asarray(y)
    if y_arr.ndim == 0 or len(y_arr) != n:
        raise ValueError(f"X has {n} samples but y has {y_arr.shape[0] if y_arr.ndim else 0}")
    epochs = check_positive("epochs", epochs, integer=True, allow_zero=True)
    batch_size = n if batch_size is None else min(check_positive("batch_size", batch_size, True), n)
    if clip_grad_norm is not None:
        clip_grad_norm = check_positive("clip_grad_norm", clip_grad_norm)
    loss_obj = get_loss(loss)
    last = model.layers[-1].activation
    if not (loss_obj.accepts_any_activation or last in loss_obj.fused_activations + ("identity",)):
        raise ValueError(
            f"loss {loss_obj.name!r} works on logits: give the last layer activation=None "
            f"(or {' / '.join(loss_obj.fused_activations)}), not {last!r}"
        )
    targets = loss_obj.prepare_targets(y_arr, model.n_outputs, model.dtype)
    val = None
    if validation_data is not None:
        Xv, yv = validation_data
        val = (check_X(Xv, model.n_features, model.dtype, "X_val"), yv)
    opt = get_optimizer(optimizer)
    model.loss, model.optimizer = loss_obj, opt
    model._mse_labels = loss_obj.name == "mse" and y_arr.ndim == 1 and model.n_outputs > 1
    B = resolve_backend(backend)
    model.backend = backend

    acts = [layer.act_code for layer in model.layers]
    acts[-1] = model._loss_input_act(loss_obj)  # a fused softmax/sigmoid: the loss applies it
    ws = Workspace(
        [layer.W for layer in model.layers], [layer.b for layer in model.layers], acts,
        [layer.negative_slope for layer in model.layers], loss_obj.code(targets), opt.code,
        opt.hyper(), batch_size, step=opt.step,
    )  # fmt: skip
    if opt.state is not None:
        try:
            ws.load_state(opt.state)
        except ValueError:  # a new architecture: start the optimizer afresh
            ws.step = 0

    history = History(batch_size=batch_size, n_samples=n)
    callbacks = list(callbacks or [])
    if verbose and not any(isinstance(cb, ProgressBar) for cb in callbacks):
        callbacks.append(ProgressBar())
    params = {"epochs": epochs, "batch_size": batch_size, "n_samples": n,
              "iterations_per_epoch": history.iterations_per_epoch}  # fmt: skip
    for cb in callbacks:
        cb.set_context(model, history, params)
        cb.on_train_begin()

    recorder = None
    if diagnostics:
        from .diagnostics import DiagnosticsRecorder

        recorder = DiagnosticsRecorder(model, ws)
    hook = _between_batches(ws, clip_grad_norm, recorder)
    rng = np.random.default_rng(seed) if seed is not None else model._rng
    n_batches = history.iterations_per_epoch
    slices = PROGRESS_SLICES if any(cb.wants_progress for cb in callbacks) else 1
    per_slice = max(1, math.ceil(n_batches / slices)) * batch_size
    batch_losses = np.empty(n_batches)
    sizes = np.full(n_batches, batch_size, dtype=np.float64)
    sizes[-1] = n - batch_size * (n_batches - 1)
    model.stop_training = False

    for epoch in range(epochs):
        for cb in callbacks:
            cb.on_epoch_begin(epoch)
        ws.hyper[:] = opt.hyper()  # a schedule may have changed the learning rate
        order = rng.permutation(n) if shuffle else np.arange(n)
        order = order.astype(np.int64, copy=False)
        snapshot = [a.copy() for a in (*model.parameters(), *ws.state_arrays())]
        step_before = ws.step
        t0 = time.perf_counter()
        done = 0
        correct = 0
        running_eval = 0.0  # seconds spent on the progress bar's running accuracy
        for start in range(0, n, per_slice):
            chunk = order[start : start + per_slice]
            first = start // batch_size
            out = batch_losses[first : first + -(-chunk.shape[0] // batch_size)]
            # Overflow is detected from the loss and reported as TrainingDivergedError.
            with np.errstate(over="ignore", invalid="ignore"):
                if hook is None:
                    k = B.train_epoch(ws, X, targets, chunk, batch_size, out)
                else:
                    k = _eager.eager_epoch(B, ws, X, targets, chunk, batch_size, out, hook)
            done = first + k
            if k < out.shape[0] or not math.isfinite(out[k - 1]):
                break
            seen = int(sizes[:done].sum())
            mean = float(batch_losses[:done] @ sizes[:done] / seen)
            running = None
            if slices > 1 and track_accuracy and model.is_classifier():
                # The fused epoch keeps no predictions: score this slice's samples with the
                # weights after its last update (timed apart, not counted in the epoch).
                t_eval = time.perf_counter()
                score = _accuracy(model, X[chunk], targets[chunk], loss_obj, B)
                correct += round(score * len(chunk))
                running = correct / seen
                running_eval += time.perf_counter() - t_eval
            for cb in callbacks:
                cb.on_progress(epoch, done, seen, mean, running)
        seconds = time.perf_counter() - t0 - running_eval
        history.iterations += done
        if done == n_batches and not all(np.isfinite(p).all() for p in model.parameters()):
            # Every loss was finite but the last update overflowed the weights (float32 tops
            # out at 3.4e38); the next batch would see NaN, so that update is the culprit.
            batch_losses[done - 1] = np.inf
        if done < n_batches or not np.isfinite(batch_losses[:done]).all():
            bad = int(np.argmin(np.isfinite(batch_losses[:done])))
            for dst, src in zip((*model.parameters(), *ws.state_arrays()), snapshot, strict=True):
                dst[...] = src
            ws.step = step_before
            _keep_state(opt, ws)
            raise TrainingDivergedError(epoch + 1, bad + 1, float(batch_losses[bad]))

        history.epochs += 1
        history.seconds.append(seconds)
        history.lr.append(opt.lr)
        history.loss.append(float(batch_losses @ sizes / n))
        logs = {"loss": history.loss[-1]}
        t1 = time.perf_counter()
        if track_accuracy and model.is_classifier():
            logs["accuracy"] = _accuracy(model, X, targets, loss_obj, B)
            history.accuracy.append(logs["accuracy"])
        if val is not None:
            scores = model.evaluate(val[0], val[1], loss_obj)
            history.val_loss.append(scores["loss"])
            logs["val_loss"] = scores["loss"]
            if "accuracy" in scores:
                history.val_accuracy.append(scores["accuracy"])
                logs["val_accuracy"] = scores["accuracy"]
        history.eval_seconds.append(time.perf_counter() - t1 + running_eval)
        if recorder is not None:
            history.diagnostics.append(recorder.end_epoch(epoch))
        logs["seconds"] = seconds
        _keep_state(opt, ws)  # a checkpoint saved by a callback then holds the live state
        for cb in callbacks:
            cb.on_epoch_end(epoch, logs)
        if model.stop_training:
            break

    _keep_state(opt, ws)
    for cb in callbacks:
        cb.on_train_end()
    return history


def _keep_state(opt: Optimizer, ws: Workspace) -> None:
    """Hand the optimizer state back to the optimizer, so the next fit resumes it."""
    opt.state = ws.state_arrays()
    opt.step = ws.step


def _accuracy(model: Sequential, X: np.ndarray, targets: np.ndarray, loss: Loss, B) -> float:  # noqa: ANN001
    return accuracy(model._loss_outputs(X, loss, B.NAME), targets, loss)


def _between_batches(ws: Workspace, clip: float | None, recorder) -> object:  # noqa: ANN001
    """The hook the eager loop runs between backward and update, or None for the fused path."""
    if clip is None and recorder is None:
        return None
    grads = [*ws.dW, *ws.db]

    def hook(batch: int, rows: int) -> None:
        if clip is not None:
            norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
            if norm > clip:
                scale = grads[0].dtype.type(clip / (norm + 1e-12))
                for g in grads:
                    g *= scale
        if recorder is not None:
            recorder.after_backward(batch, rows)

    return hook
