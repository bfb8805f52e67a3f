"""Learning curves as a PNG: loss and accuracy per epoch, training and validation."""

from __future__ import annotations

import os
from typing import Any


def _matplotlib():  # noqa: ANN202
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as exc:
        raise ImportError(
            "plotting needs matplotlib: pip install 'fastnn[plot]' (or pip install matplotlib)"
        ) from exc
    # A bare Figure (no pyplot) renders to files without a display and leaves the user's
    # pyplot backend and open figures alone.
    return Figure, MaxNLocator


def plot_history(history: Any, path: str | os.PathLike[str]) -> None:
    """Write the loss and accuracy curves of ``history`` to a PNG file.

    Parameters
    ----------
    history : fastnn.History
        (Read through its attributes only, so this module does not import ``fastnn.history``,
        which imports it.)
        From ``fit``; ``loss`` (and ``accuracy``, ``val_loss``, ``val_accuracy`` when present)
        hold one value per epoch.
    path : str or path-like
        Output file; the format follows its suffix (``.png`` recommended).

    Raises
    ------
    ImportError
        matplotlib is not installed (the message says how to install it).
    ValueError
        The history has no epoch to plot.
    """
    if not history.loss:
        raise ValueError("the history has no epoch to plot (train for at least one epoch)")
    Figure, MaxNLocator = _matplotlib()
    has_acc = bool(history.accuracy or history.val_accuracy)
    fig = Figure(figsize=(10 if has_acc else 5.5, 4))
    axes = fig.subplots(1, 2 if has_acc else 1)
    axes = list(axes) if has_acc else [axes]
    epochs = range(1, len(history.loss) + 1)
    panels = [("loss", history.loss, history.val_loss)]
    if has_acc:
        panels.append(("accuracy", history.accuracy, history.val_accuracy))
    for ax, (name, train, val) in zip(axes, panels, strict=False):
        if train:
            ax.plot(epochs[: len(train)], train, marker="o", label=f"training {name}")
        if val:
            ax.plot(epochs[: len(val)], val, marker="s", label=f"validation {name}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_title(f"{history.epochs} epochs, {history.iterations} iterations "
                      f"(batch {history.batch_size})")  # fmt: skip
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=100)
