"""The analysis screen's views (`screens/analysis.py`): the load bars, the cache hit-rate
chart, the Mixtral paper's Table 5 beside a conversation's, the agreement with a trace, and
the fields' parsing. Pure functions of `app/analysis/stats.py`'s results that return Rich
text or plain strings; the screen puts them in its Statics.

With 64 to 128 experts a row per expert would not read: the busiest ten are listed with bars
and every expert's share is one strip of levels (▁…█), one character per expert or per bin.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual.binding import Binding
from textual.widgets import Static

from mixtui.tui.widgets.bars import bar

if TYPE_CHECKING:
    from mixtui.app.analysis.report import Format
    from mixtui.app.analysis.stats import Agreement, Analysis, Load
    from mixtui.core.types import ModelInfo
    from mixtui.registry.spec import ModelSpec

SSD_GBPS = 3.0  # the prefilled miss bandwidth: a typical NVMe SSD's sequential read
BAR_WIDTH = 16
ROWS_MAX = 16  # experts shown one row each up to this many; beyond, the busiest ones
LISTED = 10  # with more experts: this many busiest listed, the rest summed and binned
CHART_HEIGHT = 14
PHASE_NAMES = {"all": "all tokens", "prompt": "prompt", "generate": "answers"}
POLICIES = (("lru", "o", "LRU"), ("lfu", "x", "LFU"), ("optimal", "*", "optimal (Belady)"))
EXPORTS: dict[str, Format] = {".md": "md", ".markdown": "md", ".json": "json", ".txt": "table"}
_LEVELS = "▁▂▃▄▅▆▇█"


class LoadView(Static, can_focus=True):
    """The load bars; ↑ ↓ pick the layer when it has the focus."""

    BINDINGS = [Binding("up", "screen.layer(-1)", "Layer −", show=False),
                Binding("down", "screen.layer(1)", "Layer +", show=False)]


def share_bar(share: float, uniform: float, scale: float, width: int = BAR_WIDTH) -> Text:
    """`share` as a bar of `width` cells to the scale of `scale`, with the uniform share
    marked (│ where the bar stops short of it, a yellow cell where it passes it)."""
    cells = list(bar(share, scale, width).ljust(width))
    mark = min(width - 1, max(0, round(width * uniform / scale) - 1)) if scale > 0 else -1
    text = Text()
    for i, cell in enumerate(cells):
        if i == mark:
            text.append("│" if cell == " " else cell, style="yellow" if cell != " " else "dim")
        else:
            text.append(cell, style="green")
    return text


def binned(shares: Sequence[float], room: int) -> tuple[str, int]:
    """Every expert's share in at most `room` characters, one level (▁…█) per expert or per
    bin of experts (the bin's largest share, against the largest of all); (the strip, experts
    per character)."""
    size = max(1, math.ceil(len(shares) / max(room, 1)))
    top = max(shares, default=0.0)
    out = []
    for start in range(0, len(shares), size):
        value = max(shares[start:start + size])
        out.append(_LEVELS[min(7, int(8 * value / top))] if top > 0 and value > 0 else " ")
    return "".join(out), size


def load_text(load: Load, num_experts: int, width: int) -> Text:
    """One layer's load: a row per expert (the busiest ones, with many) with its top-1 and
    top-k shares as bars against the uniform share 1/E, then entropy and imbalance."""
    uniform = 1.0 / num_experts
    top1, topk = list(load.top1_share), list(load.topk_share)
    scale = max(max(top1, default=0.0), max(topk, default=0.0), 2 * uniform)
    bar_width = max(6, min(BAR_WIDTH, (width - 24) // 2))
    text = Text()
    text.append(f"{'':5}{'top-1':<{bar_width + 7}}top-k\n", style="bold")
    order = list(range(num_experts))
    if num_experts > ROWS_MAX:  # the busiest first: 128 rows would not read
        order = sorted(order, key=lambda e: (-topk[e], -top1[e], e))[:LISTED]
    for e in order:
        text.append(f"e{e:<4}")
        text.append_text(share_bar(top1[e], uniform, scale, bar_width))
        text.append(f"{100 * top1[e]:5.1f}% ")
        text.append_text(share_bar(topk[e], uniform, scale, bar_width))
        text.append(f"{100 * topk[e]:5.1f}%\n")
    if num_experts > ROWS_MAX:
        rest = [e for e in range(num_experts) if e not in order]
        text.append(f"… {len(rest)} others: top-1 {100 * sum(top1[e] for e in rest):.1f}%, "
                    f"top-k {100 * sum(topk[e] for e in rest):.1f}% together\n", style="dim")
        strip, size = binned(topk, max(8, width - 12))
        per = "expert" if size == 1 else f"{size} experts"
        text.append("all top-k ")
        text.append(strip, style="green")
        text.append(f"\n          1 char = {per}, e0 first, shaded to the busiest\n",
                    style="dim")
    text.append(f"uniform 1/E = {100 * uniform:.1f}% (│) · {load.tokens} tokens\n", style="dim")
    text.append(f"top-1: entropy {load.top1_entropy_bits:.2f} bits of "
                f"{math.log2(num_experts):.2f}, imbalance {load.top1_imbalance:.2f}×\n")
    text.append(f"top-k: entropy {load.topk_entropy_bits:.2f} bits of "
                f"{math.log2(num_experts):.2f}, imbalance {load.topk_imbalance:.2f}×\n")
    return text


def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def parse_gbps(text: str, field: str, blank_ok: bool) -> float | None:
    """A bandwidth in GB/s from a field: the number, None where blank is allowed; a
    ValueError with the sentence to show otherwise."""
    text = text.strip()
    if not text:
        if blank_ok:
            return None
        raise ValueError(f"Give “{field}” in GB/s, e.g. {SSD_GBPS} for a typical NVMe SSD.")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"“{field}” takes a number of GB/s (e.g. {SSD_GBPS}), not "
                         f"{text!r}.") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"“{field}” must be more than 0 GB/s, not {text}.")
    return value


def export_format(path: str) -> Format | None:
    """The format a file name asks for by its suffix, or None."""
    return EXPORTS.get(Path(path.strip()).suffix.lower())


def hit_chart(analysis: Analysis, layer: int | None, width: int,
              height: int = CHART_HEIGHT) -> str:
    """The cache hit rate (%) against the capacity c, one marker per policy (ANSI colours),
    at MoE layer ordinal `layer` or the mean over layers (None)."""
    # deferred: plotext takes more than half a second to import; only this chart needs it
    import plotext as plt

    capacities = list(analysis.capacities)
    # a bounded set of c (many experts) is a geometric ladder: on a log axis it spreads evenly
    log = analysis.capacities_bounded
    xs = [math.log2(c) for c in capacities] if log else [float(c) for c in capacities]
    # plotext draws on one global figure: cleared here, built on the UI thread only
    fig = plt.figure
    fig.clear()
    plt.terminal.limit(False, False)  # the widget's size, not the terminal's
    fig.plot_size(max(width, 24), max(height, 8))
    fig.theme("simple")  # no backgrounds: the terminal's own, as the rest of the screen
    for policy, marker, _ in reversed(POLICIES):  # LRU, the one projected, drawn last: on top
        ys = [100 * hit_rate(analysis, policy, c, layer) for c in capacities]
        fig.draw(fig.signal(xs, ys, marker=marker))
    # a tick per capacity where they fit (about 5 characters each), else every n-th
    step = max(1, math.ceil(len(capacities) * 5 / max(width - 8, 5)))
    ticks = list(range(0, len(capacities), step))
    if ticks[-1] != len(capacities) - 1:
        ticks[-1] = len(capacities) - 1  # the last one (c = E) always
    fig.ruler("x").ticks([xs[i] for i in ticks], [str(capacities[i]) for i in ticks])
    pad = (xs[-1] - xs[0]) / 40 if len(xs) > 1 else 0.5
    fig.ruler("x").lim(xs[0] - pad, xs[-1] + pad)
    fig.ruler("y").lim(0, 100)
    where = "mean over layers" if layer is None else f"layer L{analysis.layers[layer].layer}"
    # plotext leaves out a title wider than the chart: short, the rest in the legend
    fig.title(f"cache hit rate % against c ({where}{', log c' if log else ''})")
    return str(fig.build().string())


def hit_rate(analysis: Analysis, policy: str, capacity: int, layer: int | None) -> float:
    """The hit rate of `policy` at `capacity`: at MoE layer ordinal `layer`, or the mean."""
    if layer is None:
        return analysis.hit_rate(policy, capacity)
    return analysis.layers[layer].hit_rate(policy, capacity)


def same_experts(registry: dict[str, ModelSpec], info: ModelInfo) -> list[ModelSpec]:
    """The registry's models with as many experts, and as many per token by default, as
    `info`'s: their expert sizes apply to this conversation's routing."""
    return [spec for spec in registry.values()
            if spec.geometry.experts == info.num_experts
            and spec.geometry.experts_per_token == info.default_top_k]


def fmt_tps(value: float | None) -> str:
    """Tokens per second, to a sensible precision ("—" for none)."""
    return "—" if value is None else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def paper_text(analysis: Analysis) -> Text:
    """The Mixtral paper's Table 5 (8x7B; its range over domains, in %) at its first, middle
    and last layer, beside this conversation's rates at its own (`report.paper_positions`)."""
    # deferred with the statistics: report.py imports numpy, which the first frame does without
    from mixtui.app.analysis.report import PAPER_LAYERS, PAPER_TABLE5, paper_positions

    text = Text()
    text.append("beside the Mixtral paper (8x7B on the Pile; the range over its domains):\n",
                style="dim")
    text.append(f"{'':8}{'paper':<6}{'here':<6}{'top-1 paper':>12}{'here':>7}"
                f"{'top-k paper':>13}{'here':>7}\n", style="bold")
    names = ("first", "middle", "last")
    for ordinal, where in paper_positions(len(analysis.layers)).items():
        layer = analysis.layers[ordinal]
        ranges = {}
        for key in ("top1", "topk"):
            column = [row[key][where] for row in PAPER_TABLE5.values()]
            ranges[key] = f"{min(column):.0f}–{max(column):.0f}%"
        text.append(f"{names[where]:<8}{'L' + str(PAPER_LAYERS[where]):<6}"
                    f"{'L' + str(layer.layer):<6}{ranges['top1']:>12}"
                    f"{percent(layer.top1_repeat_rate):>7}{ranges['topk']:>13}"
                    f"{percent(layer.topk_repeat_rate):>7}\n")
    return text


def agreement_text(agree: Agreement, path: str) -> Text:
    """The per-layer top-1 / top-k agreement with a trace."""
    text = Text()
    text.append(f"against {path}: {agree.tokens} tokens compared "
                f"(k {agree.a_top_k} here, {agree.b_top_k} there)", style="bold")
    if agree.diverged_at is not None:
        text.append(f"; the texts part at token {agree.diverged_at}")
    text.append("\n")
    text.append(f"{'layer':<7}{'top-1 agree':>12}{'top-k agree':>13}{'overlap':>9}\n",
                style="bold")
    for layer in agree.layers:
        text.append(f"L{layer.layer:<6}{percent(layer.top1_agree):>12}"
                    f"{percent(layer.topk_agree):>13}{percent(layer.mean_overlap):>9}\n")
    return text


__all__ = ["LoadView", "agreement_text", "binned", "export_format", "fmt_tps",
           "hit_chart", "hit_rate", "load_text", "paper_text", "parse_gbps", "percent",
           "same_experts", "share_bar"]
