"""A benchmark report in the four formats `mixtui bench` and the compare screen export:
an aligned text table, Markdown, CSV and JSON. The same figures in each; the machine-readable
ones (CSV, JSON) carry raw numbers, the others the units a person reads."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any, Literal

from mixtui.app.bench.figures import BenchReport, BenchRow, Spread
from mixtui.core.units import gb

Format = Literal["table", "md", "csv", "json"]
FORMATS: tuple[Format, ...] = ("table", "md", "csv", "json")
SUFFIXES: dict[Format, str] = {"table": ".txt", "md": ".md", "csv": ".csv", "json": ".json"}

# Every row's fields, in the order CSV columns and JSON keys come in.
FIELDS = ("model", "name", "experts_per_token", "ttft_s", "ttft_s_min", "ttft_s_max",
          "prompt_tps", "prompt_tps_min", "prompt_tps_max", "decode_tps", "decode_tps_min",
          "decode_tps_max", "peak_memory_bytes", "weight_bytes", "kv_bytes_per_token",
          "total_params", "active_params", "bytes_per_token", "bandwidth_gbps",
          "roofline_fraction", "answer_300_s", "synthetic", "layers_run", "layers_total",
          "extrapolated", "perplexity", "perplexity_note", "error", "error_code")


def row_record(row: BenchRow) -> dict[str, Any]:
    """A row as flat fields: each spread as its median, `_min` and `_max`."""
    record: dict[str, Any] = {}
    for name in FIELDS:
        base = name.removesuffix("_min").removesuffix("_max")
        value = getattr(row, base)
        if isinstance(value, Spread):
            value = value.low if name.endswith("_min") else (
                value.high if name.endswith("_max") else value.median)
        record[name] = value
    return record


def header_record(report: BenchReport) -> dict[str, Any]:
    m = report.machine
    return {
        "machine": {"system": m.system, "cpu": m.cpu, "cores": m.cores,
                    "memory_bytes": m.memory_bytes, "chip": m.chip},
        "backend": m.backend, "device": m.bandwidth_device, "versions": m.versions,
        "bandwidth_gbps": m.bandwidth_gbps, "published_bandwidth_gbps": m.published_gbps,
        "prompt": report.prompt, "prompt_tokens": report.prompt_tokens,
        "gen_tokens": report.gen_tokens, "runs": report.runs, "cancelled": report.cancelled,
    }


def to_json(report: BenchReport) -> str:
    return json.dumps({**header_record(report), "rows": [row_record(r) for r in report.rows],
                       "findings": list(report.findings)}, indent=1, ensure_ascii=False)


def to_csv(report: BenchReport) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in report.rows:
        writer.writerow({k: "" if v is None else v for k, v in row_record(row).items()})
    return out.getvalue()


# -- for people ----------------------------------------------------------------------------------
def _num(x: float) -> str:
    """Three significant figures (whole numbers from 100 on): 1,027, 23.4, 4.21, 0.0198."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _params(n: int) -> str:
    return f"{n / 1e9:.1f} B" if n >= 1e9 else f"{n / 1e6:.1f} M"


def _spread(s: Spread | None, fmt: Callable[[float], str] = _num) -> str:
    if s is None:
        return "—"
    if s.low == s.high:
        return fmt(s.median)
    return f"{fmt(s.median)} ({fmt(s.low)}–{fmt(s.high)})"


def _seconds(x: float) -> str:
    if x < 60:
        return f"{x:.2f} s" if x < 10 else f"{x:.0f} s"
    return f"{x / 60:.1f} min" if x < 3600 else f"{x / 3600:.1f} h"


def note(row: BenchRow) -> str:
    """What a reader must know about a row: synthetic, extrapolated from how many layers."""
    parts = []
    if row.synthetic:
        parts.append("synthetic")
    if row.extrapolated:
        parts.append(f"extrapolated from {max(1, row.layers_run // 2)} and {row.layers_run} "
                     f"of {row.layers_total} layers")
    if row.perplexity is None and row.perplexity_note:
        parts.append(f"perplexity {row.perplexity_note}")
    return ", ".join(parts)


COLUMNS = ("model", "k", "TTFT s", "prompt tok/s", "decode tok/s", "peak mem", "weights",
           "params (active)", "read/token", "GB/s", "roofline", "300-token wait",
           "perplexity", "note")
_PERPLEXITY = COLUMNS.index("perplexity")
# the terminal table's shorter headings, so that it fits 140 columns
_SHORT = {"prompt tok/s": "prompt t/s", "decode tok/s": "decode t/s", "peak mem": "peak",
          "read/token": "read/tok", "roofline": "roof", "300-token wait": "300-tok wait",
          "perplexity": "ppl"}


def cells(row: BenchRow, compact: bool = False) -> tuple[str, ...]:
    """The row as COLUMNS' cells (an error row: its reason in the note); `compact`: the
    time to the first token and the prompt speed as medians only, for a terminal."""
    k = "—" if row.experts_per_token is None else str(row.experts_per_token)
    params = (f"{_params(row.total_params)} ({_params(row.active_params)})"
              if row.total_params else "—")
    if not row.ok:
        return (row.model, k, "—", "—", "—", "—", gb(row.weight_bytes) if row.weight_bytes
                else "—", params, "—", "—", "—", "—", "—", f"failed: {row.error}")
    mark = "≈ " if row.extrapolated else ""
    ttft, prompt = row.ttft_s, row.prompt_tps
    if compact and ttft is not None and prompt is not None:
        ttft, prompt = (Spread(x.median, x.median, x.median) for x in (ttft, prompt))
    return (
        row.model, k, mark + _spread(ttft),
        mark + _spread(prompt), mark + _spread(row.decode_tps),
        mark + gb(row.peak_memory_bytes or 0), gb(row.weight_bytes), params,
        gb(row.bytes_per_token),
        f"{row.bandwidth_gbps:.1f}" if row.bandwidth_gbps is not None else "—",
        f"{100 * row.roofline_fraction:.0f} %" if row.roofline_fraction is not None else "—",
        _seconds(row.answer_300_s) if row.answer_300_s is not None else "—",
        f"{row.perplexity:.2f}" if row.perplexity is not None else "—", note(row))


def header_lines(report: BenchReport) -> list[str]:
    m = report.machine
    versions = ", ".join(f"{k} {v}" for k, v in m.versions.items())
    prompt = (report.prompt if len(report.prompt) <= 60 else report.prompt[:57] + "…")
    lines = [f"machine: {m.summary}",
             f"versions: {versions}",
             f"prompt: {report.prompt_tokens} tokens ({prompt}), {report.gen_tokens} generated, "
             f"greedy; {report.runs} run{'s' if report.runs != 1 else ''} after a warm-up: "
             "medians (lowest–highest)"]
    if report.cancelled:
        lines.append("cancelled: the rows finished before the stop")
    return lines


def _layout(report: BenchReport, compact: bool) -> tuple[list[str], list[tuple[str, ...]],
                                                         list[str]]:
    """Columns, rows and the failures said under the table (once per model and reason):
    the perplexity column only where a row has one."""
    keep = [i for i in range(len(COLUMNS))
            if i != _PERPLEXITY or any(r.perplexity is not None for r in report.rows)]
    rows, failures = [], []
    said: dict[tuple[str, str], list[str]] = {}
    for row in report.rows:
        row_cells = list(cells(row, compact))
        if not row.ok:
            row_cells[-1] = "failed ↓"
            said.setdefault((row.model, row.error or ""), []).append(
                "—" if row.experts_per_token is None else str(row.experts_per_token))
        rows.append(tuple(row_cells[i] for i in keep))
    for (model, reason), ks in said.items():
        which = f" (k {', '.join(ks)})" if ks != ["—"] and len(ks) > 1 else ""
        failures.append(f"{model}{which} failed: {reason}")
    return [COLUMNS[i] for i in keep], rows, failures


def to_table(report: BenchReport) -> str:
    columns, rows, failures = _layout(report, compact=True)
    table = [tuple(_SHORT.get(c, c) for c in columns)] + rows
    widths = [max(len(row[i]) for row in table) for i in range(len(columns) - 1)]
    lines = header_lines(report) + [""]
    for row in table:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False))
                     + "  " + row[-1])
    tail = ([""] + failures if failures else []) + [""] + list(report.findings)
    return "\n".join(x.rstrip() for x in lines + tail) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(report: BenchReport) -> str:
    columns, rows, failures = _layout(report, compact=False)
    lines = [f"- {_md(x)}" for x in header_lines(report)] + [""]
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        lines.append("| " + " | ".join(_md(c) for c in row) + " |")
    lines.append("")
    lines += [f"- {_md(x)}" for x in failures] + ([""] if failures else [])
    lines += list(report.findings)
    return "\n".join(lines) + "\n"


def render(report: BenchReport, fmt: Format) -> str:
    return {"table": to_table, "md": to_markdown, "csv": to_csv, "json": to_json}[fmt](report)
