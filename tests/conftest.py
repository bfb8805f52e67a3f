"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _backend_choice_restored(monkeypatch):
    """Every test starts from the default backend choice and leaves it so: ``set_backend``
    (``fastnn train --backend`` calls it) is process-wide and would leak into later tests."""
    from fastnn import backends

    monkeypatch.setattr(backends, "_current", None)


@pytest.fixture
def reference_backend(monkeypatch):
    """Run the test on the NumPy reference whatever "auto" would pick (restored after)."""
    from fastnn import backends

    monkeypatch.setattr(backends, "_current", "numpy")


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """Directory of the real MNIST files: ``$FASTNN_DATA/mnist``, or skip the test."""
    data = os.environ.get("FASTNN_DATA")
    if not data:
        pytest.skip("real MNIST needed: set FASTNN_DATA to a directory holding mnist/")
    root = Path(data) / "mnist"
    if not root.is_dir():
        pytest.skip(f"real MNIST needed: FASTNN_DATA is set but {root} is not a directory")
    return root


@pytest.fixture
def dense_stack():
    """Factory of built ``Dense`` layers with chosen weights, for Workspace-level tests.

    ``make(sizes, acts, dtype, seed=0, alpha=0.1)``: one layer per consecutive pair of
    ``sizes``, layer ``i`` declared with the activation of code ``acts[i]`` (so its
    ``act_alpha`` is ``alpha`` for leaky ReLU and ELU), weights ``N(0, 1) / sqrt(d)`` and biases
    ``0.1 N(0, 1)`` from ``seed``. The same arguments give the same layers.
    """
    import numpy as np

    from fastnn import _codes as C
    from fastnn.layers import Dense

    def make(sizes, acts, dtype, seed=0, alpha=0.1):
        rng = np.random.default_rng(seed)
        layers = []
        for (d, k), act in zip(zip(sizes[:-1], sizes[1:], strict=True), acts, strict=True):
            layer = Dense(d, k, C.ACTIVATION_NAMES[int(act)], negative_slope=alpha, alpha=alpha)
            layer.build((d,), rng, dtype)
            layer.W[...] = rng.standard_normal((d, k)) / np.sqrt(d)
            layer.b[...] = 0.1 * rng.standard_normal(k)
            layers.append(layer)
        return layers

    return make


@pytest.fixture
def scale_layer():
    """A test-only layer kind without parameters (``out = factor * x``), registered for the
    test and unregistered after, so the registry-wide tests never see it."""
    import numpy as np

    from fastnn.layers import LAYERS, Layer, register_layer

    class Scale(Layer):
        kind = "test_scale"

        def __init__(self, factor: float = 2.0) -> None:
            super().__init__()
            self.factor = float(factor)

        def compute_output_shape(self, input_shape):
            return input_shape

        def forward_into(self, B, x, slot, n):
            np.multiply(x[:n], self.factor, out=slot.output[:n])

        def backward_into(self, B, x, slot, n, grad_x):
            if grad_x is not None:
                np.multiply(slot.delta[:n], self.factor, out=grad_x)

        def config(self):
            return {"factor": self.factor}

        def describe(self):
            return f"Scale({self.factor})"

    assert Scale.kind not in LAYERS
    register_layer(Scale)
    yield Scale
    del LAYERS[Scale.kind]


@pytest.fixture(scope="module")
def dask_client():
    """A Dask client of a LocalCluster started here: 2 worker processes x 1 thread, each
    running one fastnn trial at a time (the sweep's default cluster layout)."""
    distributed = pytest.importorskip("distributed", reason="needs dask: pip install fastnn[dask]")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, resources={"fastnn_trial": 1},
        dashboard_address=":0",
    )  # fmt: skip
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()
