"""The reference epoch: the shared per-batch loop over this package's kernels."""

from __future__ import annotations

import numpy as np

from .. import eager
from ..workspace import Workspace


def train_epoch(
    ws: Workspace,
    X: np.ndarray,
    targets: np.ndarray,
    order: np.ndarray,
    batch_size: int,
    batch_losses: np.ndarray,
) -> int:
    """One epoch of mini-batch gradient descent, batch by batch (see the kernel contract).

    For every batch: gather, ``dense_forward`` per layer, the loss kernel, ``dense_backward``
    per layer in reverse, then one optimizer update per parameter.
    """
    from .. import numpy as this  # the package: the loop calls its kernels by contract name

    return eager.eager_epoch(this, ws, X, targets, order, batch_size, batch_losses)
