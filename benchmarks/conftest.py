"""Fixtures of the pytest-benchmark suite: MNIST-shaped inputs and one case per backend.

Run with ``pytest benchmarks/ --benchmark-only`` (the normal test run never collects this
directory: pyproject's ``testpaths`` is ``["tests"]``). Inputs are real MNIST rows, because a
backend may exploit the zeros of the images; the suite is skipped when MNIST is not found
(``$FASTNN_DATA/mnist`` or fastnn's download cache).
"""

from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn.backends import resolve_backend

HIDDEN = 128  # the benchmark's MLP: 784-128-10
N_CLASSES = 10


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every benchmark taking ``backend`` runs once per backend that loads here."""
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", fastnn.available_backends())


@pytest.fixture(scope="session")
def mnist() -> tuple[np.ndarray, np.ndarray]:
    """The first 10,000 MNIST training images (float32 in [0, 1]) and labels."""
    from fastnn.datasets import load_mnist

    try:
        X, y, _, _ = load_mnist(download=False)
    except (FileNotFoundError, OSError, ValueError) as exc:
        pytest.skip(f"MNIST not found ({exc}); set FASTNN_DATA to a directory holding mnist/")
    return np.ascontiguousarray(X[:10_000]), np.ascontiguousarray(y[:10_000], dtype=np.int64)


@pytest.fixture
def kernels(backend: str):  # noqa: ANN201
    """The backend module (kernel contract of :mod:`fastnn.backends`)."""
    return resolve_backend(backend)


@pytest.fixture(scope="session")
def mlp_weights() -> list[np.ndarray]:
    """He-initialised W0 (784, 128), b0, W1 (128, 10), b1 in float32."""
    model = fastnn.Sequential(
        [fastnn.Dense(784, HIDDEN, "relu"), fastnn.Dense(HIDDEN, N_CLASSES)], seed=0
    )
    return model.get_weights()
