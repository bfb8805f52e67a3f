"""Real MNIST on the reference backend (skipped without FASTNN_DATA)."""

from __future__ import annotations

import fastnn
from fastnn.datasets import load_mnist


def test_one_epoch_of_sgd_reaches_90_percent(mnist_root):
    X_train, y_train, X_test, y_test = load_mnist(root=mnist_root, download=False)
    model = fastnn.Sequential([fastnn.Dense(784, 128, "relu"), fastnn.Dense(128, 10)], seed=0)
    history = model.fit(X_train, y_train, optimizer=fastnn.SGD(0.1), batch_size=32, epochs=1,
                        backend="numpy", track_accuracy=False)  # fmt: skip
    assert history.iterations == 1875
    assert model.evaluate(X_test, y_test)["accuracy"] >= 0.90
