"""Search spaces over the keys of a recipe: every point of a grid, or random draws from it.

A *space* maps recipe keys (``KEYS``: everything ``fastnn.recipes.build`` and the trial read,
``hidden`` and ``seed`` included) to the values to try: a list (grid values, or the choices of
a random search) or a distribution (``Uniform``, ``LogUniform``; random search only). Any other
value is one fixed value. Keys the space does not name come from a base recipe, by default
``fastnn.recipes.MNIST_98``.

The space checks key names and value types at once (a typo fails before any training); whether
a value makes sense (``lr=-1``, an unknown activation) is for the trial to say, and such a trial
becomes a row with its error.

``seed`` is a repeat, not a hyper-parameter: in a random search every sampled configuration
runs once per listed seed.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..recipes import MNIST_98

#: Defaults of every key a configuration has (``build`` reads ``weight_decay`` when present).
BASE: dict[str, Any] = {**MNIST_98, "hidden": list(MNIST_98["hidden"]), "weight_decay": 0.0}
KEYS: tuple[str, ...] = tuple(BASE)
# Keys whose value may be None: full-batch gradient descent, an unseeded run.
_NULLABLE = ("batch_size", "seed")


@dataclass(frozen=True)
class Uniform:
    """Uniform on ``[low, high]`` (random search only; rounded for integer keys)."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"{type(self).__name__} needs finite low < high, got {self}")

    def draw(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))


@dataclass(frozen=True)
class LogUniform(Uniform):
    """Log-uniform on ``[low, high]``, ``0 < low``: equal odds per decade (learning rates)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.low <= 0:
            raise ValueError(f"LogUniform needs low > 0, got {self}")

    def draw(self, rng: np.random.Generator) -> float:
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))


def _normalize(key: str, value: object) -> object:
    """``value`` as the JSON-ready type of ``key`` (hidden: a list of ints), or ValueError."""
    if key not in BASE:
        raise ValueError(f"unknown sweep key {key!r}; valid keys: {', '.join(KEYS)}")
    kind = type(BASE[key])
    if value is None and key in _NULLABLE:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if kind is list:  # hidden: one width, or a sequence of widths (empty: no hidden layer)
        widths = [value] if isinstance(value, (int, np.integer)) else value
        if isinstance(widths, (str, bytes)) or not isinstance(widths, (Sequence, np.ndarray)):
            raise ValueError(f"hidden: expected widths such as [128, 64], got {value!r}")
        return [_normalize_int(key, w) for w in widths]
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{key}: expected True or False, got {value!r}")
        return value
    if kind is int:
        return _normalize_int(key, value)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"{key}: expected a name, got {value!r}")
    return value


def _normalize_int(key: str, value: object) -> int:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ValueError(f"{key}: expected an integer, got {value!r}")
    return int(value)


def complete(config: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A full configuration: ``base`` (default ``BASE``) updated with ``config``, normalized.

    Raises
    ------
    ValueError
        An unknown key or a value of the wrong type.
    """
    merged = {**BASE, **(base or {}), **config}
    return {key: _normalize(key, value) for key, value in merged.items()}


def config_key(config: Mapping[str, Any]) -> str:
    """The identity of a configuration (canonical JSON): what ``resume`` compares."""
    return json.dumps(complete(config), sort_keys=True)


def _choices(key: str, values: object) -> list | Uniform:
    """A space entry as a list of distinct normalized values, or a distribution."""
    if isinstance(values, Uniform):
        if type(BASE.get(key, "")) not in (int, float):
            raise ValueError(f"{key}: a distribution needs a numeric key, not {key!r}")
        return values
    many = isinstance(values, list) or (isinstance(values, np.ndarray) and values.ndim == 1)
    items = [_normalize(key, v) for v in (values if many else [values])]
    if not items:
        raise ValueError(f"{key}: no values to try")
    seen = [json.dumps(v) for v in items]
    if len(set(seen)) != len(seen):
        raise ValueError(f"{key}: a value is listed twice in {values!r}")
    return items


def _parse_space(space: Mapping[str, Any]) -> dict[str, list | Uniform]:
    if not isinstance(space, Mapping):
        kind = type(space).__name__
        raise TypeError(f"a space is a mapping of recipe keys to values, got {kind}")
    return {key: _choices(key, values) for key, values in space.items()}


def grid(space: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every configuration of a grid, the first key varying slowest.

    Parameters
    ----------
    space : mapping
        Recipe key -> list of values (or one fixed value), e.g.
        ``{"hidden": [64, 128], "lr": [0.05, 0.1], "seed": [0, 1]}``.
    base : mapping, optional
        Values of the keys the space does not name (default ``BASE``, i.e. ``MNIST_98``).

    Returns
    -------
    list of dict
        ``prod(len(values))`` complete configurations.
    """
    entries = _parse_space(space)
    for key, values in entries.items():
        if isinstance(values, Uniform):
            raise ValueError(f"{key}: a grid needs a list of values; {values} needs random search")
    keys = list(entries)
    return [complete(dict(zip(keys, point, strict=True)), base)
            for point in itertools.product(*entries.values())]  # fmt: skip


def sample(
    space: Mapping[str, Any],
    n_trials: int,
    base: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """``n_trials`` random configurations (times the number of listed seeds).

    Lists are drawn uniformly; when every entry is a list, the draws are distinct points of
    the grid (no trial is wasted on a duplicate). ``seed`` values are not drawn: each draw runs
    once per listed seed. The same arguments give the same configurations, which is what lets
    ``resume`` recognise them.

    Parameters
    ----------
    space : mapping
        Recipe key -> list, distribution (``Uniform``, ``LogUniform``) or fixed value.
    n_trials : int
        Configurations to draw, >= 1.
    base : mapping, optional
    seed : int, default 0
        Seed of the draws (not the training seed of a trial).

    Returns
    -------
    list of dict
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ValueError(f"n_trials must be an integer >= 1, got {n_trials!r}")
    entries = _parse_space(space)
    seeds = entries.pop("seed", [complete({}, base).get("seed")])
    if isinstance(seeds, Uniform):
        raise ValueError("seed: list the seeds to repeat each configuration with")
    rng = np.random.default_rng(seed)
    keys = list(entries)
    if all(isinstance(v, list) for v in entries.values()):
        sizes = [len(v) for v in entries.values()]
        total = math.prod(sizes)
        if n_trials > total:
            raise ValueError(f"random search of {n_trials} trials over a grid of only {total} "
                             "configurations: run the whole grid instead")  # fmt: skip
        points = []
        for flat in rng.choice(total, size=n_trials, replace=False).tolist():
            point = []
            for values, size in zip(reversed(list(entries.values())), reversed(sizes), strict=True):
                flat, i = divmod(flat, size)
                point.append(values[i])
            points.append(point[::-1])
    else:
        points = [[_draw(key, v, rng) for key, v in entries.items()] for _ in range(n_trials)]
    return [complete({**dict(zip(keys, point, strict=True)), "seed": s}, base)
            for point in points for s in seeds]  # fmt: skip


def _draw(key: str, values: list | Uniform, rng: np.random.Generator) -> object:
    if isinstance(values, list):
        return values[int(rng.integers(len(values)))]
    x = values.draw(rng)
    return round(x) if type(BASE[key]) is int else x


def _parse_scalar(key: str, text: str) -> object:
    """One CLI value of ``key``: hidden "128x64" / "none", batch_size "full", bools, numbers."""
    kind = type(BASE[key])
    low = text.strip().lower()
    try:
        if kind is list:
            return [] if low in ("none", "0", "") else [int(w) for w in low.split("x")]
        if key in _NULLABLE and low in ("full", "none"):
            return None
        if kind is bool:
            return {"true": True, "1": True, "yes": True,
                    "false": False, "0": False, "no": False}[low]  # fmt: skip
        if kind is int:
            return int(low)
        if kind is float:
            return float(low)
    except (ValueError, KeyError):
        hint = " (widths like 128x64, values separated by commas)" if kind is list else ""
        raise ValueError(f"{key}: cannot read {text!r} as a {kind.__name__}{hint}") from None
    return text.strip()


def parse_assignment(text: str) -> tuple[str, list | Uniform]:
    """``"KEY=V1,V2"`` (or ``"KEY=loguniform:LO:HI"`` / ``"KEY=uniform:LO:HI"``) of the CLI.

    Hidden layers are written ``128x64`` (``none`` for no hidden layer), since commas separate
    the values: ``hidden=64,128x64`` is two architectures.

    Returns
    -------
    (key, list of values or distribution)
    """
    key, sep, rest = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key:
        raise ValueError(f"expected KEY=VALUE[,VALUE...], got {text!r}")
    if key not in BASE:
        raise ValueError(f"unknown sweep key {key!r}; valid keys: {', '.join(KEYS)}")
    name, _, bounds = rest.partition(":")
    dists = {"uniform": Uniform, "loguniform": LogUniform}
    if name.strip().lower() in dists:
        try:
            low, high = (float(b) for b in bounds.split(":"))
        except ValueError:
            raise ValueError(f"{key}: expected {name}:LOW:HIGH, got {rest!r}") from None
        return key, _choices(key, dists[name.strip().lower()](low, high))
    return key, _choices(key, [_parse_scalar(key, part) for part in rest.split(",")])


def format_value(key: str, value: object) -> str:
    """A value as the CLI writes it: hidden ``128x64`` / ``none``, batch_size ``full``."""
    if isinstance(value, list):
        return "x".join(map(str, value)) or "none"
    if value is None:
        return "full" if key == "batch_size" else "none"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
