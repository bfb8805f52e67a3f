"""Fixtures of the backend tests."""

from __future__ import annotations

import numpy as np
import pytest

from fastnn.backends.workspace import Workspace


@pytest.fixture
def workspace(dense_stack):
    """Factory: a Workspace over fresh dense layers (the same layers for the same arguments)."""

    def make(dtype, sizes, acts, loss, optimizer, batch_size, hyper, seed=0):
        layers = dense_stack(sizes, acts, dtype, seed=seed, alpha=0.05)
        return Workspace(layers, acts, loss, optimizer, np.asarray(hyper, dtype=np.float64),
                         batch_size, dtype)  # fmt: skip

    return make
