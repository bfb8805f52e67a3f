"""Cost functions: how far the network's outputs are from the targets.

Each loss works on the raw outputs of the last layer. Where a softmax or sigmoid belongs to the
loss (cross-entropy, KL divergence, binary cross-entropy), it is fused into the loss: one stable
pass computes the loss and its gradient (softmax(o) - target) / n, never a softmax followed by a
log. ``Sequential.fit`` does this even when the last layer is declared with
``activation="softmax"`` (or ``"sigmoid"``), so there is never a double softmax.
"""

from __future__ import annotations

import numpy as np

from . import _codes as C
from .backends import resolve_backend


class Loss:
    """A cost function with ``forward(outputs, targets) -> float`` and ``backward()``.

    ``forward`` returns the mean over the batch and keeps the gradient for ``backward``.
    """

    name = "loss"
    #: activations of the last layer that this loss absorbs (trained as identity).
    fused_activations: tuple[str, ...] = ()
    #: activations of the last layer this loss accepts without absorbing them.
    accepts_any_activation = False

    def __init__(self, from_logits: bool = True) -> None:
        self.from_logits = from_logits
        self._grad: np.ndarray | None = None

    # -- used by fit -----------------------------------------------------------------------
    def code(self, targets: np.ndarray) -> int:
        """Loss kernel code for targets prepared by :meth:`prepare_targets`."""
        raise NotImplementedError

    def prepare_targets(self, y: object, n_outputs: int, dtype: np.dtype) -> np.ndarray:
        """Validate ``y`` and convert it to what the kernel takes: int64 (n,) or float (n, k)."""
        raise NotImplementedError

    # -- the object API ----------------------------------------------------------------------
    def forward(self, outputs: np.ndarray, targets: object) -> float:
        """Loss of ``outputs`` (n, k) against ``targets``; mean over the batch.

        Parameters
        ----------
        outputs : ndarray, shape (n, k)
            Raw outputs of the last layer (logits when ``from_logits``).
        targets : array-like
            Class labels (n,) or target values (n, k), as the loss takes them.
        """
        outputs = np.ascontiguousarray(outputs)
        if outputs.dtype not in (np.float32, np.float64):
            outputs = outputs.astype(np.float64)
        if outputs.ndim != 2:
            raise ValueError(f"outputs must be 2-D (n, k), got shape {outputs.shape}")
        t = self.prepare_targets(targets, outputs.shape[1], outputs.dtype)
        if len(t) != len(outputs):
            raise ValueError(f"{len(t)} targets for {len(outputs)} outputs")
        if not self.from_logits:
            # Probabilities in: their log is a logit vector with the same softmax.
            outputs = np.log(np.clip(outputs, np.finfo(outputs.dtype).tiny, None))
        grad = np.empty_like(outputs)
        kernel = getattr(resolve_backend(), C.LOSS_KERNEL_NAMES[self.code(t)])
        loss = kernel(outputs, t, grad)
        if not self.from_logits:
            # Chain rule through o = log(p): dL/dp = dL/do / p.
            grad /= np.exp(outputs)
        self._grad = grad
        return loss

    def backward(self) -> np.ndarray:
        """Gradient of the last ``forward`` with respect to its outputs, shape (n, k)."""
        if self._grad is None:
            raise RuntimeError("backward called before forward")
        return self._grad

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _column_of_labels(y: np.ndarray, n_outputs: int, name: str) -> None:
    """Refuse a column (n, 1) where 1-D class labels (n,) are meant, saying so."""
    if y.ndim == 2 and y.shape[1] == 1 and n_outputs > 1:
        raise ValueError(
            f"{name} class labels must be 1-D with shape (n,), got shape {y.shape}; "
            f"pass y.ravel() (or targets of shape (n, {n_outputs}))"
        )


def _float_targets(y: object, n_outputs: int, dtype: np.dtype, name: str) -> np.ndarray:
    t = np.asarray(y)
    if t.dtype.kind not in "biuf":
        raise TypeError(f"{name} targets must be numbers, got dtype {t.dtype}")
    if t.ndim == 1 and n_outputs == 1:
        t = t[:, None]
    _column_of_labels(t, n_outputs, name)
    if t.ndim != 2 or t.shape[1] != n_outputs:
        raise ValueError(f"{name} targets must have shape (n, {n_outputs}), got {t.shape}")
    t = np.ascontiguousarray(t, dtype=dtype)
    if not np.isfinite(t).all():
        raise ValueError(f"{name} targets contain NaN or infinite values")
    return t


def _labels(y: np.ndarray, n_classes: int, name: str) -> np.ndarray:
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise ValueError(f"{name} labels contain NaN or infinite values")
        if not np.all(y == np.round(y)):
            raise ValueError(f"{name} labels must be integers 0..{n_classes - 1}, got non-integers")
    elif y.dtype.kind not in "biu":
        raise TypeError(f"{name} labels must be integers, got dtype {y.dtype}")
    labels = y.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"{name} labels must lie in 0..{n_classes - 1} (the last layer has {n_classes} "
            f"outputs), got values from {labels.min()} to {labels.max()}"
        )
    return np.ascontiguousarray(labels)


def _distributions(y: object, n_outputs: int, dtype: np.dtype, name: str) -> np.ndarray:
    t = _float_targets(y, n_outputs, dtype, name)
    if (t < 0).any() or not np.allclose(t.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError(f"{name} targets must be rows of probabilities (>= 0, summing to 1)")
    return t


def _one_hot(labels: np.ndarray, n_classes: int, dtype: np.dtype) -> np.ndarray:
    out = np.zeros((labels.shape[0], n_classes), dtype=dtype)
    out[np.arange(labels.shape[0]), labels] = 1
    return out


class MeanSquaredError(Loss):
    """L = mean over all n*k elements of (output - target)^2.

    Integer class labels (n,) are one-hot encoded when the last layer has k > 1 outputs.
    """

    name = "mse"
    accepts_any_activation = True

    def code(self, targets: np.ndarray) -> int:
        return C.LOSS_MSE

    def prepare_targets(self, y: object, n_outputs: int, dtype: np.dtype) -> np.ndarray:
        arr = np.asarray(y)
        if arr.ndim == 1 and n_outputs > 1:
            return _one_hot(_labels(arr, n_outputs, "mse"), n_outputs, dtype)
        return _float_targets(arr, n_outputs, dtype, "mse")


class CrossEntropy(Loss):
    """Softmax cross-entropy on logits: L = mean_i [logsumexp(o_i) - o_i[y_i]].

    Targets are class labels (n,) in 0..k-1, or rows of probabilities (n, k).
    """

    name = "cross_entropy"
    fused_activations = ("softmax",)

    def code(self, targets: np.ndarray) -> int:
        return C.LOSS_CROSS_ENTROPY if targets.ndim == 1 else C.LOSS_CROSS_ENTROPY_SOFT

    def prepare_targets(self, y: object, n_outputs: int, dtype: np.dtype) -> np.ndarray:
        arr = np.asarray(y)
        if n_outputs < 2:
            raise ValueError(
                "cross_entropy needs a last layer with >= 2 outputs (one per class); "
                "for one output use binary_cross_entropy"
            )
        if arr.ndim == 1:
            return _labels(arr, n_outputs, "cross_entropy")
        return _distributions(arr, n_outputs, dtype, "cross_entropy")


class BinaryCrossEntropy(Loss):
    """Sigmoid cross-entropy on logits, per output: L = mean of softplus(o) - t o.

    Targets in [0, 1], shape (n,) for one output or (n, k) for k independent labels.
    """

    name = "binary_cross_entropy"
    fused_activations = ("sigmoid",)

    def code(self, targets: np.ndarray) -> int:
        return C.LOSS_BINARY_CROSS_ENTROPY

    def prepare_targets(self, y: object, n_outputs: int, dtype: np.dtype) -> np.ndarray:
        t = _float_targets(y, n_outputs, dtype, "binary_cross_entropy")
        if (t < 0).any() or (t > 1).any():
            raise ValueError("binary_cross_entropy targets must lie in [0, 1]")
        return t


class KLDivergence(Loss):
    """Kullback-Leibler divergence KL(target || softmax(outputs)), mean over the batch.

    Targets are rows of probabilities (n, k); class labels (n,) are one-hot encoded (then it
    equals cross-entropy).
    """

    name = "kl_divergence"
    fused_activations = ("softmax",)

    def code(self, targets: np.ndarray) -> int:
        return C.LOSS_KL_DIVERGENCE

    def prepare_targets(self, y: object, n_outputs: int, dtype: np.dtype) -> np.ndarray:
        arr = np.asarray(y)
        if arr.ndim == 1:
            return _one_hot(_labels(arr, n_outputs, "kl_divergence"), n_outputs, dtype)
        return _distributions(arr, n_outputs, dtype, "kl_divergence")


LOSSES: dict[str, type[Loss]] = {
    "mse": MeanSquaredError,
    "cross_entropy": CrossEntropy,
    "binary_cross_entropy": BinaryCrossEntropy,
    "kl_divergence": KLDivergence,
}


def get_loss(loss: str | Loss) -> Loss:
    """A loss object from a name (see ``LOSSES``) or an instance."""
    if isinstance(loss, Loss):
        return loss
    if not isinstance(loss, str) or loss.lower() not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; valid names: {', '.join(sorted(LOSSES))}")
    return LOSSES[loss.lower()]()
