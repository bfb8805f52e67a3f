"""The perceptron: a threshold unit with zero hidden layers, trained by the perceptron rule."""

from __future__ import annotations

import numpy as np

from ._validation import check_positive, check_X


class Perceptron:
    """Rosenblatt's perceptron: ``output = 1 if x . w + b > 0 else 0``.

    Trained with the perceptron learning rule, one sample at a time: when the unit is wrong,
    move its weights toward the sample (``w += lr * x`` for a missed positive, ``w -= lr * x``
    for a false positive). It converges whenever the classes are linearly separable — and never
    on a problem like XOR, which needs a hidden layer (see ``examples/perceptron.py``).
    With ``n_classes > 2`` there is one unit per class, the highest score wins, and a mistake
    moves the true class's unit toward the sample and the predicted one away.

    Parameters
    ----------
    n_inputs : int
        Features per sample.
    n_classes : int, default 2
        Number of classes; labels are 0 .. n_classes - 1.
    lr : float, default 1.0
        Step of the rule.
    max_epochs : int, default 100
        Passes over the data at most; training stops early after an epoch without mistakes.
    seed : int, optional
        Seed of the per-epoch shuffling.

    Attributes
    ----------
    W : ndarray, shape (n_inputs, n_units)
        ``n_units`` is 1 for two classes, else ``n_classes``.
    b : ndarray, shape (n_units,)
    errors_ : list of int
        Mistakes made in each epoch.
    converged_ : bool
        Whether the last epoch made no mistake.
    """

    def __init__(
        self, n_inputs: int, n_classes: int = 2, lr: float = 1.0, max_epochs: int = 100,
        seed: int | None = None,
    ) -> None:  # fmt: skip
        self.n_inputs = check_positive("n_inputs", n_inputs, integer=True)
        self.n_classes = check_positive("n_classes", n_classes, integer=True)
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        self.lr = check_positive("lr", lr)
        self.max_epochs = check_positive("max_epochs", max_epochs, integer=True)
        self.seed = seed
        units = 1 if self.n_classes == 2 else self.n_classes
        self.W = np.zeros((self.n_inputs, units))
        self.b = np.zeros(units)
        self.errors_: list[int] = []
        self.converged_ = False

    def _labels(self, y: object, n: int) -> np.ndarray:
        y = np.asarray(y)
        if y.shape != (n,):
            raise ValueError(f"y must have shape ({n},), got {y.shape}")
        if y.dtype.kind == "f" and not np.all(y == np.round(y)):
            raise ValueError("labels must be integers")
        if y.dtype.kind not in "biuf":
            raise TypeError(f"labels must be integers, got dtype {y.dtype}")
        labels = y.astype(np.int64)
        if labels.min() < 0 or labels.max() >= self.n_classes:
            raise ValueError(f"labels must lie in 0..{self.n_classes - 1}")
        return labels

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Scores ``X @ W + b``, shape (n, n_units)."""
        return check_X(X, self.n_inputs, np.dtype(np.float64)) @ self.W + self.b

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class labels, shape (n,)."""
        scores = self.decision_function(X)
        if self.n_classes == 2:
            return (scores[:, 0] > 0).astype(np.int64)
        return np.argmax(scores, axis=1)

    def fit(self, X: np.ndarray, y: object) -> Perceptron:
        """Apply the perceptron rule until an epoch makes no mistake (or ``max_epochs``).

        Parameters
        ----------
        X : ndarray, shape (n, n_inputs)
        y : array-like of int, shape (n,)
        """
        X = check_X(X, self.n_inputs, np.dtype(np.float64))
        labels = self._labels(y, X.shape[0])
        rng = np.random.default_rng(self.seed)
        self.errors_ = []
        for _ in range(self.max_epochs):
            mistakes = 0
            for i in rng.permutation(X.shape[0]):
                x, target = X[i], labels[i]
                if self.n_classes == 2:
                    predicted = int(x @ self.W[:, 0] + self.b[0] > 0)
                    if predicted != target:
                        sign = 1.0 if target == 1 else -1.0
                        self.W[:, 0] += self.lr * sign * x
                        self.b[0] += self.lr * sign
                        mistakes += 1
                else:
                    predicted = int(np.argmax(x @ self.W + self.b))
                    if predicted != target:
                        self.W[:, target] += self.lr * x
                        self.b[target] += self.lr
                        self.W[:, predicted] -= self.lr * x
                        self.b[predicted] -= self.lr
                        mistakes += 1
            self.errors_.append(mistakes)
            if mistakes == 0:
                break
        self.converged_ = bool(self.errors_) and self.errors_[-1] == 0
        return self

    def score(self, X: np.ndarray, y: object) -> float:
        """Accuracy on ``(X, y)``."""
        X = check_X(X, self.n_inputs, np.dtype(np.float64))
        return float(np.mean(self.predict(X) == self._labels(y, X.shape[0])))
