"""`mixtui models`: every model with its size, parameters, local state and memory fit."""

from __future__ import annotations

import json
import sys
from typing import Any

from mixtui.app.bench.machine import speeds_here
from mixtui.app.catalog import describe
from mixtui.core.types import DEFAULT_CONTEXT
from mixtui.planner import memory_budget
from mixtui.registry.loader import load_registry


def _billions(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e8 else f"{n / 1e6:.1f} M"


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _need(row: dict[str, Any]) -> str:
    """The memory a model needs and its share of the budget, e.g. "29.4 GB (184%)"."""
    share = 100 * row["need_bytes"] / max(row["budget_bytes"], 1)
    return f"{_size(row['need_bytes'])} ({share:.0f}%)"


def _speed(measured: dict[str, Any] | None) -> str:
    """What `mixtui bench` measured here, e.g. "≈ 23 tok/s (synthetic)"; "" if never run."""
    if not measured:
        return ""
    tps = float(measured["decode_tps"])
    how = " (synthetic)" if measured.get("synthetic") else ""
    return f"≈ {tps:.0f} tok/s{how}" if tps >= 10 else f"≈ {tps:.1f} tok/s{how}"


def _kib(n: int) -> str:
    return f"{n / 1024:g} KiB"


def run(as_json: bool) -> int:
    budget = memory_budget()
    registry = load_registry()
    speeds = speeds_here()
    rows = [describe(spec, budget, registry, speeds) for spec in registry.values()]
    if as_json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    header = ("key", "params", "active", "weights", "KV/token", "need", "state", "fit",
              "decode here")
    table = [header] + [
        (r["key"], _billions(r["total_params"]), _billions(r["active_params"]),
         _size(r["weight_bytes"]), _kib(r["kv_bytes_per_token"]), _need(r), r["state"],
         r["fit"], _speed(r["measured"]))
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    differ = [r for r in rows if r["card"] and abs(r["card"]["active_params"]
                                                  - r["active_params"]) > 0.03 * r["active_params"]]
    if differ:
        print("\nactive = every parameter one token uses, embeddings included; model cards that "
              "count another way:")
        for r in differ:
            card = r["card"]
            print(f"  {r['key']}: {_billions(card['total_params'])}, "
                  f"{_billions(card['active_params'])} active"
                  + (f" ({card['note']})" if card["note"] else ""))
    if any(r["measured"] for r in rows):
        print("\ndecode here = the last decode speed `mixtui bench` measured on this machine "
              "(synthetic: random weights in the real layout, nothing downloaded).")
    print(f"\nmemory budget: {_size(budget.bytes)} ({budget.source}); need = weights + KV "
          f"cache at {DEFAULT_CONTEXT} tokens + 10 % working margin, with its share of the "
          "budget; over 85 % is tight.")
    return 0
