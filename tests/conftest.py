"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


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
