"""Sweep results: one row per trial, in JSON, CSV and markdown, written while trials finish.

A row: ``trial`` (index of the configuration in the sweep), ``status`` ("ok"; "failed": the
trial raised, ``error`` says what; "lost": its worker died or the cluster went away),
``config``, ``metrics`` (``fastnn.sweep.METRICS``), ``epochs`` completed, ``seconds``,
``worker``, ``threads`` (the counts the trial saw, ``fastnn.sweep.trial.threads_seen``),
``error`` and, for finished trials, ``history`` (per-epoch loss, accuracy, seconds, lr).

Files: ``PATH.json`` (rewritten atomically when due and at the end: at most once per
``flush_seconds``, and never more than a tenth of the time, so a 10,000-trial sweep does not
rewrite a growing file 10,000 times), and beside it ``PATH.csv`` and
``PATH.md``, appended row by row (the markdown is rewritten best-first at the end). ``resume``
reads the JSON back: rows "ok" and "failed" are kept and their configurations skipped (a
failed trial fails again with the same config and seed); "lost" rows run again.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import secrets
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .space import KEYS, config_key, format_value
from .trial import METRICS

FORMAT = "fastnn.sweep"
FORMAT_VERSION = 1
DONE = ("ok", "failed")
THREAD_KEYS = ("fastnn", "blas", "openmp", "numba")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _json_safe(value: Any) -> Any:
    """NaN and infinity become null: the file stays standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The record of a sweep results JSON (``rows`` and the sweep's settings).

    Raises
    ------
    ValueError
        Not a fastnn sweep results file.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable sweep results file ({exc})") from exc
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(f"{path} is not a fastnn sweep results file")
    rows = record.get("rows")
    if not isinstance(rows, list) or not all(
        isinstance(r, dict) and isinstance(r.get("config"), dict) and "status" in r for r in rows
    ):
        raise ValueError(f"{path}: malformed rows")
    return record


def flat_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row as one CSV line: metrics, thread counts and every config key in its own column."""
    threads = row.get("threads") or {}

    def joined(key: str) -> str:
        value = threads.get(key, "")
        return "/".join(map(str, value)) if isinstance(value, list) else str(value)

    metrics = row.get("metrics") or {}
    flat = {"trial": row["trial"], "status": row["status"],
            **{m: metrics.get(m) for m in METRICS}, "epochs_run": row.get("epochs"),
            "seconds": row.get("seconds"), "worker": row.get("worker"),
            **{f"threads_{k}": joined(k) for k in THREAD_KEYS}}  # fmt: skip
    flat.update({k: format_value(k, row["config"].get(k)) for k in KEYS})
    flat["error"] = row.get("error") or ""
    return flat


class SweepResults:
    """The rows of one sweep, kept in memory and streamed to files as they arrive.

    Parameters
    ----------
    path : str or path-like or None
        The JSON file (must end in ``.json``); the CSV and markdown go beside it. None: no files.
    metric : str
        The metric the sweep optimizes (first metric column of the markdown).
    columns : sequence of str
        Config keys the markdown shows (the keys the sweep varies).
    meta : dict
        Settings stored in the JSON (``data`` is compared on ``resume``).
    resume : bool
        Continue an existing file: keep its finished rows.
    overwrite : bool
        Replace an existing file. Without ``resume`` or ``overwrite`` an existing file is an
        error, so a finished sweep is never thrown away by accident.
    flush_seconds : float, default 1.0
        Least time between two rewrites of the JSON (and at least 10 times the last rewrite's
        duration, so writing a large file takes at most a tenth of the time).
    """

    def __init__(
        self, path: str | os.PathLike[str] | None, *, metric: str, columns: Sequence[str],
        meta: dict[str, Any], resume: bool = False, overwrite: bool = False,
        flush_seconds: float = 1.0,
    ) -> None:  # fmt: skip
        self.metric, self.columns, self.meta = metric, list(columns), dict(meta)
        self.flush_seconds = flush_seconds
        self.rows: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.json_path = self.csv_path = self.md_path = None
        if path is None:
            return
        self.json_path = Path(path)
        if self.json_path.suffix != ".json":
            raise ValueError(f"results path must end in .json, got {str(path)!r}")
        self.csv_path = self.json_path.with_suffix(".csv")
        self.md_path = self.json_path.with_suffix(".md")
        if self.json_path.exists():
            if resume:
                self._resume()
            elif not overwrite:
                raise FileExistsError(f"{self.json_path} exists: resume continues that sweep, "
                                      "overwrite replaces it")  # fmt: skip
        self._last_flush, self._flush_cost = 0.0, 0.0
        self._rewrite_all()

    def _resume(self) -> None:
        record = load(self.json_path)
        old, new = record.get("meta", {}).get("data"), self.meta.get("data")
        if old is not None and new is not None and old != new:
            raise ValueError(f"{self.json_path} was made on other data ({old}), not {new}: "
                             "it cannot be resumed with this data")  # fmt: skip
        self.rows = [r for r in record["rows"] if r["status"] in DONE]
        self.best = record.get("best")

    def done(self) -> set[str]:
        """Config keys (``config_key``) of the rows ``resume`` skips."""
        return {config_key(r["config"]) for r in self.rows if r["status"] in DONE}

    def add(self, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Append rows: to memory, to the CSV and markdown now, to the JSON when it is due.

        Returns the rows as stored (non-finite numbers made null).
        """
        rows = [_json_safe(r) for r in rows]
        self.rows.extend(rows)
        if self.json_path is None or not rows:
            return rows
        with open(self.csv_path, "a", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(flat_row(rows[0])))
            writer.writerows(flat_row(r) for r in rows)
        with open(self.md_path, "a", encoding="utf-8") as f:
            f.write("".join(self._md_line(r) + "\n" for r in rows))
        if time.monotonic() - self._last_flush >= max(self.flush_seconds, 10 * self._flush_cost):
            self.write_json()
        return rows

    def write_json(self) -> None:
        if self.json_path is None:
            return
        record = {"format": FORMAT, "format_version": FORMAT_VERSION, "metric": self.metric,
                  "goal": METRICS[self.metric], "meta": self.meta, "best": self.best,
                  "rows": self.rows}  # fmt: skip
        t0 = time.monotonic()
        write_atomic(self.json_path, json.dumps(_json_safe(record), indent=1))
        self._last_flush = time.monotonic()
        self._flush_cost = self._last_flush - t0

    def close(self) -> None:
        """Final JSON, and the markdown rewritten best first."""
        if self.json_path is None:
            return
        self.write_json()
        goal = METRICS[self.metric]

        def rank(row: dict[str, Any]) -> tuple[int, float]:
            value = (row.get("metrics") or {}).get(self.metric)
            if value is None:
                return (1, 0.0)
            return (0, -value if goal == "max" else value)

        write_atomic(self.md_path, self._markdown(sorted(self.rows, key=rank)))

    # -- the text files ------------------------------------------------------------------
    def _md_columns(self) -> list[str]:
        metrics = [self.metric, *(m for m in METRICS if m != self.metric)]
        return ["trial", "status", *metrics, *self.columns, "epochs run", "seconds", "worker",
                "BLAS threads", "error"]  # fmt: skip

    def _md_line(self, row: dict[str, Any]) -> str:
        flat = flat_row(row)
        metrics = [self.metric, *(m for m in METRICS if m != self.metric)]
        cells = [str(row["trial"]), row["status"]]
        cells += ["" if flat[m] is None else f"{flat[m]:.4f}" for m in metrics]
        cells += [flat[k] for k in self.columns]
        seconds = "" if flat["seconds"] is None else f"{flat['seconds']:.2f}"
        cells += [str(flat["epochs_run"]), seconds, str(flat["worker"]), flat["threads_blas"]]
        cells.append(flat["error"].replace("|", "\\|").replace("\n", " "))
        return "| " + " | ".join(cells) + " |"

    def _markdown(self, rows: Sequence[dict[str, Any]]) -> str:
        header = self._md_columns()
        lines = [f"# fastnn sweep: {self.metric} ({METRICS[self.metric]})", "",
                 "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]  # fmt: skip
        return "\n".join(lines + [self._md_line(r) for r in rows]) + "\n"

    def _rewrite_all(self) -> None:
        """Start the three files from the rows kept so far (none, or those of a resume)."""
        buffer = io.StringIO()
        fields = list(flat_row({"trial": 0, "status": "", "config": {}}))
        writer = csv.DictWriter(buffer, fieldnames=fields)
        writer.writeheader()
        writer.writerows(flat_row(r) for r in self.rows)
        write_atomic(self.csv_path, buffer.getvalue())
        write_atomic(self.md_path, self._markdown(self.rows))
        self.write_json()
