"""``Sequential``: a stack of layers — the multilayer perceptron and its relatives."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from . import _codes as C
from . import io
from ._feed import cast_into, is_direct
from ._predict import checked_by_plan, exclusive_plan, fast_forward, outputs_of
from ._validation import check_dtype, check_input_scale, check_seed, check_X, check_X_in_place
from .backends import resolve_backend
from .history import History
from .layers import Layer
from .losses import Loss, get_loss
from .metrics import accuracy, labels_of
from .optimizers import Optimizer
from .training import fit as _fit

PREDICT_CHUNK = 4096  # rows per forward pass in predict: bounded memory, BLAS-sized work


class Sequential:
    """A feed-forward network: each layer's output is the next layer's input.

    Parameters
    ----------
    layers : sequence of Layer
        At least one layer (``fastnn.Dense`` and the other kinds of ``fastnn.layers``). Any
        number of hidden layers (zero hidden layers is a single-layer network).
    seed : int, optional
        Seed of the weight initialisation (and the default shuffling seed of ``fit``).
    dtype : {"float32", "float64"}, default "float32"
        Dtype of parameters and computation; inputs are converted once per ``fit``.
    input_shape : tuple of int, optional
        Shape of one input sample, e.g. ``(784,)``. Default: what the first layer declares
        (a ``Dense`` its ``in_features``). Every layer is built, and its output shape checked
        against the next layer, when the shape is known.

    Examples
    --------
    >>> import fastnn
    >>> model = fastnn.Sequential([fastnn.Dense(784, 128, "relu"), fastnn.Dense(128, 10)], seed=0)
    >>> model.parameters()[0].shape
    (784, 128)
    """

    def __init__(
        self,
        layers: Sequence[Layer],
        seed: int | None = None,
        dtype: str = "float32",
        input_shape: Sequence[int] | None = None,
    ) -> None:
        layers = list(layers)
        if not layers:
            raise ValueError("a Sequential needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(
                    f"layer {i} is {type(layer).__name__}, expected a fastnn layer "
                    "(fastnn.Dense or another fastnn.layers.Layer)"
                )
        self.layers = layers
        self.seed = None if seed is None else check_seed("seed", seed)
        self.dtype = check_dtype(dtype)
        # Shuffling draws from its own stream, so the weights do not depend on fit's use of it.
        self._rng = np.random.default_rng(None if seed is None else [seed, 1])
        self._mse_labels = False
        self.loss: Loss | None = None  # set by fit: decides what predict returns
        self.optimizer: Optimizer | None = None
        self.backend: str | None = None  # fit's backend= choice; predict and evaluate reuse it
        self.stop_training = False
        self.input_shape: tuple[int, ...] | None = None
        shape = input_shape if input_shape is not None else _declared_input(layers[0])
        if shape is not None:
            self.build(shape)

    # -- structure -------------------------------------------------------------------------
    def build(self, input_shape: Sequence[int]) -> None:
        """Build every layer for samples of ``input_shape``, drawing the initial weights.

        Raises
        ------
        ValueError
            Naming the first layer that cannot take the shape its predecessor gives.
        """
        rng = np.random.default_rng(self.seed)
        shape = tuple(int(s) for s in input_shape)
        self.input_shape = shape
        for i, layer in enumerate(self.layers):
            try:
                shape = layer.build(shape, rng, self.dtype)
            except ValueError as exc:
                raise ValueError(f"layer {i}: {exc}") from None

    def _require_built(self, X: np.ndarray | None = None) -> None:
        if self.input_shape is None:
            if X is None:
                raise RuntimeError("the model is not built: give input_shape= or call fit first")
            self.build(np.shape(X)[1:])

    @property
    def n_features(self) -> int:
        self._require_built()
        return _size(self.input_shape)

    @property
    def output_shape(self) -> tuple[int, ...]:
        self._require_built()
        return self.layers[-1].output_shape

    @property
    def n_outputs(self) -> int:
        return _size(self.output_shape)

    def parameters(self) -> list[np.ndarray]:
        """The parameter arrays themselves (not copies): W0, b0, W1, b1, ..."""
        return [p for layer in self.layers for p in layer.parameters()]

    def gradients(self) -> list[np.ndarray | None]:
        """Gradients from the last ``backward``: dW0, db0, dW1, db1, ..."""
        return [g for layer in self.layers for g in layer.gradients()]

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
        self._require_built()
        rows = [f"{'layer':<28}{'output shape':<20}{'params':>10}"]
        total = 0
        for i, layer in enumerate(self.layers):
            count = layer.n_params()
            total += count
            shape = str((None, *layer.output_shape))
            rows.append(f"{f'{i}: {layer.describe()}':<28}{shape:<20}{count:>10,}")
        rows.append(f"total parameters: {total:,}  (dtype {self.dtype})")
        return "\n".join(rows)

    def __repr__(self) -> str:
        return f"Sequential({self.layers!r})"

    def __getstate__(self) -> dict:
        # Prediction plans hold compiled-kernel closures and buffers: rebuilt on demand.
        return {k: v for k, v in self.__dict__.items() if k != "_plans"}

    # -- the teaching path: explicit forward and backward ------------------------------------
    def forward(self, X: np.ndarray) -> np.ndarray:
        """Run every layer on ``X`` (n, *input_shape); returns (n, *output_shape).

        Keeps what ``backward`` needs. The last layer's activation is applied as declared.
        """
        self._require_built(X)
        out = check_X(X, self.input_shape, self.dtype)
        for layer in self.layers:
            out = layer.forward(out)
        return out

    def backward(self, grad: np.ndarray) -> np.ndarray:
        """Backpropagate dL/d(output) (n, *output_shape) through every layer.

        Sets each layer's parameter gradients (``dW``, ``db``, ...) and returns dL/dX,
        shape (n, *input_shape).
        """
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return grad

    # -- inference -------------------------------------------------------------------------
    def _output_activation(self) -> int:
        """Activation applied to the outputs for probabilities: the fused one, if any."""
        if self.loss is not None and self.loss.fused_activations:
            return C.ACTIVATION_CODES[self.loss.fused_activations[0]]
        return self.layers[-1].act_code

    def _forward_all(
        self,
        X: np.ndarray,
        last_act: int,
        backend: str | None = None,
        input_scale: float | None = None,
    ) -> np.ndarray:
        fast = fast_forward(self, X, last_act, backend, input_scale)
        if fast is not None:  # the served call: one sample or a few, nothing to convert
            return fast
        self._require_built(X)
        B = resolve_backend(backend or self.backend)
        scale = check_input_scale(input_scale)
        if not checked_by_plan(self, B, X, scale):
            X = check_X_in_place(X, self.input_shape, self.dtype, scale=scale)
        return self._forward_checked(B, X, last_act, scale=scale)

    def _forward_checked(
        self, B: ModuleType, X: np.ndarray, last_act: int, scale: float | None = None
    ) -> np.ndarray:
        """Outputs (n, n_outputs) for checked inputs of any dtype, on backend ``B``."""
        out = np.empty((X.shape[0], self.n_outputs), dtype=self.dtype)
        for rows, outputs in self._forward_chunks(B, X, last_act, scale=scale):
            out[rows] = outputs
        return out

    def _forward_chunks(
        self,
        B: ModuleType,
        X: np.ndarray,
        last_act: int,
        rows: np.ndarray | None = None,
        scale: float | None = None,
        buffer: np.ndarray | None = None,
    ) -> Iterator[tuple[slice | np.ndarray, np.ndarray]]:
        """``(rows, outputs)`` chunk by chunk: the outputs (m, n_outputs) of ``X[rows]``.

        ``X`` is checked but may have any real dtype and layout: each chunk of it (of
        ``rows``, when given, else of every row; at most ``PREDICT_CHUNK`` rows) is cast into
        ``buffer`` (a fresh one by default) unless ``X`` is C-contiguous in the model dtype
        with no ``scale``. The outputs are valid until the next chunk.
        """
        n = X.shape[0] if rows is None else rows.shape[0]
        direct = rows is None and is_direct(X, self.dtype, scale)
        if not direct and buffer is None:
            buffer = np.empty((min(n, PREDICT_CHUNK), *X.shape[1:]), dtype=self.dtype)
        chunk = PREDICT_CHUNK if buffer is None else min(PREDICT_CHUNK, buffer.shape[0])
        with exclusive_plan(self, B, min(n, chunk), last_act) as plan:
            for start in range(0, n, chunk):
                m = min(chunk, n - start)
                sel = slice(start, start + m) if rows is None else rows[start : start + m]
                if direct:
                    x = X[sel]
                else:
                    cast_into(X, sel, buffer[:m], scale)
                    x = buffer[:m]
                yield sel, outputs_of(plan, x, self, X).reshape(m, -1)

    def _loss_input_act(self, loss: Loss | None) -> int:
        """Last layer's activation as ``loss`` sees it: identity where the loss fuses it."""
        if loss is not None and loss.fused_activations:
            return C.IDENTITY
        return self.layers[-1].act_code

    def _loss_outputs(
        self,
        X: np.ndarray,
        loss: Loss | None,
        backend: str | None = None,
        input_scale: float | None = None,
    ) -> np.ndarray:
        """The outputs ``loss`` works on (logits where it fuses softmax/sigmoid), (n, n_outputs)."""
        return self._forward_all(X, self._loss_input_act(loss), backend, input_scale)

    def decision_function(self, X: np.ndarray, input_scale: float | None = None) -> np.ndarray:
        """Raw outputs of the last layer before any fused softmax/sigmoid, (n, n_outputs).

        ``X`` (n, *input_shape) and ``input_scale`` as for :meth:`predict_proba`.
        """
        return self._loss_outputs(X, self.loss, input_scale=input_scale)

    def predict_proba(self, X: np.ndarray, input_scale: float | None = None) -> np.ndarray:
        """Outputs after the output activation (softmax/sigmoid probabilities), (n, n_outputs).

        Parameters
        ----------
        X : ndarray, shape (n, *input_shape)
            Any real dtype (uint8 images, float64, ...) and layout, or a ``numpy.memmap``:
            it is cast to the model dtype chunk by chunk, never copied whole.
        input_scale : float, optional
            Multiply the inputs by this factor as they are cast, e.g. ``1/255`` for uint8
            pixels. Not stored in the model or its file: pass what ``fit`` was given.
        """
        return self._forward_all(X, self._output_activation(), input_scale=input_scale)

    def is_classifier(self) -> bool:
        return self.loss is None or self.loss.name != "mse" or getattr(self, "_mse_labels", False)

    def predict(self, X: np.ndarray, input_scale: float | None = None) -> np.ndarray:
        """Class labels (n,) for a classifier; the outputs (n, n_outputs) for regression.

        A classifier with one output (binary cross-entropy) predicts 1 where the probability
        is >= 0.5; with several outputs it predicts the arg-max. ``X`` (n, *input_shape) and
        ``input_scale`` as for :meth:`predict_proba`.
        """
        outputs = self.predict_proba(X, input_scale)
        if not self.is_classifier():
            return outputs
        return labels_of(outputs)

    def score_outputs(self, outputs: np.ndarray, targets: np.ndarray, loss: Loss) -> float:
        """Accuracy of ``outputs`` as ``loss`` sees them (logits where it fuses an activation)."""
        return accuracy(outputs, targets, fused_sigmoid=bool(loss.fused_activations))

    def evaluate(
        self,
        X: np.ndarray,
        y: object,
        loss: str | Loss | None = None,
        input_scale: float | None = None,
    ) -> dict:
        """Loss and (for classifiers) accuracy on ``(X, y)``.

        Parameters
        ----------
        X : ndarray, shape (n, *input_shape)
            Any real dtype and layout, cast chunk by chunk (see :meth:`predict_proba`).
        y : array-like, labels (n,) or targets (n, n_outputs)
        loss : str or Loss, optional
            Defaults to the loss of the last ``fit`` (cross-entropy before any fit).
        input_scale : float, optional
            Factor applied to the inputs as they are cast (as given to ``fit``).

        Returns
        -------
        dict with "loss" and, for classifiers, "accuracy".
        """
        loss_obj = get_loss(loss if loss is not None else (self.loss or "cross_entropy"))
        self._require_built(X)
        scale = check_input_scale(input_scale)
        X = check_X_in_place(X, self.input_shape, self.dtype, scale=scale)
        y_arr = np.asarray(y)
        if len(y_arr) != len(X):
            raise ValueError(f"X has {len(X)} samples but y has {len(y_arr)}")
        targets = loss_obj.prepare_targets(y_arr, self.n_outputs, self.dtype)
        B = resolve_backend(self.backend)
        outputs = self._forward_checked(B, X, self._loss_input_act(loss_obj), scale=scale)
        kernel = getattr(B, C.LOSS_KERNEL_NAMES[loss_obj.code(targets)])
        result = {"loss": float(kernel(outputs, targets, np.empty_like(outputs)))}
        if loss_obj.name != "mse" or y_arr.ndim == 1:
            result["accuracy"] = self.score_outputs(outputs, targets, loss_obj)
        return result

    # -- training and files ------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: object, **kwargs: Any) -> History:  # noqa: D417
        """Train the network. See :func:`fastnn.training.fit` for every argument.

        ``batch_size=1`` is stochastic gradient descent, ``batch_size=None`` full-batch gradient
        descent, anything in between mini-batch gradient descent.
        """
        self._require_built(X)
        return _fit(self, X, y, **kwargs)

    def save(self, path: str | os.PathLike[str], include_optimizer: bool = True) -> None:
        """Save architecture, weights (and optimizer state) to one ``.npz`` file
        (see :mod:`fastnn.io` for the format)."""
        self._require_built()
        io.save(self, path, include_optimizer=include_optimizer)

    def to_onnx(
        self, path: str | os.PathLike[str], output: str = "logits", opset: int = 17
    ) -> None:
        """Write the network as an ONNX file (needs ``fastnn[onnx]``); see
        :func:`fastnn.export.to_onnx` for the outputs, the opsets and the errors."""
        from .export import to_onnx

        to_onnx(self, path, output=output, opset=opset)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, max_bytes: int = io.DEFAULT_MAX_BYTES
    ) -> Sequential:
        """Read a model written by :meth:`save` (any format version up to the current one).

        ``max_bytes`` bounds the total size of the arrays the file may declare (checked before
        anything is decompressed); raise it for a larger model. See :func:`fastnn.io.read`.
        """
        saved = io.read(path, max_bytes=max_bytes)
        try:
            model = cls(saved.layers, seed=saved.seed, dtype=saved.dtype,
                        input_shape=saved.input_shape)  # fmt: skip
            saved.restore_into(model)
        except ValueError as exc:  # layers that cannot take the stored shapes or weights
            raise io.ModelFileError(f"{path}: the layers do not fit their weights: {exc}") from exc
        return model


def load(path: str | os.PathLike[str], *, max_bytes: int = io.DEFAULT_MAX_BYTES) -> Sequential:
    """Read a model written by ``Sequential.save``. See :func:`fastnn.io.read` for the checks.

    Parameters
    ----------
    path : str or path-like
    max_bytes : int, default 2 GiB
        Largest total size of the arrays the file may declare.

    Returns
    -------
    Sequential
        Same layers, weights, dtype and loss; ``optimizer`` restored with its state when saved.
    """
    return Sequential.load(path, max_bytes=max_bytes)


def _declared_input(layer: Layer) -> tuple[int, ...] | None:
    """The input shape a first layer fixes by itself (a Dense layer's in_features)."""
    in_features = getattr(layer, "in_features", None)
    return (in_features,) if in_features is not None else None


def _size(shape: Sequence[int] | None) -> int:
    return int(np.prod(shape)) if shape is not None else 0
