"""A trace file (docs/trace-format.md, versions 1 and 2) as the routing the statistics read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mixtui.app.analysis.stats import NO_EXPERT, Routing
from mixtui.app.trace import bad_line, read_trace_lines
from mixtui.core.errors import UsageError


class NoRouting(UsageError):
    """A trace whose tokens carry no routing (`--no-routing`, or a dense model)."""

    code = "no-routing"


@dataclass(frozen=True)
class TraceRouting:
    path: Path
    header: dict[str, Any]
    routing: Routing

    @property
    def model(self) -> str:
        return str(self.header.get("model") or "")


def _array(value: Any, kind: str) -> np.ndarray | None:
    """`value` as a 2-D array of ints ("i") or numbers ("f"); None if it is not one."""
    try:
        a = np.array(value)
    except ValueError:  # ragged lists
        return None
    if a.ndim != 2 or a.size == 0:
        return None
    if kind == "i":
        return a if a.dtype.kind == "i" else None
    return a.astype(np.float64) if a.dtype.kind in "if" else None


def read_routing(path: Path) -> TraceRouting:
    """The routing of every token of a trace. Raises TraceError (a line that is not JSON, a
    record of the wrong shape, an unknown version: one sentence naming the line) or NoRouting."""
    header, records, _ = read_trace_lines(path)
    layers = tuple(int(i) for i in header.get("moe_layers") or ())
    e = int(header.get("num_experts") or 0)
    fix = "write it again with `mixtui generate --trace` and a mixture-of-experts model " \
          "without --no-routing"
    if header.get("routing") is False or not layers or e == 0:
        why = "it was written with --no-routing" if layers and e else "its model is dense"
        raise NoRouting(f"{path} has no routing to analyse ({why}); {fix}.",
                        facts={"path": str(path)})
    n_layers = len(layers)
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = []
    for line, rec in records:
        ex, w, p = rec.get("experts"), rec.get("weights"), rec.get("probs")
        if ex == [] and w == [] and p == []:  # a token processed without routing
            rows.append(None)
            continue
        ea, wa, pa = _array(ex, "i"), _array(w, "f"), _array(p, "f")
        if ea is None or wa is None or pa is None:
            raise bad_line(path, line, "the token's experts, weights and probs are not lists "
                           "of numbers per MoE layer")
        if (ea.shape[0] != n_layers or wa.shape != ea.shape or pa.shape != (n_layers, e)
                or ea.shape[1] > e or ea.min() < 0 or ea.max() >= e):
            raise bad_line(
                path, line, f"the token's routing has experts {list(ea.shape)}, weights "
                f"{list(wa.shape)} and probs {list(pa.shape)} where the header's {n_layers} MoE "
                f"layers of {e} experts need [{n_layers}, k] ids below {e} and "
                f"[{n_layers}, {e}] probs")
        rows.append((ea, wa, pa))
    if not any(r is not None for r in rows):
        raise NoRouting(f"{path} has no routing to analyse (none of its {len(rows)} tokens "
                        f"carries any); {fix}.", facts={"path": str(path)})
    k = max(r[0].shape[1] for r in rows if r is not None)
    t = len(rows)
    experts = np.full((t, n_layers, k), NO_EXPERT, np.int32)
    weights = np.zeros((t, n_layers, k), np.float32)
    probs = np.zeros((t, n_layers, e), np.float32)
    for i, r in enumerate(rows):
        if r is not None:
            width = r[0].shape[1]
            experts[i, :, :width], weights[i, :, :width], probs[i] = r
    generated = np.array([rec["phase"] == "generate" for _, rec in records], dtype=bool)
    ids = np.array([rec["id"] for _, rec in records], dtype=np.int64)
    routing = Routing(experts, weights, probs, generated, layers, e, k,
                      str(header.get("scoring") or "softmax"), ids)
    return TraceRouting(path, header, routing)
