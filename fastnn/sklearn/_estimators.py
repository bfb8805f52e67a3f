"""``MLPClassifier`` and ``MLPRegressor``: scikit-learn's MLP API, trained by fastnn."""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import column_or_1d, validate_data

from fastnn.sklearn._base import BaseMLP


def _store_params(est: object, params: dict) -> None:
    """Set every ``__init__`` argument as an attribute, unchanged (scikit-learn's rule)."""
    for name, value in params.items():
        if name not in ("self", "__class__"):
            setattr(est, name, value)


class MLPClassifier(ClassifierMixin, BaseMLP):
    """Multi-layer perceptron classifier: scikit-learn's ``MLPClassifier`` on fastnn kernels.

    Multi-class targets train a softmax output with cross-entropy; binary and multi-label
    targets train one sigmoid output per label with binary cross-entropy. Labels may be
    integers, strings or a multi-label indicator matrix. Training takes scikit-learn's steps
    (see ``docs/coming_from_sklearn.md`` for the few exact differences).

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default (100,)
        Neurons of each hidden layer; ``()`` means no hidden layer.
    activation : str, default "relu"
        Activation of the hidden layers: scikit-learn's "relu", "tanh", "logistic",
        "identity", or any other hidden activation of fastnn (``fastnn.layers.ACTIVATIONS``):
        "leaky_relu" (slope 0.01 for negative inputs), "gelu" (exact), "gelu_tanh", "silu",
        "elu" (alpha 1).
    solver : {"adam", "sgd"}, default "adam"
        ``"lbfgs"`` is not available (fastnn trains by gradient descent).
    alpha : float, default 1e-4
        L2 penalty ``0.5 * alpha * ||W||^2 / batch_size``, as scikit-learn (see the docs for
        how it maps to weight decay).
    batch_size : int, "auto" or "full", default "auto"
        "auto" is ``min(200, n_samples)``, "full" is full-batch gradient descent.
    learning_rate : {"constant", "invscaling", "adaptive"}, default "constant"
        Schedule of the SGD learning rate (ignored by Adam, as in scikit-learn).
    learning_rate_init : float, default 1e-3
    power_t : float, default 0.5
        Exponent of "invscaling": ``lr = learning_rate_init / (t_ + 1) ** power_t``.
    max_iter : int, default 200
        Epochs (passes over the data) at most.
    shuffle : bool, default True
        Visit the samples in a new random order each epoch.
    random_state : int, RandomState or None, default None
        Initial weights (the same as scikit-learn's for the same seed), validation split and
        shuffling.
    tol : float, default 1e-4
        Training stops once the loss (or the validation score with ``early_stopping``) has not
        improved by ``tol`` for ``n_iter_no_change`` consecutive epochs.
    verbose : bool or int, default False
        Print the loss of each epoch.
    warm_start : bool, default False
        ``fit`` continues from the fitted weights (with a fresh optimizer) instead of restarting.
    momentum : float in [0, 1), default 0.9
        SGD momentum.
    nesterovs_momentum : bool, default True
    early_stopping : bool, default False
        Hold out ``validation_fraction`` of the data (stratified), stop when its accuracy stops
        improving and keep the best weights.
    validation_fraction : float, default 0.1
    beta_1, beta_2, epsilon : float, default 0.9, 0.999, 1e-8
        Adam's hyper-parameters.
    n_iter_no_change : int, default 10
    backend : {None, "auto", "numpy", "numba", "cython"}, default None
        fastnn backend used for training; None is ``fastnn.get_backend()``'s choice.
    dtype : {"float32", "float64"}, default "float32"
        Precision of the weights and of the computation.

    Attributes
    ----------
    classes_ : ndarray, shape (n_classes,)
    coefs_ : list of ndarray
        ``coefs_[i]`` has shape (units of layer i, units of layer i + 1); the network's own
        arrays, updated in place by further training.
    intercepts_ : list of ndarray
        ``intercepts_[i]`` has shape (units of layer i + 1,).
    loss_ : float
        scikit-learn's loss (log-loss plus L2 term) of the last epoch.
    loss_curve_ : list of float
        ``loss_`` of every epoch.
    best_loss_ : float or None
        Lowest ``loss_`` (None with ``early_stopping``).
    validation_scores_ : list of float or None
        Validation accuracy of every epoch (``early_stopping`` only).
    best_validation_score_ : float or None
    n_iter_ : int
        Epochs run by the last ``fit`` (1 after ``partial_fit``).
    t_ : int
        Training samples seen, over all fits.
    n_features_in_ : int
    feature_names_in_ : ndarray of str, shape (n_features_in_,)
        Only when ``X`` had string column names.
    n_layers_ : int
        Layers including input and output: ``len(hidden_layer_sizes) + 2``.
    n_outputs_ : int
        Output units: n_classes (multi-class), 1 (binary) or n_labels (multi-label).
    out_activation_ : {"softmax", "logistic"}

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from fastnn.sklearn import MLPClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 3)
    """

    def __init__(
        self,
        hidden_layer_sizes: int | tuple[int, ...] = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 1e-4,
        batch_size: int | str = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 1e-3,
        power_t: float = 0.5,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: object = None,
        tol: float = 1e-4,
        verbose: bool | int = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int = 10,
        backend: str | None = None,
        dtype: str = "float32",
    ) -> None:
        _store_params(self, locals())

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, X, y) -> MLPClassifier:  # noqa: ANN001
        """Train on ``X`` (n_samples, n_features) and labels ``y`` (n_samples,) or a
        multi-label indicator matrix (n_samples, n_labels). Returns self."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X, y, classes=None) -> MLPClassifier:  # noqa: ANN001
        """One epoch over ``(X, y)``, continuing the fitted network and its optimizer.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
        y : array-like, shape (n_samples,) or (n_samples, n_labels)
        classes : array-like, shape (n_classes,)
            Every class, required on the first call (unless ``y`` is multi-label).

        Returns
        -------
        self
        """
        if not hasattr(self, "classes_"):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            elif classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            else:
                self._label_binarizer.fit(classes)
            self.classes_ = self._label_binarizer.classes_
        elif classes is not None and not np.array_equal(unique_labels(classes), self.classes_):
            raise ValueError(
                f"`classes={classes!r}` is not the same as on the first call to partial_fit, "
                f"was: {self.classes_!r}"
            )
        return self._fit(X, y, incremental=True)

    def _validate_xy(self, X, y, reset: bool, dtype: np.dtype):  # noqa: ANN001, ANN202
        X, y = validate_data(
            self, X, y, multi_output=True, dtype=dtype, order="C", reset=reset
        )  # fmt: skip
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        return X, y

    def _encode_targets(
        self, y: np.ndarray, first_pass: bool, incremental: bool
    ) -> tuple[np.ndarray, int]:
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start and not incremental and set(classes) != set(self.classes_):
                raise ValueError(
                    "warm_start can only be used where `y` has the same classes as in the "
                    f"previous call to fit. Previously got {self.classes_}, `y` has {classes}"
                )
            if len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has "
                    f"{self.classes_}. 'y' has {classes}."
                )
        Y = self._label_binarizer.transform(y)
        if first_pass:
            multiclass = self._label_binarizer.y_type_ == "multiclass"
            self.out_activation_ = "softmax" if multiclass else "logistic"
        if self.out_activation_ == "softmax":
            return np.argmax(Y, axis=1), Y.shape[1]
        return Y, Y.shape[1]

    # -- prediction ----------------------------------------------------------------------------
    def _labels(self, outputs: np.ndarray) -> np.ndarray:
        return self._label_binarizer.inverse_transform(
            outputs.ravel() if self.n_outputs_ == 1 else outputs
        )

    def predict(self, X) -> np.ndarray:  # noqa: ANN001
        """Class labels, shape (n_samples,), or an indicator matrix (n_samples, n_labels)."""
        return self._labels(self._forward(X))

    def predict_proba(self, X) -> np.ndarray:  # noqa: ANN001
        """Class probabilities, shape (n_samples, n_classes) (columns in ``classes_`` order).

        Binary problems give two columns ``[1 - p, p]``; multi-label problems one independent
        probability per label.
        """
        proba = self._forward(X)
        if self.n_outputs_ == 1:
            return np.column_stack([1 - proba[:, 0], proba[:, 0]])
        return proba

    def predict_log_proba(self, X) -> np.ndarray:  # noqa: ANN001
        """Logarithm of ``predict_proba``, shape (n_samples, n_classes)."""
        proba = self.predict_proba(X)
        return np.log(proba, out=proba)

    def _score_array(self, X: np.ndarray, y: np.ndarray) -> float:
        outputs = self._model.predict_proba(X)
        if not np.isfinite(outputs).all():
            return np.nan
        return float(accuracy_score(y, self._labels(outputs)))

    def __sklearn_tags__(self):  # noqa: ANN204
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, BaseMLP):
    """Multi-layer perceptron regressor: scikit-learn's ``MLPRegressor`` on fastnn kernels.

    Trains identity outputs on the half squared error, one output per target column.

    Parameters
    ----------
    loss : {"squared_error"}, default "squared_error"
        scikit-learn's half squared error (``"poisson"`` is not available).
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate, \
learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose, warm_start, \
momentum, nesterovs_momentum, early_stopping, validation_fraction, beta_1, beta_2, epsilon, \
n_iter_no_change, backend, dtype
        As :class:`MLPClassifier`; ``early_stopping`` scores the validation split with R^2
        (not stratified).

    Attributes
    ----------
    coefs_, intercepts_, loss_curve_, best_loss_, validation_scores_, \
best_validation_score_, n_iter_, t_, n_features_in_, feature_names_in_, n_layers_
        As :class:`MLPClassifier`.
    loss_ : float
        Half mean squared error plus the L2 term, of the last epoch.
    n_outputs_ : int
        Target columns.
    out_activation_ : "identity"

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn.sklearn import MLPRegressor
    >>> X = np.linspace(-1, 1, 200).reshape(-1, 1)
    >>> reg = MLPRegressor(hidden_layer_sizes=(32,), max_iter=50, random_state=0).fit(X, X[:, 0])
    >>> reg.predict(X[:3]).shape
    (3,)
    """

    def __init__(
        self,
        loss: str = "squared_error",
        hidden_layer_sizes: int | tuple[int, ...] = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 1e-4,
        batch_size: int | str = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 1e-3,
        power_t: float = 0.5,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: object = None,
        tol: float = 1e-4,
        verbose: bool | int = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int = 10,
        backend: str | None = None,
        dtype: str = "float32",
    ) -> None:
        _store_params(self, locals())

    def fit(self, X, y) -> MLPRegressor:  # noqa: ANN001
        """Train on ``X`` (n_samples, n_features) and targets ``y`` (n_samples,) or
        (n_samples, n_targets). Returns self."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X, y) -> MLPRegressor:  # noqa: ANN001
        """One epoch over ``(X, y)``, continuing the fitted network and its optimizer.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
        y : array-like, shape (n_samples,) or (n_samples, n_targets)

        Returns
        -------
        self
        """
        return self._fit(X, y, incremental=True)

    def _validate_xy(self, X, y, reset: bool, dtype: np.dtype):  # noqa: ANN001, ANN202
        X, y = validate_data(
            self, X, y, multi_output=True, y_numeric=True, dtype=dtype, order="C", reset=reset
        )  # fmt: skip
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def _encode_targets(
        self, y: np.ndarray, first_pass: bool, incremental: bool
    ) -> tuple[np.ndarray, int]:
        if first_pass:
            self.out_activation_ = "identity"
        targets = y.reshape(y.shape[0], -1)
        return targets, targets.shape[1]

    def predict(self, X) -> np.ndarray:  # noqa: ANN001
        """Predicted targets, shape (n_samples,) or (n_samples, n_targets) as ``y`` in fit."""
        outputs = self._forward(X)
        return outputs.ravel() if self.n_outputs_ == 1 else outputs

    def _score_array(self, X: np.ndarray, y: np.ndarray) -> float:
        outputs = self._model.predict_proba(X)
        if not np.isfinite(outputs).all():
            return np.nan
        return float(r2_score(y, outputs.ravel() if self.n_outputs_ == 1 else outputs))
