"""An analysis report in the three formats `mixtui analyze` and the TUI export: an aligned text
table, Markdown and JSON. The same figures in each; JSON carries raw fractions and bytes, the
others the percentages and units a person reads (docs/analysis.md)."""

from __future__ import annotations

import json
import math
import textwrap
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from mixtui.app.analysis.sizes import ExpertSize
from mixtui.app.analysis.stats import (
    POLICIES,
    Agreement,
    Analysis,
    LayerAnalysis,
    Load,
    OffloadPoint,
    offload,
)
from mixtui.core.units import gb

Format = Literal["table", "md", "json"]
FORMATS: tuple[Format, ...] = ("table", "md", "json")

# Mixtral of Experts (Jiang et al., 2024), Table 5: percent of consecutive tokens on the same
# expert, Mixtral 8x7B on The Pile, layers 0, 15 and 31 of 32 ("top1": the first choice
# repeats; "topk": the top-2 sets share an expert). ../shared/reference/routing-anchors.md
PAPER_LAYERS = (0, 15, 31)
PAPER_TABLE5: dict[str, dict[str, tuple[float, float, float]]] = {
    "ArXiv": {"top1": (14.0, 27.9, 22.7), "topk": (46.5, 62.3, 52.9)},
    "DM Mathematics": {"top1": (14.1, 28.4, 19.7), "topk": (44.9, 67.0, 44.5)},
    "Github": {"top1": (14.9, 28.1, 19.7), "topk": (49.9, 66.9, 49.2)},
    "Gutenberg": {"top1": (13.9, 26.1, 26.3), "topk": (49.5, 63.1, 52.2)},
    "PhilPapers": {"top1": (13.6, 25.3, 22.1), "topk": (46.9, 61.9, 51.3)},
    "PubMed": {"top1": (14.2, 24.6, 22.0), "topk": (48.6, 61.6, 51.8)},
    "StackExchange": {"top1": (13.6, 27.2, 23.6), "topk": (48.2, 64.6, 53.6)},
    "Wikipedia": {"top1": (14.4, 23.6, 25.3), "topk": (49.8, 62.1, 51.8)},
}
WIDTH = 138  # the table's notes wrap within a 140-column terminal
LOAD_BY_EXPERT = 16  # up to this many experts the table lists each one's share
DETAILED_LAYERS = 8  # up to this many MoE layers the cache and co-activation list every one


@dataclass(frozen=True)
class Report:
    """What `render` prints: the analysis, where it came from, and the projection."""

    analysis: Analysis
    model: str
    source: str  # the trace's path, or "the conversation"
    scoring: str = "softmax"
    sizes: ExpertSize | None = None  # the expert size projected onto; None: no projection
    memory_gbps: float | None = None
    memory_source: str = ""
    cache_gbps: float | None = None
    offload: tuple[OffloadPoint, ...] = ()  # every policy x capacity
    agreement: Agreement | None = None
    compare_source: str = ""
    shown: tuple[int, ...] | None = None  # indices into analysis.layers; None: all
    notes: tuple[str, ...] = field(default=())


def build_report(analysis: Analysis, model: str, source: str, *, scoring: str = "softmax",
                 sizes: ExpertSize | None = None, memory_gbps: float | None = None,
                 memory_source: str = "", cache_gbps: float | None = None,
                 agreement: Agreement | None = None, compare_source: str = "",
                 shown: tuple[int, ...] | None = None,
                 notes: tuple[str, ...] = ()) -> Report:
    """A report with the offloading projection worked out, and the notes it calls for."""
    points: tuple[OffloadPoint, ...] = ()
    said = list(notes)
    if sizes is not None and analysis.layers:
        points = tuple(p for policy in POLICIES for p in offload(
            analysis, sizes.expert_bytes, sizes.moe_layers, sizes.resident_bytes_per_token,
            memory_gbps, cache_gbps, policy))
        if sizes.moe_layers != len(analysis.layers):
            said.append(f"the projection applies the trace's mean miss rate over its "
                        f"{len(analysis.layers)} MoE layers to {sizes.name}'s "
                        f"{sizes.moe_layers}.")
        if cache_gbps is None:
            said.append("give --cache-bandwidth GB/s (an NVMe SSD reads 3–7 GB/s) for the "
                        "decode speed an offloading engine would reach.")
        elif memory_gbps is None:
            said.append("the speeds count the misses' time alone: no memory bandwidth is "
                        "known (give --memory-bandwidth GB/s, or run `mixtui bench`).")
    if analysis.capacities_bounded:
        said.append(f"with {analysis.num_experts} experts the cache is replayed at "
                    f"{len(analysis.capacities)} capacities between k and E, not every one.")
    if analysis.skipped_tokens:
        said.append(f"{analysis.skipped_tokens} tokens without routing were skipped.")
    return Report(analysis, model, source, scoring, sizes, memory_gbps, memory_source,
                  cache_gbps, points, agreement, compare_source, shown, tuple(said))


# -- JSON --------------------------------------------------------------------------------------
def _load_json(load: Load) -> dict[str, Any]:
    return {"tokens": load.tokens, "top1_share": list(load.top1_share),
            "topk_share": list(load.topk_share), "top1_entropy_bits": load.top1_entropy_bits,
            "topk_entropy_bits": load.topk_entropy_bits, "top1_imbalance": load.top1_imbalance,
            "topk_imbalance": load.topk_imbalance}


def _layer_json(la: LayerAnalysis) -> dict[str, Any]:
    return {
        "layer": la.layer,
        "top1_repeat_rate": la.top1_repeat_rate, "topk_repeat_rate": la.topk_repeat_rate,
        "repeat_by_phase": {ph: {"top1_repeat_rate": r[0], "topk_repeat_rate": r[1]}
                            for ph, r in la.repeat_by_phase.items() if ph != "all"},
        "load": {ph: _load_json(load) for ph, load in la.load.items()},
        "router_entropy_bits": la.router_entropy_bits,
        "top1_weight_share": la.top1_weight_share,
        "coactivation": la.coactivation.tolist(),
        "coactivation_lift": np.round(la.coactivation_lift, 6).tolist(),
        "cache": [{"policy": p.policy, "capacity": p.capacity, "hit_rate": p.hit_rate,
                   "misses_per_token": p.misses_per_token} for p in la.cache],
    }


def shown_layers(report: Report) -> tuple[LayerAnalysis, ...]:
    layers = report.analysis.layers
    return layers if report.shown is None else tuple(layers[i] for i in report.shown)


def detailed_layers(report: Report) -> tuple[LayerAnalysis, ...]:
    """The layers whose own rows (cache, co-activation) are printed: those asked for, else
    all of a shallow model's, else none (`_coactivation_section` then takes the paper's)."""
    if report.shown is not None or len(report.analysis.layers) <= DETAILED_LAYERS:
        return shown_layers(report)
    return ()


def paper_positions(count: int) -> dict[int, int]:
    """Which of the paper's Table 5 layers (0, 1, 2: its first, middle and last) each of
    `count` MoE layers is set beside, by position: our first, middle and last; with two
    layers the first and the last, with one the first."""
    if count <= 2:
        return {0: 0} if count == 1 else {0: 0, 1: 2}
    return {0: 0, (count - 1) // 2: 1, count - 1: 2}


def to_json(report: Report) -> dict[str, Any]:
    a = report.analysis
    out: dict[str, Any] = {
        "source": report.source, "model": report.model, "tokens": a.tokens,
        "prompt_tokens": a.prompt_tokens, "generated_tokens": a.generated_tokens,
        "skipped_tokens": a.skipped_tokens, "num_experts": a.num_experts, "top_k": a.top_k,
        "scoring": report.scoring,
        "top1_baseline": a.top1_baseline, "topk_baseline": a.topk_baseline,
        "top1_repeat_rate": a.top1_repeat_rate, "topk_repeat_rate": a.topk_repeat_rate,
        "capacities": list(a.capacities), "capacities_bounded": a.capacities_bounded,
        "cache": [{"policy": p, "capacity": c, "hit_rate": a.hit_rate(p, c),
                   "misses_per_token": a.misses_per_token(p, c)}
                  for p in POLICIES for c in a.capacities] if a.layers else [],
        "layers": [_layer_json(la) for la in shown_layers(report)],
        "paper_table5": {"layers": list(PAPER_LAYERS),
                         "domains": {d: {"top1": list(v["top1"]), "topk": list(v["topk"])}
                                     for d, v in PAPER_TABLE5.items()}},
        "offload": None, "compare": None, "notes": list(report.notes),
    }
    s = report.sizes
    if s is not None:
        out["offload"] = {
            "expert_model": s.model, "expert_bytes": s.expert_bytes, "moe_layers": s.moe_layers,
            "resident_bytes_per_token": s.resident_bytes_per_token,
            "memory_gbps": report.memory_gbps, "memory_source": report.memory_source,
            "cache_gbps": report.cache_gbps,
            "points": [{"policy": p.policy, "capacity": p.capacity, "hit_rate": p.hit_rate,
                        "miss_bytes_per_token": p.miss_bytes_per_token,
                        "tokens_per_s": p.tokens_per_s} for p in report.offload]}
    ag = report.agreement
    if ag is not None:
        out["compare"] = {
            "source": report.compare_source, "tokens": ag.tokens, "a_tokens": ag.a_tokens,
            "b_tokens": ag.b_tokens, "a_top_k": ag.a_top_k, "b_top_k": ag.b_top_k,
            "diverged_at": ag.diverged_at,
            "layers": [{"layer": la.layer, "top1_agree": la.top1_agree,
                        "topk_agree": la.topk_agree, "mean_overlap": la.mean_overlap}
                       for la in ag.layers]}
    return out


# -- for people --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Section:
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = ()


def _pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def _paper(position: int, count: int) -> str:
    """The paper's range over its domains beside the first, middle and last layer."""
    where = paper_positions(count).get(position)
    if where is None:
        return ""
    t1 = [v["top1"][where] for v in PAPER_TABLE5.values()]
    tk = [v["topk"][where] for v in PAPER_TABLE5.values()]
    return (f"L{PAPER_LAYERS[where]}: {min(t1):.1f}–{max(t1):.1f} / "
            f"{min(tk):.1f}–{max(tk):.1f}")


def _layer_section(report: Report) -> _Section:
    a = report.analysis
    k = a.top_k
    every = a.num_experts <= LOAD_BY_EXPERT
    columns = ("layer", "top-1 repeat", f"top-{k} meet", "prompt", "generate",
               "top-1 load % by expert" if every else "busiest (top-1)", "imbal.",
               "H bits", "router H", "w top-1", "paper % top-1 / top-2")
    e = a.num_experts
    t1, tk = _pct(a.top1_baseline), _pct(a.topk_baseline)
    phase = f"{_pct(a.top1_baseline, 0)}/{_pct(a.topk_baseline, 0)}"
    # uniformly random routing, above the layers: the baseline beside every rate
    rows = [("random", t1, tk, phase, phase,
             f"even: {100 / e:.3g} each" if every else f"even: {_pct(1 / e)}", "1.00",
             f"{math.log2(e):.2f}", f"{math.log2(e):.2f}", _pct(1 / k, 0), "")]
    count = len(a.layers)
    for i, la in enumerate(a.layers):
        if report.shown is not None and i not in report.shown:
            continue
        load = la.load["all"]
        if every:
            spread = " ".join(f"{100 * s:2.0f}" for s in load.top1_share)
        else:
            busiest = max(range(a.num_experts), key=lambda e: load.top1_share[e])
            spread = f"e{busiest} {_pct(load.top1_share[busiest])}"
        pr, ge = la.repeat_by_phase["prompt"], la.repeat_by_phase["generate"]
        rows.append((str(la.layer), _pct(la.top1_repeat_rate), _pct(la.topk_repeat_rate),
                     f"{_pct(pr[0], 0)}/{_pct(pr[1], 0)}", f"{_pct(ge[0], 0)}/{_pct(ge[1], 0)}",
                     spread, f"{load.top1_imbalance:.2f}", f"{load.top1_entropy_bits:.2f}",
                     f"{la.router_entropy_bits:.2f}", _pct(la.top1_weight_share, 0),
                     _paper(i, count)))
    notes = (f"random: uniformly random routing (top-1 repeats 1/E, two top-{k} sets meet "
             f"1 − C(E−k,k)/C(E,k)); imbalance: busiest share / even share ({e} when one "
             "expert takes all); H bits: the top-1 load's entropy; router H: the router's mean "
             "entropy; w top-1: the top-1 expert's share of the gate weight.",
             "prompt / generate: the two rates over the pairs inside each phase; paper: "
             "Mixtral 8x7B's range over the Pile's domains (Table 5) at its first, middle and "
             "last layer.")
    return _Section("Routing per MoE layer (Mixtral paper, section 5)", columns, tuple(rows),
                    notes)


def _cache_section(report: Report) -> _Section:
    a = report.analysis
    caps = a.capacities
    rows = [("random (c/E)", *(_pct(c / a.num_experts, 0) for c in caps))]
    rows += [(f"{policy} (mean)", *(_pct(a.hit_rate(policy, c), 0) for c in caps))
             for policy in POLICIES]
    per_layer = detailed_layers(report)
    for la in per_layer:
        rows.append((f"lru L{la.layer}", *(_pct(la.hit_rate("lru", c), 0) for c in caps)))
    notes = ["random (c/E): what LRU or LFU hit once warm if routing were uniformly random; "
             "hit rate = hits / (tokens × k), cold start included; the optimum is Belady's "
             "(the expert used farthest ahead goes)."]
    if not per_layer:
        notes.append("per-layer rows: choose layers with --layers.")
    return _Section(f"Expert cache: hit rate at c experts per layer (of {a.num_experts})",
                    ("c", *map(str, caps)), tuple(rows), tuple(notes))


def _offload_section(report: Report) -> _Section | None:
    s = report.sizes
    if s is None or not report.offload:
        return None
    caps = report.analysis.capacities
    by = {(p.policy, p.capacity): p for p in report.offload}
    rows = [("lru MB/token", *(_speed(by["lru", c].miss_bytes_per_token / 1e6) for c in caps))]
    for policy in ("lru", "optimal"):
        if report.cache_gbps is not None:
            rows.append((f"{policy} tokens/s", *(_speed(by[policy, c].tokens_per_s)
                                                 for c in caps)))
    memory = (f"{report.memory_gbps:.0f} GB/s ({report.memory_source})"
              if report.memory_gbps else "no memory bandwidth")
    cache = (f"misses read at {report.cache_gbps:g} GB/s" if report.cache_gbps
             else "no cache bandwidth")
    title = (f"Offloading {s.name}: {s.expert_bytes / 1e6:.1f} MB per expert, {s.moe_layers} "
             f"MoE layers, {gb(s.resident_bytes_per_token)} read per token; {memory}; {cache}")
    notes = ("tokens/s = 1 / (resident bytes / memory bandwidth + missed experts' bytes / "
             "cache bandwidth), per token.",)
    return _Section(title, ("c", *map(str, caps)), tuple(rows), notes)


def _speed(x: float | None) -> str:
    """Three significant figures (whole numbers from 100 on)."""
    if x is None:
        return "–"
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _coactivation_section(report: Report) -> _Section:
    a = report.analysis
    layers = detailed_layers(report) or tuple(a.layers[i]
                                              for i in paper_positions(len(a.layers)))
    upper_i, upper_j = np.triu_indices(a.num_experts, 1)  # each pair once
    rows = []
    for la in layers:
        c, lift = la.coactivation, la.coactivation_lift
        counts = c[upper_i, upper_j]
        best = [b for b in np.argsort(-counts, kind="stable")[:3] if counts[b] > 0]
        pairs = [(int(counts[b]), int(upper_i[b]), int(upper_j[b])) for b in best]
        rows.append((str(la.layer), *(f"{i}+{j}: {n} ×{lift[i, j]:.2f}" for n, i, j in pairs)))
    width = max((len(r) for r in rows), default=1)
    rows = [r + ("",) * (width - len(r)) for r in rows]
    independent = (a.num_experts * (a.top_k - 1) / (a.top_k * (a.num_experts - 1))
                   if a.num_experts > 1 else 0.0)
    return _Section("Co-activation: the pairs chosen together most (tokens, × against "
                    "independence)", ("layer", *("pair",) * (width - 1)), tuple(rows),
                    (f"uniform random top-{a.top_k} routing gives × "
                     f"{independent:.2f} for every pair.",))


def _compare_section(report: Report) -> _Section | None:
    ag = report.agreement
    if ag is None:
        return None
    shown = {la.layer for la in shown_layers(report)}
    rows = tuple((str(la.layer), _pct(la.top1_agree), _pct(la.topk_agree),
                  _pct(la.mean_overlap)) for la in ag.layers
                 if report.shown is None or la.layer in shown)
    small = min(ag.a_top_k, ag.b_top_k)
    if ag.diverged_at is not None:
        where = f"the token ids part at token {ag.diverged_at}"
    elif ag.a_tokens != ag.b_tokens:
        where = f"the shorter trace ends at token {min(ag.a_tokens, ag.b_tokens)}"
    else:
        where = "the same token ids throughout"
    notes = (f"{ag.tokens} tokens compared ({where}; {ag.a_tokens} and {ag.b_tokens} in the "
             f"traces); top-k agree: the top-{small} set lies inside the other.",)
    return _Section(f"Against {report.compare_source} (top-{ag.a_top_k} vs top-{ag.b_top_k})",
                    ("layer", "top-1 agree", "top-k agree", "overlap"), rows, notes)


def _header(report: Report) -> list[str]:
    a = report.analysis
    return [f"{report.model}: {len(a.layers)} MoE layers, {a.num_experts} experts, top-"
            f"{a.top_k} ({report.scoring}); {a.tokens} tokens ({a.prompt_tokens} prompt, "
            f"{a.generated_tokens} generated) from {report.source}"]


def _sections(report: Report) -> list[_Section]:
    found = [_layer_section(report), _cache_section(report), _offload_section(report),
             _coactivation_section(report), _compare_section(report)]
    return [s for s in found if s is not None]


def to_table(report: Report) -> str:
    lines = _header(report)
    for s in _sections(report):
        lines += ["", s.title]
        table = [s.columns, *s.rows]
        widths = [max(len(r[i]) for r in table) for i in range(len(s.columns))]
        for row in table:
            lines.append("  ".join(c.rjust(w) if i else c.ljust(w)
                                   for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        lines += [w for n in s.notes for w in textwrap.wrap(n, WIDTH, initial_indent="  ",
                                                             subsequent_indent="  ")]
    if report.notes:
        lines += [""] + [w for n in report.notes for w in textwrap.wrap(
            f"note: {n}", WIDTH, subsequent_indent="      ")]
    return "\n".join(x.rstrip() for x in lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(report: Report) -> str:
    lines = [_md(x) for x in _header(report)]
    for s in _sections(report):
        lines += ["", f"### {_md(s.title)}", ""]
        lines.append("| " + " | ".join(_md(c) for c in s.columns) + " |")
        lines.append("|" + "|".join("---" for _ in s.columns) + "|")
        lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in s.rows]
        lines += [""] + [f"- {_md(n)}" for n in s.notes]
    if report.notes:
        lines += [""] + [f"- note: {_md(n)}" for n in report.notes]
    return "\n".join(lines) + "\n"


def json_text(record: dict[str, Any]) -> str:
    """One field a line, and one line for each layer: readable, and written by json's C
    encoder (an indented dump goes through its Python one, seconds for 128 x 128 matrices)."""
    def one(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    fields = []
    for key, value in record.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            items = ",\n".join(f"  {one(v)}" for v in value)
            fields.append(f" {one(key)}: [\n{items}\n ]")
        else:
            fields.append(f" {one(key)}: {one(value)}")
    return "{\n" + ",\n".join(fields) + "\n}\n"


def render(report: Report, fmt: Format) -> str:
    if fmt == "json":
        return json_text(to_json(report))
    return to_table(report) if fmt == "table" else to_markdown(report)
