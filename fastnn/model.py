"""``Sequential``: a stack of dense layers — the multilayer perceptron."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import _codes as C
from ._validation import check_dtype, check_X
from .backends import resolve_backend
from .history import History
from .layers import Dense
from .losses import Loss, get_loss
from .optimizers import Optimizer

PREDICT_CHUNK = 4096  # rows per forward pass in predict: bounded memory, BLAS-sized work


class Sequential:
    """A feed-forward network: each layer's output is the next layer's input.

    Parameters
    ----------
    layers : sequence of Dense
        At least one layer; ``layers[i].out_features`` must equal ``layers[i+1].in_features``.
        Any number of hidden layers (zero hidden layers is a single-layer network).
    seed : int, optional
        Seed of the weight initialisation (and the default shuffling seed of ``fit``).
    dtype : {"float32", "float64"}, default "float32"
        Dtype of parameters and computation; inputs are converted once per ``fit``.

    Examples
    --------
    >>> import fastnn
    >>> model = fastnn.Sequential([fastnn.Dense(784, 128, "relu"), fastnn.Dense(128, 10)], seed=0)
    >>> model.parameters()[0].shape
    (784, 128)
    """

    def __init__(
        self, layers: Sequence[Dense], seed: int | None = None, dtype: str = "float32"
    ) -> None:
        layers = list(layers)
        if not layers:
            raise ValueError("a Sequential needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Dense):
                raise TypeError(f"layer {i} is {type(layer).__name__}, expected fastnn.Dense")
            if i and layer.in_features != layers[i - 1].out_features:
                raise ValueError(
                    f"layer {i} expects {layer.in_features} inputs but layer {i - 1} has "
                    f"{layers[i - 1].out_features} outputs"
                )
        self.layers = layers
        self.seed = seed
        self.dtype = check_dtype(dtype)
        rng = np.random.default_rng(seed)
        for layer in layers:
            layer.initialize(rng, self.dtype)
        # Shuffling draws from its own stream, so the weights do not depend on fit's use of it.
        self._rng = np.random.default_rng(None if seed is None else [seed, 1])
        self._mse_labels = False
        self.loss: Loss | None = None  # set by fit: decides what predict returns
        self.optimizer: Optimizer | None = None
        self.backend: str | None = None  # fit's backend= choice; predict and evaluate reuse it
        self.stop_training = False

    # -- structure -------------------------------------------------------------------------
    @property
    def n_features(self) -> int:
        return self.layers[0].in_features

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].out_features

    def parameters(self) -> list[np.ndarray]:
        """The parameter arrays themselves (not copies): W0, b0, W1, b1, ..."""
        return [p for layer in self.layers for p in (layer.W, layer.b)]

    def gradients(self) -> list[np.ndarray | None]:
        """Gradients from the last ``backward``: dW0, db0, dW1, db1, ..."""
        return [g for layer in self.layers for g in (layer.dW, layer.db)]

    def get_weights(self) -> list[np.ndarray]:
        """Copies of the parameters: W0, b0, W1, b1, ..."""
        return [p.copy() for p in self.parameters()]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Copy ``weights`` (as returned by ``get_weights``) into the parameters, in place."""
        params = self.parameters()
        if len(weights) != len(params):
            raise ValueError(f"expected {len(params)} arrays (W, b per layer), got {len(weights)}")
        for i, (p, w) in enumerate(zip(params, weights, strict=True)):
            w = np.asarray(w)
            if w.shape != p.shape:
                raise ValueError(f"array {i} has shape {w.shape}, expected {p.shape}")
            if not np.isfinite(w).all():
                raise ValueError(f"array {i} contains NaN or infinite values")
        for p, w in zip(params, weights, strict=True):
            p[...] = w

    def summary(self) -> str:
        """A table of layers, output shapes and parameter counts."""
        rows = [f"{'layer':<28}{'output shape':<16}{'params':>10}"]
        total = 0
        for i, layer in enumerate(self.layers):
            count = layer.in_features * layer.out_features + layer.out_features
            total += count
            name = f"{i}: Dense({layer.activation})"
            rows.append(f"{name:<28}{str((None, layer.out_features)):<16}{count:>10,}")
        rows.append(f"total parameters: {total:,}  (dtype {self.dtype})")
        return "\n".join(rows)

    def __repr__(self) -> str:
        return f"Sequential({self.layers!r})"

    # -- the teaching path: explicit forward and backward ------------------------------------
    def forward(self, X: np.ndarray) -> np.ndarray:
        """Run every layer on ``X`` (n, n_features); returns (n, n_outputs).

        Keeps what ``backward`` needs. The last layer's activation is applied as declared.
        """
        out = check_X(X, self.n_features, self.dtype)
        for layer in self.layers:
            out = layer.forward(out)
        return out

    def backward(self, grad: np.ndarray) -> np.ndarray:
        """Backpropagate dL/d(output) (n, n_outputs) through every layer.

        Sets each layer's ``dW`` and ``db`` and returns dL/dX, shape (n, n_features).
        """
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return grad

    # -- inference -------------------------------------------------------------------------
    def _output_activation(self) -> int:
        """Activation applied to the outputs for probabilities: the fused one, if any."""
        declared = self.layers[-1].activation
        if self.loss is not None and self.loss.fused_activations:
            return C.ACTIVATION_CODES[self.loss.fused_activations[0]]
        return C.ACTIVATION_CODES[declared]

    def _forward_all(self, X: np.ndarray, last_act: int, backend: str | None = None) -> np.ndarray:
        B = resolve_backend(backend or self.backend)
        X = check_X(X, self.n_features, self.dtype)
        n = X.shape[0]
        out = np.empty((n, self.n_outputs), dtype=self.dtype)
        widths = [layer.out_features for layer in self.layers]
        buffers = [np.empty((min(n, PREDICT_CHUNK), w), dtype=self.dtype) for w in widths[:-1]]
        for start in range(0, n, PREDICT_CHUNK):
            x = X[start : start + PREDICT_CHUNK]
            m = x.shape[0]
            for i, layer in enumerate(self.layers):
                last = i == len(self.layers) - 1
                act = last_act if last else layer.act_code
                dst = out[start : start + m] if last else buffers[i][:m]
                B.dense_forward(x, layer.W, layer.b, act, layer.negative_slope, dst)
                x = dst
        return out

    def _loss_input_act(self, loss: Loss | None) -> int:
        """Last layer's activation as ``loss`` sees it: identity where the loss fuses it."""
        if loss is not None and loss.fused_activations:
            return C.IDENTITY
        return self.layers[-1].act_code

    def _loss_outputs(
        self, X: np.ndarray, loss: Loss | None, backend: str | None = None
    ) -> np.ndarray:
        """The outputs ``loss`` works on (logits where it fuses softmax/sigmoid), (n, n_outputs)."""
        return self._forward_all(X, self._loss_input_act(loss), backend)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Raw outputs of the last layer before any fused softmax/sigmoid, (n, n_outputs)."""
        return self._loss_outputs(X, self.loss)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Outputs after the output activation (softmax/sigmoid probabilities), (n, n_outputs)."""
        return self._forward_all(X, self._output_activation())

    def is_classifier(self) -> bool:
        return self.loss is None or self.loss.name != "mse" or getattr(self, "_mse_labels", False)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class labels (n,) for a classifier; the outputs (n, n_outputs) for regression.

        A classifier with one output (binary cross-entropy) predicts 1 where the probability
        is >= 0.5; with several outputs it predicts the arg-max.
        """
        outputs = self.predict_proba(X)
        if not self.is_classifier():
            return outputs
        return _labels_of(outputs, self.loss)

    def evaluate(self, X: np.ndarray, y: object, loss: str | Loss | None = None) -> dict:
        """Loss and (for classifiers) accuracy on ``(X, y)``.

        Parameters
        ----------
        X : ndarray, shape (n, n_features)
        y : array-like, labels (n,) or targets (n, n_outputs)
        loss : str or Loss, optional
            Defaults to the loss of the last ``fit`` (cross-entropy before any fit).

        Returns
        -------
        dict with "loss" and, for classifiers, "accuracy".
        """
        loss_obj = get_loss(loss if loss is not None else (self.loss or "cross_entropy"))
        X = check_X(X, self.n_features, self.dtype)
        y_arr = np.asarray(y)
        if len(y_arr) != len(X):
            raise ValueError(f"X has {len(X)} samples but y has {len(y_arr)}")
        targets = loss_obj.prepare_targets(y_arr, self.n_outputs, self.dtype)
        outputs = self._loss_outputs(X, loss_obj)
        B = resolve_backend(self.backend)
        kernel = getattr(B, C.LOSS_KERNEL_NAMES[loss_obj.code(targets)])
        result = {"loss": float(kernel(outputs, targets, np.empty_like(outputs)))}
        if loss_obj.name != "mse" or y_arr.ndim == 1:
            result["accuracy"] = accuracy(outputs, targets, loss_obj)
        return result

    # -- training --------------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: object, **kwargs) -> History:  # noqa: D417
        """Train the network. See :func:`fastnn.training.fit` for every argument.

        ``batch_size=1`` is stochastic gradient descent, ``batch_size=None`` full-batch gradient
        descent, anything in between mini-batch gradient descent.
        """
        from .training import fit

        return fit(self, X, y, **kwargs)

    def save(self, path: str, include_optimizer: bool = True) -> None:
        """Save architecture, weights (and optimizer state) to one ``.npz`` file."""
        from .io import save

        save(self, path, include_optimizer=include_optimizer)


def _labels_of(probabilities: np.ndarray, loss: Loss | None) -> np.ndarray:
    if probabilities.shape[1] == 1:
        return (probabilities[:, 0] >= 0.5).astype(np.int64)
    return np.argmax(probabilities, axis=1)


def accuracy(outputs: np.ndarray, targets: np.ndarray, loss: Loss) -> float:
    """Fraction of rows whose predicted class matches the target's class.

    ``outputs`` may be logits or probabilities (arg-max is the same); binary outputs with one
    column are thresholded at logit 0 when the loss fuses a sigmoid.
    """
    if targets.ndim == 1:
        truth = targets
    elif targets.shape[1] == 1:
        truth = (targets[:, 0] >= 0.5).astype(np.int64)
    else:
        truth = np.argmax(targets, axis=1)
    if outputs.shape[1] == 1:
        cut = 0.0 if loss.fused_activations else 0.5
        pred = (outputs[:, 0] >= cut).astype(np.int64)
    else:
        pred = np.argmax(outputs, axis=1)
    return float(np.mean(pred == truth))
