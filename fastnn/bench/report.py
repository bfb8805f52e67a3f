"""The benchmark's outputs: console lines, the JSON file, a markdown report, a PNG plot.

The markdown report can also be spliced into a README between the markers
:data:`BEGIN_MARK` and :data:`END_MARK` (``fastnn bench --update-readme``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

BEGIN_MARK = "<!-- fastnn-bench-results:begin -->"
END_MARK = "<!-- fastnn-bench-results:end -->"

# (header, row key, format) of the console and markdown tables.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("impl", "impl", "{}"),
    ("batch", "batch_size", "{}"),
    ("epoch s", "epoch_s", "{:.3f}"),
    ("samples/s", "samples_per_s", "{:,.0f}"),
    ("GFLOP/s", "gflops", "{:.1f}"),
    ("% SGEMM", "pct_of_sgemm", "{:.1f}"),
    ("% limit", "pct_of_limit", "{:.1f}"),
    ("speed-up", "speedup_vs_reference", "{:.2f}x"),
    ("test acc", "test_accuracy", "{:.2%}"),
    ("compile s", "compile_s", "{:.2f}"),
    ("peak RSS MB", "peak_rss_mb", "{:.0f}"),
)

_FLUSH = {True: "yes", False: "no"}  # reports written before the key: "not recorded"


def _cell(row: dict, key: str, fmt: str) -> str:
    value = row.get(key)
    if key == "batch_size" and row.get("full_batch"):
        return f"full ({value})"
    if value is None:
        return "—" if key != "epoch_s" or not row.get("error") else "error"
    return fmt.format(value)


def _width(header: str) -> int:
    return {"impl": 14, "batch": 12, "samples/s": 11}.get(header, max(len(header), 8))


def console_header() -> str:
    """Column titles of the live table."""
    return "  ".join(f"{h:>{_width(h)}}" for h, _, _ in COLUMNS)


def console_line(row: dict) -> str:
    """One row of the live table; errors are shown after it."""
    line = "  ".join(f"{_cell(row, k, f):>{_width(h)}}" for h, k, f in COLUMNS)
    return f"{line}  ! {row['error']}" if row.get("error") else line


def write_json(report: dict, path: str | os.PathLike[str]) -> None:
    """Write the report as indented JSON (the schema is described in benchmarks/README.md)."""
    Path(path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def _versions(report: dict) -> str:
    v = report["machine"]["versions"]
    return ", ".join(f"{k} {v[k]}" for k in v if v[k])


def _busy_md(report: dict) -> list[str]:
    core = report.get("busy_core")
    if core is None:
        return []
    return [f"- **Busy machine:** a competing process kept core {core} fully busy for the "
            "whole run (`--busy-core`)."]  # fmt: skip


def limit_seconds(report: dict) -> float | None:
    """The epoch's limit: the non-zero FLOP count of an epoch at the SGEMM ceiling (None
    when the report has no such count)."""
    c = report["config"]
    if not c.get("nonzero_flops_per_sample") or not report.get("sgemm_gflops"):
        return None
    return c["nonzero_flops_per_sample"] * c["n_train"] / report["sgemm_gflops"] / 1e9


def _limit_md(report: dict) -> list[str]:
    """The non-zero FLOP count and the epoch time it implies at the SGEMM ceiling."""
    c, limit_s = report["config"], limit_seconds(report)
    if limit_s is None:
        return []
    return [
        f"- Work really done: {c['nonzero_flops_per_sample']:,.0f} FLOP per sample with "
        f"{c['nonzero_inputs_per_sample']:.1f} non-zero inputs of {c['layer_sizes'][0]} "
        f"({c['nonzero_flop_formula']}); at the SGEMM ceiling an epoch takes **{limit_s:.3f} s**"
        ' (the limit; "% limit" is that time over the row\'s epoch time).',
    ]


def markdown(report: dict) -> str:
    """The report as markdown: machine, configuration, results per batch size, extras."""
    m, c = report["machine"], report["config"]
    blas = "; ".join(f"{b.get('internal_api')} {b.get('version')} ({b.get('num_threads')} threads)"
                     for b in m["blas"] if b.get("user_api") == "blas")  # fmt: skip
    env = ", ".join(f"{k}={v}" for k, v in m["env"].items()) or "none"
    lines = [
        f"Measured {m['date'][:10]} by `{report.get('command', 'fastnn bench')}` on "
        f"{m['cpu']} ({m['cores']} cores usable, {m['threads']} threads used).",
        "",
        *_busy_md(report),
        f"- Versions: {_versions(report)}.",
        f"- BLAS in the parent process: {blas or 'unknown'}; environment: {env}; fastnn "
        f"trains with denormals flushed: {_FLUSH.get(m.get('flush_denormals'), 'not recorded')}.",
        f"- SGEMM ceiling (float32 {report['sgemm']['size']}² matmul through NumPy, best of "
        f"{report['sgemm']['calls']}): **{report['sgemm_gflops']:.1f} GFLOP/s**.",
        f"- Model: MLP {'-'.join(map(str, c['layer_sizes']))} ({c['activation']}, "
        f"{c['loss']}, {c['optimizer']}, lr {c['lr']}, {c['dtype']}), on {c['data']} "
        f"({c['n_train']:,} training samples, {c['n_test']:,} test samples).",
        f"- Each row: {c['warmup_epochs']} warm-up epoch + {c['epochs']} timed epochs "
        f"(median), × {c['repeats']} repeat(s), "
        + ("each in a fresh process." if c["isolated_processes"] else "in one process."),
        f"- FLOP: {c['flops_per_sample']:,} per sample ({c['flop_formula']}).",
        *_limit_md(report),
        "",
    ]
    headers = [h for h, _, _ in COLUMNS]
    for bs in c["batch_sizes"]:
        rows = [r for r in report["rows"] if r["batch_size"] == bs]
        if not rows:
            continue
        label = f"full batch ({bs})" if rows[0]["full_batch"] else f"batch size {bs}"
        lines += [f"**{label}**, {rows[0]['iterations_per_epoch']:,} steps per epoch", ""]
        lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        for r in rows:
            cells = [_cell(r, k, f) for _, k, f in COLUMNS]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += _startup_md(report) + _tta_md(report)
    for s in report.get("skipped", []):
        lines.append(f"- Not run: `{s['impl']}` ({s['reason']}).")
    errors = [r for r in report["rows"] if r.get("error")]
    for r in errors:
        lines.append(f"- `{r['impl']}` at batch {r['batch_size']} failed: {r['error']}")
    return "\n".join(lines).rstrip() + "\n"


def _startup_md(report: dict) -> list[str]:
    startup = report.get("startup") or {}
    if not startup:
        return []
    kernels = next((e["precompiled_kernels"] for e in startup.values()
                    if "precompiled_kernels" in e), None)  # fmt: skip
    store = ("" if kernels is None else
             f"; numba's cold start read {kernels} kernels from the store of `fastnn compile`"
             if kernels else "; numba had no precompiled store (`fastnn compile`)")  # fmt: skip
    lines = [
        "**Start-up** (import + first epoch − steady epoch, fresh process; cold = empty "
        f"JIT cache, warm = filled cache, scratch = empty cache and no precompiled store{store})",
        "",
        "| impl | batch | import s (warm) | cold s | warm s | scratch s |",
        "|---|---|---|---|---|---|",
    ]

    def fmt(e: dict, phase: str, key: str = "startup_s") -> str:
        if phase not in e:
            return "–"
        return f"{e[phase][key]:.2f}" if key in e[phase] else "error"

    for name, e in startup.items():
        lines.append(f"| {name} | {e['batch_size']} | {fmt(e, 'warm', 'import_s')} | "
                     f"{fmt(e, 'cold')} | {fmt(e, 'warm')} | {fmt(e, 'scratch')} |")  # fmt: skip
    return [*lines, ""]


def _tta_md(report: dict) -> list[str]:
    t = report.get("time_to_accuracy")
    if not t:
        return []
    from .tta import describe

    lines = [
        f"**Time to {t['target']:.1%} test accuracy** (wall clock, data in memory, evaluation "
        f"excluded; {describe(t['config'])}; from {t['source']}; {t['n_train']:,} training "
        "samples)",
        "",
        "| impl | backend | reached | epochs | seconds | final test acc |",
        "|---|---|---|---|---|---|",
    ]
    for r in t["results"]:
        if "error" in r:
            lines.append(f"| {r['impl']} | — | error: {r['error']} | | | |")
            continue
        acc = f"{r['accuracy_curve'][-1]:.2%}" if r["accuracy_curve"] else "—"
        secs = f"{r['seconds']:.1f}" if r["seconds"] is not None else "—"
        lines.append(f"| {r['impl']} | {r.get('backend', '—')} | {'yes' if r['reached'] else 'no'}"
                     f" | {r['epochs']} | {secs} | {acc} |")  # fmt: skip
    return [*lines, ""]


def update_readme(report_md: str, path: str | os.PathLike[str]) -> None:
    """Replace the text between the result markers of ``path`` with ``report_md``.

    Raises
    ------
    ValueError
        The file does not contain both markers, in order.
    """
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    begin, end = text.find(BEGIN_MARK), text.find(END_MARK)
    if begin < 0 or end < begin:
        raise ValueError(f"{p} has no '{BEGIN_MARK}' ... '{END_MARK}' block to replace")
    head = text[: begin + len(BEGIN_MARK)]
    p.write_text(f"{head}\n{report_md}{text[end:]}", encoding="utf-8")


def plot(report: dict, path: str | os.PathLike[str]) -> None:
    """Bar chart of samples/s per implementation, grouped by batch size (log scale), as PNG.

    Needs matplotlib.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    sizes = report["config"]["batch_sizes"]
    impls = list(dict.fromkeys(r["impl"] for r in report["rows"]))
    by_key = {(r["impl"], r["batch_size"]): r.get("samples_per_s") or 0 for r in report["rows"]}
    fig, ax = plt.subplots(figsize=(max(6.0, 2.6 + 1.4 * len(sizes)), 4.2))
    width = 0.8 / max(1, len(impls))
    x = np.arange(len(sizes))
    for i, impl in enumerate(impls):
        ax.bar(x + i * width, [by_key.get((impl, b), 0) for b in sizes], width, label=impl)
    n = report["config"]["n_train"]
    ax.set_xticks(x + width * (len(impls) - 1) / 2,
                  [f"full ({b})" if b >= n else str(b) for b in sizes])  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("training samples / s (higher is better)")
    layers = "-".join(map(str, report["config"]["layer_sizes"]))
    threads = report["machine"]["threads"]
    ax.set_title(f"MLP {layers} on {report['config']['data']}, {threads} threads", fontsize=10)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
