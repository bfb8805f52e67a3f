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
