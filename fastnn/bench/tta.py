"""Time to accuracy: fastnn's best MNIST configuration against PyTorch with the same one.

The configuration is ``fastnn.recipes.MNIST_98`` (the report names it). Both runs start from
the same initial weights, see the samples in the same order, check test accuracy after every
epoch (that evaluation is not counted) and stop at the target. A learning-rate schedule in the
recipe (``"schedule"``) becomes a list of per-epoch rates computed once by fastnn's own
schedule objects, which every implementation applies at the start of each epoch.
"""

from __future__ import annotations

from collections.abc import Mapping

# What a recipe that leaves a key out gets (a user's recipe given to ``normalize_recipe``).
DEFAULT_RECIPE: dict = {
    "hidden": [256],
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True},
    "batch_size": 64,
    "epochs": 20,
}
_OPTIMIZER_KEYS = ("lr", "momentum", "nesterov", "weight_decay", "betas", "eps")


def normalize_recipe(recipe: Mapping) -> dict:
    """A recipe in the benchmark's terms, accepting the usual spellings of each key.

    Parameters
    ----------
    recipe : mapping
        ``hidden`` (or ``hidden_sizes`` / ``hidden_layers``; int or list), ``activation``,
        ``optimizer`` (a name or a dict with ``name``), optimizer settings (``lr``,
        ``momentum``, ``nesterov``, ``weight_decay``, ``betas``, ``eps``) at the top level or
        in the optimizer dict, ``batch_size``, ``epochs`` (or ``max_epochs``), ``backend``,
        ``seed``, ``schedule`` (a name ``fastnn.recipes.build`` knows, e.g. "cosine").

    Returns
    -------
    dict
        ``hidden`` (list of int), ``activation``, ``optimizer`` (dict; ``lr_schedule`` holds
        the rate of every epoch when the recipe has a schedule), ``batch_size``, ``epochs``,
        ``backend``, ``seed``, ``schedule``.
    """
    hidden = next((recipe[k] for k in ("hidden", "hidden_sizes", "hidden_layers") if k in recipe),
                  DEFAULT_RECIPE["hidden"])  # fmt: skip
    hidden = [int(hidden)] if isinstance(hidden, int) else [int(h) for h in hidden]
    opt = recipe.get("optimizer", DEFAULT_RECIPE["optimizer"])
    opt = {"name": opt} if isinstance(opt, str) else dict(opt)
    if "name" not in opt:
        opt["name"] = opt.pop("type", "sgd")
    for key in _OPTIMIZER_KEYS:
        if key in recipe:
            opt.setdefault(key, recipe[key])
    if str(opt["name"]).lower() == "momentum":
        opt["name"] = "sgd"
        opt.setdefault("momentum", 0.9)
    batch = recipe.get("batch_size", DEFAULT_RECIPE["batch_size"])
    epochs = int(recipe.get("epochs", recipe.get("max_epochs", DEFAULT_RECIPE["epochs"])))
    schedule = str(recipe.get("schedule", "none"))
    if schedule != "none":
        opt["lr_schedule"] = schedule_rates(recipe, float(opt.get("lr", 0.01)), epochs)
    return {
        "hidden": hidden,
        "activation": str(recipe.get("activation", "relu")),
        "optimizer": opt,
        "batch_size": None if batch in (None, "full") else int(batch),
        "epochs": epochs,
        "backend": str(recipe.get("backend", "auto")),
        "seed": int(recipe.get("seed", 0)),
        "schedule": schedule,
        "recipe": {k: list(v) if isinstance(v, tuple) else v for k, v in recipe.items()},
    }


def schedule_rates(recipe: Mapping, lr0: float, epochs: int) -> list[float]:
    """Learning rate of each epoch under the recipe's schedule, from fastnn's schedule objects.

    ``fastnn.recipes.build`` turns the recipe's ``schedule`` name into callbacks; each
    :class:`fastnn.schedules.LearningRateSchedule` among them gives ``rate(epoch, lr0, epochs)``.
    """
    from ..recipes import build
    from ..schedules import LearningRateSchedule

    _, _, callbacks = build(recipe)
    schedules = [cb for cb in callbacks if isinstance(cb, LearningRateSchedule)]
    if not schedules:
        return [lr0] * epochs
    return [float(schedules[0].rate(e, lr0, epochs)) for e in range(epochs)]


def best_recipe() -> tuple[dict, str]:
    """fastnn's best MNIST configuration and where it came from.

    Returns
    -------
    (dict, str)
        The normalized ``fastnn.recipes.MNIST_98`` and its name.
    """
    from ..recipes import MNIST_98

    return normalize_recipe(MNIST_98), "fastnn.recipes.MNIST_98"


def describe(recipe: Mapping) -> str:
    """A normalized recipe in a few words, for the reports."""
    opt = recipe["optimizer"]
    name = str(opt.get("name", "sgd"))
    words = [f"hidden {'-'.join(map(str, recipe['hidden']))} {recipe['activation']}",
             f"{'Adam' if name == 'adam' else 'SGD'} lr {opt.get('lr')}"]  # fmt: skip
    if opt.get("momentum"):
        words[-1] += f" momentum {opt['momentum']}{' (Nesterov)' if opt.get('nesterov') else ''}"
    if recipe.get("schedule", "none") != "none":
        words.append(f"{recipe['schedule']} schedule")
    batch = recipe["batch_size"]
    words.append(f"batch {'full' if batch is None else batch}, at most {recipe['epochs']} epochs")
    return ", ".join(words)
