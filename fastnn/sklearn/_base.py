"""What MLPClassifier and MLPRegressor share: scikit-learn's training loop on fastnn.

One ``fit`` of the estimator is one ``fastnn.Sequential.fit`` call over ``max_iter`` epochs (one
epoch for ``partial_fit``): every epoch runs in the backend's fused ``train_epoch``, and a
callback does scikit-learn's per-epoch bookkeeping (``loss_curve_``, the ``tol`` /
``n_iter_no_change`` stopping rule, early stopping on a validation split, learning-rate
schedules). The fitted ``coefs_`` / ``intercepts_`` *are* the network's parameter arrays.
"""

from __future__ import annotations

import warnings
from itertools import pairwise

import numpy as np
from sklearn.base import BaseEstimator, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

import fastnn
from fastnn.sklearn import _params

# Output activation (scikit-learn's name) -> (fastnn activation, fastnn loss).
OUTPUTS: dict[str, tuple[str | None, str]] = {
    "softmax": ("softmax", "cross_entropy"),
    "logistic": ("sigmoid", "binary_cross_entropy"),
    "identity": (None, "mse"),
}


def _interleave(coefs: list[np.ndarray], intercepts: list[np.ndarray]) -> list[np.ndarray]:
    """[W0, b0, W1, b1, ...], the order of ``Sequential.parameters``."""
    return [a for pair in zip(coefs, intercepts, strict=True) for a in pair]


class _EpochMonitor(fastnn.Callback):
    """Hands each finished epoch to the estimator, which may stop training."""

    def __init__(self, est: BaseMLP, run: dict) -> None:
        self.est = est
        self.run = run
        self.stopped = False

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        if self.est._end_epoch(logs["loss"], self.run):
            self.stopped = True
            self.model.stop_training = True


class BaseMLP(BaseEstimator):
    """Shared fit loop; subclasses say how targets are encoded and how predictions are scored."""

    # -- hooks of the subclasses -----------------------------------------------------------
    def _validate_xy(self, X, y, reset: bool, dtype: np.dtype):  # noqa: ANN001, ANN202
        raise NotImplementedError

    def _encode_targets(
        self, y: np.ndarray, first_pass: bool, incremental: bool
    ) -> tuple[np.ndarray, int]:
        """(targets as fastnn's loss takes them, n_outputs); sets ``out_activation_``."""
        raise NotImplementedError

    def _score_array(self, X: np.ndarray, y: np.ndarray) -> float:
        """``score`` on validated ``X`` (early stopping), NaN when the outputs are not finite."""
        raise NotImplementedError

    # -- the objective: fastnn loss and scale factors (see _params) -------------------------
    def _objective(self) -> tuple[str, float, float]:
        """(fastnn loss, gradient scale s, reported-loss scale c) relative to scikit-learn."""
        k = self.n_outputs_
        loss = OUTPUTS[self.out_activation_][1]
        if loss == "binary_cross_entropy":
            return loss, float(k), float(k)
        if loss == "mse":
            return loss, k / 2.0, 0.5
        return loss, 1.0, 1.0

    # -- fitting -------------------------------------------------------------------------------
    def _fit(self, X, y, incremental: bool):  # noqa: ANN001, ANN202
        hidden = _params.check_params(self)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        dtype = np.dtype(self.dtype) if first_pass else self._model.dtype
        X, y = self._validate_xy(X, y, reset=first_pass, dtype=dtype)
        targets, n_outputs = self._encode_targets(y, first_pass, incremental)
        rs = check_random_state(self.random_state)
        if first_pass:
            self._initialize(X.shape[1], hidden, n_outputs, dtype, rs)
        else:
            self._check_architecture(hidden, n_outputs)
            self._sync_model()
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = _params.make_optimizer(self, self._objective()[1])

        X_val = y_val = None
        if self.early_stopping:
            # As scikit-learn: stratified only for single-output classification.
            stratify = targets.ravel() if n_outputs == 1 and is_classifier(self) else None
            train, val = train_test_split(
                np.arange(X.shape[0]), random_state=rs,
                test_size=self.validation_fraction, stratify=stratify,
            )  # fmt: skip
            if val.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' "
                    "or the size of your dataset."
                )
            X, targets, X_val, y_val = X[train], targets[train], X[val], y[val]
        self._train(X, targets, X_val, y_val, rs, incremental)
        return self

    def _train(
        self, X: np.ndarray, targets: np.ndarray, X_val: np.ndarray | None, y_val: object,
        rs: np.random.RandomState, incremental: bool,
    ) -> None:  # fmt: skip
        """Run the epochs of one fit (one for partial_fit) through fastnn's fit."""
        loss, scale, _ = self._objective()
        opt = self._optimizer
        batch_size = _params.resolve_batch_size(self.batch_size, X.shape[0])
        _params.set_alpha(opt, self.alpha, scale, batch_size)
        run = {"n": X.shape[0], "batches": -(-X.shape[0] // batch_size), "X_val": X_val,
               "y_val": y_val}  # fmt: skip
        monitor = _EpochMonitor(self, run)
        self.n_iter_ = 0
        try:
            self._model.fit(
                X, targets, loss=loss, optimizer=opt, batch_size=batch_size,
                epochs=1 if incremental else self.max_iter, shuffle=self.shuffle,
                seed=int(rs.randint(np.iinfo(np.int32).max)), backend=self.backend,
                callbacks=[monitor], track_accuracy=False,
            )  # fmt: skip
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=4)
        if not incremental and not monitor.stopped and self.n_iter_ == self.max_iter:
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                "optimization hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=4,
            )
        if self.early_stopping:
            self._model.set_weights(_interleave(self._best_coefs, self._best_intercepts))

    def _initialize(
        self, n_features: int, hidden: tuple[int, ...], n_outputs: int, dtype: np.dtype,
        rs: np.random.RandomState,
    ) -> None:  # fmt: skip
        """Build the network with scikit-learn's initialisation and reset the fitted state."""
        units = [n_features, *hidden, n_outputs]
        act = _params.ACTIVATIONS[self.activation]
        acts = [act] * len(hidden) + [OUTPUTS[self.out_activation_][0]]
        layers = [fastnn.Dense(i, o, a) for (i, o), a in zip(pairwise(units), acts, strict=True)]
        self._model = fastnn.Sequential(layers, seed=0, dtype=str(dtype))
        # Glorot uniform for weights *and* intercepts, drawn in scikit-learn's order from
        # random_state, so both libraries start from the same network.
        factor = 2.0 if self.activation == "logistic" else 6.0
        weights = []
        for fan_in, fan_out in pairwise(units):
            bound = np.sqrt(factor / (fan_in + fan_out))
            weights.append(rs.uniform(-bound, bound, (fan_in, fan_out)))
            weights.append(rs.uniform(-bound, bound, fan_out))
        self._model.set_weights(weights)
        self.coefs_ = [layer.W for layer in self._model.layers]
        self.intercepts_ = [layer.b for layer in self._model.layers]
        self.n_layers_ = len(units)
        self.n_outputs_ = n_outputs
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_: list[float] = []
        self._no_improvement_count = 0
        self._hidden = hidden
        self._best_coefs = [c.copy() for c in self.coefs_]
        self._best_intercepts = [b.copy() for b in self.intercepts_]
        if self.early_stopping:
            self.validation_scores_: list[float] | None = []
            self.best_validation_score_: float | None = -np.inf
            self.best_loss_: float | None = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None

    def _check_architecture(self, hidden: tuple[int, ...], n_outputs: int) -> None:
        if hidden != self._hidden or n_outputs != self.n_outputs_:
            raise ValueError(
                f"warm_start and partial_fit continue the fitted network of hidden layers "
                f"{self._hidden} and {self.n_outputs_} outputs; got hidden_layer_sizes="
                f"{hidden} and {n_outputs} outputs. Fit from scratch (warm_start=False)."
            )

    def _end_epoch(self, fastnn_loss: float, run: dict) -> bool:
        """scikit-learn's end-of-epoch bookkeeping; True means stop training."""
        _, scale, loss_scale = self._objective()
        self.n_iter_ += 1
        self.t_ += run["n"]
        penalty = 0.0
        if self.alpha:
            # scikit-learn adds 0.5 alpha ||W||^2 / n_b per batch; here with end-of-epoch weights.
            squares = sum(float(np.dot(w.ravel(), w.ravel())) for w in self.coefs_)
            penalty = 0.5 * self.alpha * squares * run["batches"] / run["n"]
        self.loss_ = loss_scale * fastnn_loss + penalty
        self.loss_curve_.append(self.loss_)
        if self.verbose:
            print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
        self._update_no_improvement_count(run["X_val"], run["y_val"])
        opt = self._optimizer
        sgd = self.solver == "sgd"
        if sgd and self.learning_rate == "invscaling":
            lr_before = opt.lr
            opt.lr = scale * self.learning_rate_init / (self.t_ + 1) ** self.power_t
            _params.keep_velocity(opt, lr_before)
        if self._no_improvement_count <= self.n_iter_no_change:
            return False
        what = "Validation score" if self.early_stopping else "Training loss"
        msg = (f"{what} did not improve more than tol={self.tol:f} for "
               f"{self.n_iter_no_change} consecutive epochs.")  # fmt: skip
        if sgd and self.learning_rate == "adaptive" and opt.lr / scale > _params.MIN_ADAPTIVE_LR:
            opt.lr /= 5.0
            _params.keep_velocity(opt, opt.lr * 5.0)
            self._no_improvement_count = 0
            if self.verbose:
                print(f"{msg} Setting learning rate to {opt.lr / scale:f}")
            return False
        if self.verbose:
            print(f"{msg} Stopping.")
        return True

    def _update_no_improvement_count(self, X_val: np.ndarray | None, y_val: object) -> None:
        if self.early_stopping:
            score = self._score_array(X_val, y_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_coefs = [c.copy() for c in self.coefs_]
                self._best_intercepts = [b.copy() for b in self.intercepts_]
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            self.best_loss_ = min(self.best_loss_, self.loss_curve_[-1])

    # -- prediction ----------------------------------------------------------------------------
    def _sync_model(self) -> None:
        """Take ``coefs_`` / ``intercepts_`` the user assigned into the network (a no-op else)."""
        n_layers = len(self._model.layers)
        if len(self.coefs_) != n_layers or len(self.intercepts_) != n_layers:
            raise ValueError(f"coefs_ and intercepts_ must hold {n_layers} arrays each")
        given = _interleave(self.coefs_, self.intercepts_)
        if all(g is p for g, p in zip(given, self._model.parameters(), strict=True)):
            return
        self._model.set_weights(given)
        self.coefs_ = [layer.W for layer in self._model.layers]
        self.intercepts_ = [layer.b for layer in self._model.layers]

    def _forward(self, X) -> np.ndarray:  # noqa: ANN001
        """Validated ``X`` -> network outputs after the output activation, (n, n_outputs_)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=self._model.dtype, order="C")
        self._sync_model()
        # float64 out, as scikit-learn's estimators (and its checks) expect.
        return self._model.predict_proba(X).astype(np.float64, copy=False)

    # -- pickling: the network's arrays are saved once ---------------------------------------
    def __getstate__(self) -> dict:
        # coefs_/intercepts_ alias the network's arrays; joblib pickles arrays by value, so
        # storing both would unpickle two copies. They are re-linked in __setstate__.
        if hasattr(self, "_model"):
            self._sync_model()
        state = super().__getstate__()
        return {k: v for k, v in state.items() if k not in ("coefs_", "intercepts_")}

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if "_model" in state:
            self.coefs_ = [layer.W for layer in self._model.layers]
            self.intercepts_ = [layer.b for layer in self._model.layers]

    def __sklearn_tags__(self):  # noqa: ANN204
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
