"""The perceptron: converges on separable data, cannot learn XOR."""

from __future__ import annotations

import numpy as np
import pytest

import fastnn


def test_binary_perceptron_converges_on_separable_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = (X @ [1.0, -2.0, 0.5] + 0.3 > 0).astype(int)
    p = fastnn.Perceptron(3, seed=0, max_epochs=1000).fit(X, y)
    assert p.converged_ and p.errors_[-1] == 0
    assert p.score(X, y) == 1.0


def test_multiclass_perceptron_one_unit_per_class():
    rng = np.random.default_rng(1)
    centers = np.array([[0, 8], [8, 0], [-8, -8]])
    y = rng.integers(0, 3, 150)
    X = centers[y] + rng.normal(size=(150, 2))
    p = fastnn.Perceptron(2, n_classes=3, seed=0).fit(X, y)
    assert p.W.shape == (2, 3) and p.converged_ and p.score(X, y) == 1.0


def test_perceptron_cannot_learn_xor_but_a_hidden_layer_can():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    y = np.array([0, 1, 1, 0])
    p = fastnn.Perceptron(2, max_epochs=50, seed=0).fit(X, y)
    assert not p.converged_ and p.score(X, y) < 1.0
    model = fastnn.Sequential([fastnn.Dense(2, 8, "tanh"), fastnn.Dense(8, 2)], seed=0)
    model.fit(np.repeat(X, 25, axis=0), np.repeat(y, 25), epochs=200, batch_size=10,
              optimizer=fastnn.SGD(0.1, momentum=0.9))  # fmt: skip
    np.testing.assert_array_equal(model.predict(X), y)


def test_perceptron_rejects_bad_labels():
    with pytest.raises(ValueError, match=r"0\.\.1"):
        fastnn.Perceptron(2).fit(np.zeros((3, 2)), [0, 1, 2])
    with pytest.raises(ValueError, match="n_classes"):
        fastnn.Perceptron(2, n_classes=1)
