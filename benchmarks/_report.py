"""The printed tables and the chart of a benchmark run's results (the JSON the harness writes)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = ["NAMES", "print_tables", "rows", "write_chart"]

NAMES = {
    "raw": "raw aiohttp",
    "salvo": "salvo",
    "salvo-client": "salvo Client",
    "openai": "openai SDK",
    "litellm": "LiteLLM",
}


def _get(d: Any, *path: str) -> float | None:
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d if isinstance(d, int | float) and not isinstance(d, bool) else None


def rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row of headline figures per system."""
    out = []
    imports = results.get("imports", {})
    for key, res in results.get("systems", {}).items():
        core = res.get("core", {})
        batch = res.get("batch", {})
        imp = imports.get("salvo" if key == "salvo-client" else key, {})
        out.append(
            {
                "key": key,
                "system": NAMES.get(key, key),
                "import_s": _get(imp, "import_s"),
                "import_rss_mb": _get(imp, "rss_mb"),
                "c1_cpu_us": _get(core, "c1", "cpu_us"),
                "c1_per_s": _get(core, "c1", "per_s"),
                "c64_cpu_us": _get(core, "c64", "cpu_us"),
                "c64_per_s": _get(core, "c64", "per_s"),
                "chunk_cpu_us": _get(core, "stream", "cpu_us"),
                "burst_chunk_cpu_us": _get(core, "stream_burst", "cpu_us"),
                "race_ms": _get(core, "race", "return_ms"),
                "race_overhead_ms": _get(core, "race", "overhead_ms"),
                "race_after_answer_ms": _get(core, "race", "after_answer_ms"),
                "race_loser_close_ms": _get(core, "race", "loser_close_ms_max"),
                "race_losers_cut": (core.get("race") or {}).get("losers_cut"),
                "gather_overhead_ms": _get(core, "gather", "overhead_ms"),
                "batch_wall_s": _get(batch, "wall_s"),
                "batch_cpu_s": _get(batch, "cpu_s"),
                "batch_peak_rss_mb": _get(batch, "peak_rss_mb"),
                "fake_c64_cpu_us": _get(core, "c64", "fake_cpu_us"),
                "fake_c64_util": _get(core, "c64", "fake_util"),
                "error": core.get("error") or batch.get("error"),
            }
        )
    return out


def _fmt(v: Any, spec: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    return format(v, spec)


COLUMNS = [
    ("import s", "import_s", ".3f"),
    ("RSS MB", "import_rss_mb", ".0f"),
    ("c1 µs/req", "c1_cpu_us", ".0f"),
    ("c1 req/s", "c1_per_s", ".0f"),
    ("c64 µs/req", "c64_cpu_us", ".0f"),
    ("c64 req/s", "c64_per_s", ".0f"),
    ("µs/chunk", "chunk_cpu_us", ".1f"),
    ("burst µs/chunk", "burst_chunk_cpu_us", ".1f"),
    ("race ms", "race_ms", ".1f"),
    ("after win ms", "race_after_answer_ms", ".2f"),
    ("losers closed ms", "race_loser_close_ms", ".2f"),
    ("losers cut", "race_losers_cut", ""),
    ("gather +ms", "gather_overhead_ms", ".1f"),
    ("10k batch s", "batch_wall_s", ".2f"),
    ("batch CPU s", "batch_cpu_s", ".2f"),
    ("batch peak MB", "batch_peak_rss_mb", ".0f"),
]
RATIO_KEYS = [
    ("import s", "import_s"),
    ("c1 µs/req", "c1_cpu_us"),
    ("c64 µs/req", "c64_cpu_us"),
    ("µs/chunk", "chunk_cpu_us"),
    ("burst µs/chunk", "burst_chunk_cpu_us"),
    ("batch CPU s", "batch_cpu_s"),
]


def _table(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(
            h.rjust(w) if i else h.ljust(w)
            for i, (h, w) in enumerate(zip(header, widths, strict=True))
        )
    ]
    lines.append("  ".join("-" * w for w in widths))
    for r in body:
        lines.append(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return "\n".join(lines)


def print_tables(results: dict[str, Any]) -> None:
    rs = rows(results)
    meta = results.get("meta", {})
    print()
    lat = ", ".join(f"{v:.0f}" for v in meta.get("race_latencies_ms", {}).values())
    print(
        f"Python {meta.get('python')} on {meta.get('cpus')} CPUs; client CPU time per request "
        f"(process time / requests); streams of {meta.get('stream_chunks')} chunks; race of "
        f"models answering in {lat} ms."
    )
    print()
    half = len(COLUMNS) // 2
    for cols in (COLUMNS[:half], COLUMNS[half:]):
        header = ["system", *(c[0] for c in cols)]
        body = [[r["system"], *(_fmt(r[k], spec) for _, k, spec in cols)] for r in rs]
        print(_table(header, body))
        print()
    raw = next((r for r in rs if r["key"] == "raw"), None)
    if raw is not None:
        header = ["x raw aiohttp", *(c[0] for c in RATIO_KEYS)]
        body = []
        for r in rs:
            cells = [r["system"]]
            for _, k in RATIO_KEYS:
                a, b = r[k], raw[k]
                cells.append(_fmt(a / b if a is not None and b else None, ".2f"))
            body.append(cells)
        print(_table(header, body))
        print()
    fk = [r for r in rs if r["fake_c64_cpu_us"] is not None]
    if fk:
        print(
            "the fake server's own CPU per request at c64 (another process, another core): "
            + ", ".join(
                f"{r['system']} {r['fake_c64_cpu_us']:.0f} µs ({r['fake_c64_util']:.0%} of a core)"
                for r in fk
            )
            + ". Near 100% of a core, the server bounds req/s; CPU per request is the figure."
        )
    print(
        "race ms: from the call to the race's return (the fastest model answers after "
        "50 ms); after win ms: from the server's last byte of the winner to the return; "
        "losers closed ms: the last loser's close, as the server saw it, after the return "
        "(negative: before); losers cut: every loser was disconnected, not answered in full."
    )
    imp = results.get("imports", {})
    if "python" in imp:
        print(
            f"bare interpreter: {imp['python']['rss_mb']:.0f} MB RSS"
            + (
                f"; `import salvo, aiohttp` {imp['salvo+aiohttp']['import_s']:.3f} s, "
                f"{imp['salvo+aiohttp']['rss_mb']:.0f} MB"
                if "salvo+aiohttp" in imp
                else ""
            )
        )
    for r in rs:
        if r["error"]:
            print(f"{r['system']}: {r['error']}")


def write_chart(results: dict[str, Any], path: Path) -> str:
    """Draw the headline figures as bars (log scale), one panel per metric."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "chart skipped: matplotlib is not installed (pip install -e '.[bench]')."
    rs = rows(results)
    panels = [
        ("client CPU per request, c=64 (µs)", "c64_cpu_us"),
        ("client CPU per stream chunk (µs)", "chunk_cpu_us"),
        ("import time (s)", "import_s"),
        ("10,000-prompt batch, wall (s)", "batch_wall_s"),
    ]
    panels = [p for p in panels if any(r[p[1]] is not None for r in rs)]
    cols = 2 if len(panels) > 2 else len(panels)
    nrows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 2.9 * nrows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    colors = {"salvo": "#2b7bba", "salvo-client": "#5fa8e0", "raw": "#7a7a7a"}
    for ax, (title, key) in zip(axes.flat, panels, strict=False):
        data = [(r["system"], r[key], r["key"]) for r in rs if r[key] is not None]
        names = [d[0] for d in data][::-1]
        vals = [d[1] for d in data][::-1]
        ax.barh(names, vals, color=[colors.get(d[2], "#d9822b") for d in data][::-1])
        ax.set_xscale("log")
        ax.set_title(title, fontsize=10)
        raw = next((d[1] for d in data if d[2] == "raw"), None)
        for i, v in enumerate(vals):
            label = f" {v:,.0f}" if v >= 10 else f" {v:.2f}"
            if raw:
                label += f"  ({v / raw:.2g}x)"
            ax.text(v, i, label, va="center", fontsize=8)
        ax.margins(x=0.6)
        ax.tick_params(labelsize=8)
    fig.suptitle("salvo benchmark: local fake OpenAI server, lower is better", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"chart: {path}"
