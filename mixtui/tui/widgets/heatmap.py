"""The routing heatmap: layers down, experts across, for one token and for the shares so far.

Three maps stacked vertically: the current token (chosen experts shaded by gate weight and
labelled with it in %, the others shaded dimly by router probability), then each expert's
share of the top-k assignments in this turn and in the whole conversation, shaded against
the uniform share 1/E. It is a pure view: it gets numpy arrays and draws them.

At today's scale (128 or 512 experts, 94 layers) a cell per expert does not fit: where the
experts do not fit the panel as cells, each layer is one row of the current token's chosen
experts as ids with their weights (sorted by weight, as the block applied them: not
renormalised), and the shares one character per expert, or per bin of experts where even
that is too wide. Where the layers are many (over `TALL_LAYERS`) the two share maps also
go one character per expert, side by side. A dense layer of an MoE model is a row saying
"dense"; shared experts (always on) are an "S" column on every MoE row.

It is refreshed about 20 times a second while a model generates, for up to 94 layers, so it
paints through the line API from rows of pre-built segments: every (shade, number) cell is
a `Segment` made once, a row is a list lookup per cell, and nothing is parsed per refresh.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING

from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.geometry import Region, Size
from textual.strip import Strip
from textual.widget import Widget

if TYPE_CHECKING:
    import numpy as np
else:  # numpy loads when routing first needs it (core/lazy.py)
    from mixtui.core.lazy import np

# Expert colours, as in the Mixtral paper's Figure 8: one hue per expert.
EXPERT_COLOURS = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4",
                  "#42d4f4", "#f032e6", "#bfef45", "#fabed4", "#469990", "#dcbeff",
                  "#9a6324", "#fffac8", "#800000", "#aaffc3")


def expert_colour(expert: int) -> str:
    return EXPERT_COLOURS[expert % len(EXPERT_COLOURS)]


def expert_ink(expert: int) -> str:
    """Black or white: whichever reads better on the expert's colour."""
    return _ink(expert_colour(expert))


# -- shades ---------------------------------------------------------------------------------------
LEVELS = 16  # shade steps of each ramp
DIVERGING_STEPS = 8  # steps on each side of uniform
DIVERGING_SPAN = 2.0  # log2(share / uniform) at the ends of the scale: 4x above, 1/4 below
PROB_FULL = 0.5  # router probability at which an unchosen cell reaches its brightest shade


def _mix(a: str, b: str, t: float) -> str:
    """The colour a fraction t of the way from hex colour a to hex colour b."""
    ca = [int(a[i:i + 2], 16) for i in (1, 3, 5)]
    cb = [int(b[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(ca, cb, strict=True))


def _ink(background: str) -> str:
    """Black or white, whichever reads better on the background."""
    r, g, b = (int(background[i:i + 2], 16) for i in (1, 3, 5))
    return "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#ffffff"


def _ramp(start: str, end: str, steps: int, bold: bool = False) -> list[Style]:
    styles = []
    for i in range(steps):
        bg = _mix(start, end, i / (steps - 1))
        styles.append(Style(color=_ink(bg), bgcolor=bg, bold=bold))
    return styles


CHOSEN_STYLES = _ramp("#6b4200", "#ffc94d", LEVELS, bold=True)  # by gate weight
OTHER_STYLES = _ramp("#1a1a1a", "#3d4c66", LEVELS)  # by router probability
# Below uniform (blue) .. uniform (grey) .. above uniform (red): 2 * DIVERGING_STEPS + 1.
BELOW, UNIFORM, ABOVE = "#2f6fd0", "#2b2b2b", "#d6453d"
SHARE_STYLES = (_ramp(BELOW, UNIFORM, DIVERGING_STEPS + 1)[:-1]
                + _ramp(UNIFORM, ABOVE, DIVERGING_STEPS + 1))
NO_DATA_STYLE = Style(color="#777777", bgcolor="#202020")

TOKEN_NOTES = ("chosen: gate weight %; dim: router prob", "chosen: gate %; dim: router prob",
               "chosen: gate %, dim: prob")
COMPACT_NOTES = ("chosen experts, by gate weight: id weight", "chosen: id weight, by weight",
                 "id weight")
TITLE = Style(bold=True)
NOTE = Style(dim=True)
LABEL = Style(dim=True)
DENSE_STYLE = Style(dim=True, italic=True)
SHARED_STYLE = Style(color="#7fd1ff", bold=True)
MIN_WEIGHTED = 3  # chosen experts shown with their weight even where the rest must go
TALL_LAYERS = 64  # more MoE layers than this: the share maps go compact, side by side
# Compact share strips: glyph height and colour by log2(share / uniform), 1/4x .. 4x.
LOAD_GLYPHS = "▁▂▃▄▅▆▇█"
# Three colours for the eight heights: below (under 3/4 of uniform), near, above (over 4/3):
# a strip changes colour rarely, so its runs of one colour are few segments to paint.
_LOAD_BELOW, _LOAD_NEAR, _LOAD_ABOVE = (Style(color=c) for c in ("#5b8fe0", "#9a9a9a", ABOVE))
LOAD_STYLES = [_LOAD_BELOW] * 3 + [_LOAD_NEAR] * 2 + [_LOAD_ABOVE] * 3
LOAD_ZERO = Segment("·", Style(color="#5a6f99"))  # an expert (or bin) with no assignment
LOAD_NO_DATA = Segment("·", NO_DATA_STYLE)  # a layer with no assignment at all yet
BIN_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)
GATE_PCTS = 1000  # gate weights shown in % from 0 to 999
MAPS_CACHED = 16  # (kind of map, geometry) pairs whose rows are kept for reuse
ROWS_PER_MAP = 1024  # rows kept per map: a repeated row is the same Strip, not repainted


def _number(value: int, room: int, marker: str) -> str:
    """A percentage in `room` cells, or a marker where it does not fit."""
    text = f"{value:>{room}}"
    return text if len(text) <= room else marker.rjust(room)


# A cell is `width` characters: the figure in the first width - 1, then a space, so that
# cells side by side stay apart without a separate gap segment (fewer segments per row).
@lru_cache(maxsize=8)
def _chosen_cells(width: int) -> list[Segment]:
    """Segments for a chosen expert, indexed by level * GATE_PCTS + percent (a scaled
    weight, as DeepSeek's routed_scaling_factor makes, can be over 100 %)."""
    room = width - 1
    return [Segment(("●".rjust(room) if room < 2 else _number(pct, room, "●")) + " ", style)
            for style in CHOSEN_STYLES for pct in range(GATE_PCTS)]


@lru_cache(maxsize=8)
def _token_cells(width: int) -> list[Segment]:
    """One table for the token map: the chosen cells, then the others."""
    return _chosen_cells(width) + _other_cells(width)


@lru_cache(maxsize=8)
def _other_cells(width: int) -> list[Segment]:
    """Segments for an expert that was not chosen, indexed by level."""
    return [Segment(" " * width, style) for style in OTHER_STYLES]


@lru_cache(maxsize=8)
def _share_cells(width: int) -> list[Segment]:
    """Segments for a share, indexed by (steps + DIVERGING_STEPS) * 101 + percent."""
    room = width - 1
    cells = []
    for level, style in enumerate(SHARE_STYLES):
        sign = "+" if level > DIVERGING_STEPS else ("-" if level < DIVERGING_STEPS else "=")
        for pct in range(101):
            text = sign.rjust(room) if room < 2 else _number(pct, room, sign)
            cells.append(Segment(text + " ", style))
    return cells


def _fitting(texts: tuple[str, ...], width: int) -> str:
    """The first (longest) of the texts that fits the width, else the last."""
    return next((t for t in texts if len(t) <= width), texts[-1])


def _weight_text(weight: float) -> str:
    """A gate weight in 3 characters, as the number it is (".42", "2.5"; scaled weights
    can exceed 1)."""
    if not math.isfinite(weight):
        return "  ?"
    if weight < 0.995:
        return f".{max(round(weight * 100), 0):02d}"
    if weight < 9.95:
        return f"{weight:.1f}"
    return f"{min(weight, 999):>3.0f}"


def _bin_size(experts: int, room: int) -> int:
    """Experts per character of a load strip `room` characters wide."""
    return next((b for b in BIN_SIZES if -(-experts // b) <= room), BIN_SIZES[-1])


_HUNDREDTHS = [f".{pct:02d}" for pct in range(100)]  # _weight_text of weights below .995
_IDS = [str(expert) for expert in range(1024)]


def _chosen_entries(ids: list[int], gates: list[float], codes: list[int], levels: list[int],
                    room: int, chosen: list[Style], note: Style) -> tuple[list[Segment], int]:
    """The chosen experts as "id weight", heaviest first, in `room` cells: as many with
    their weight as fit (the first MIN_WEIGHTED always), the rest as bare ids, and "+n"
    for those that do not fit at all. Returns the segments and the cells they take.

    The weighted ids are shaded by weight; the bare tail is one dim segment (a row is
    painted about 20 times a second: few segments keep that cheap)."""
    k = len(ids)
    names = [_IDS[i] if 0 <= i < len(_IDS) else str(i) for i in ids]
    bare = list(map(len, names))
    base_cost = sum(bare) + k - 1  # bare ids, one space apart; a weight adds 4: " .42"
    with_weight = min(k, max((room - base_cost) // 4, min(k, MIN_WEIGHTED)))
    shown = k
    if base_cost + 4 * with_weight > room:  # not all of them: as many as fit, then "+n"
        shown = used = 0
        for i in range(k):
            need = bare[i] + (4 if i < with_weight else 0) + (1 if i else 0)
            if used + need + (len(f" +{k - i - 1}") if i < k - 1 else 0) > room:
                break
            used += need
            shown += 1
    weighted = min(with_weight, shown)
    tail = " ".join(names[weighted:shown] + ([f"+{k - shown}"] if shown < k else []))
    segments: list[Segment] = []
    for i in range(weighted):
        after = " " if i < weighted - 1 or tail else ""
        segments.append(Segment(names[i], chosen[levels[i]]))
        text = _HUNDREDTHS[codes[i]] if 0 <= codes[i] < 100 else _weight_text(gates[i])
        segments.append(Segment(f" {text}{after}", note))
    if tail:
        segments.append(Segment(tail, note))
    return segments, sum(len(segment.text) for segment in segments)


def _heaviest_first(experts: np.ndarray, weights: np.ndarray
                    ) -> tuple[list[list[int]], np.ndarray, list[list[int]], list[list[int]]]:
    """(L, k) chosen experts heaviest first: ids, weights, weights in hundredths (what a row
    can show: its cache key) and shade levels. NaN weights go last."""
    order = np.argsort(-np.nan_to_num(weights, nan=-np.inf), axis=1, kind="stable")
    ids = np.take_along_axis(experts, order, axis=1)
    gates = np.take_along_axis(weights, order, axis=1).astype(np.float64)
    codes = np.rint(np.nan_to_num(gates, nan=-1.0) * 100).astype(np.int64).tolist()
    levels = np.rint(np.clip(np.nan_to_num(gates), 0.0, 1.0)
                     * (LEVELS - 1)).astype(np.int64).tolist()
    return ids.tolist(), gates, codes, levels


def _runs(row: list[int], table: list[Segment]) -> list[Segment]:
    """table[i] for each index; neighbours of one style (the same object) as one segment."""
    segments: list[Segment] = []
    texts: list[str] = []
    style = None
    for i in row:
        cell = table[i]
        if cell.style is not style and texts:
            segments.append(Segment("".join(texts), style))
            texts = []
        style = cell.style
        texts.append(cell.text)
    if texts:
        segments.append(Segment("".join(texts), style))
    return segments


def _load_index(counts: np.ndarray, size: int) -> np.ndarray:
    """(L, E) counts -> (L, ceil(E / size)) indices into the load table: a glyph level by
    log2(share / uniform) of the busiest expert of each bin, zero, or no data."""
    layers, num_experts = counts.shape
    totals = counts.sum(axis=1, keepdims=True)
    shares = counts / np.maximum(totals, 1)
    chars = -(-num_experts // size)
    if size > 1:
        padded = np.zeros((layers, chars * size))
        padded[:, :num_experts] = shares
        shares = padded.reshape(layers, chars, size).max(axis=2)
    ratio = np.log2(np.maximum(shares, 1e-12) * num_experts)
    steps = len(LOAD_GLYPHS) - 1
    level = np.rint((np.clip(ratio / DIVERGING_SPAN, -1.0, 1.0) + 1) / 2 * steps)
    index = level.astype(np.int64)
    index[shares <= 0] = steps + 1
    index[totals[:, 0] == 0] = steps + 2
    return index


def _token_label(text: str, limit: int = 24) -> str:
    """The token as Python would write it, so spaces and newlines show; cut to `limit`."""
    shown = repr(text)
    if len(shown) > limit:
        shown = shown[:limit - 2] + "…" + shown[-1]
    return shown


class RoutingHeatmap(Widget):
    """Shows one token's routing and the expert shares of this turn and of the conversation.

    Call `show_token` and `show_shares` as data arrives (each keeps its latest data and all
    maps are drawn together), `show_dense` for a model without experts and `show_message`
    for a hint. `render()` returns what is painted, as rich Text, for tests and export.
    """

    DEFAULT_CSS = """
    RoutingHeatmap {
        width: 1fr;  /* the panel's width: with many experts the rows are built for it */
        height: auto;
    }
    """

    def __init__(self, *, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._layers: tuple[int, ...] = ()
        self._num_layers = 0  # all the model's layers (0: not told; only the MoE ones shown)
        self._shared = 0  # shared experts in every MoE layer
        # (experts (L, k), weights (L, k), probs (L, E), label, index)
        self._token: tuple[np.ndarray, np.ndarray, np.ndarray, str, int | None] | None = None
        self._shares: tuple[np.ndarray, np.ndarray] | None = None  # (L, E) counts each
        self._text: str | None = "Send a prompt: each token's experts appear here."
        # Lines of each part, built for self._width; None: build again when next needed.
        self._width = 0
        self._token_lines: list[Strip] | None = None
        self._share_lines: list[Strip] | None = None
        self._text_lines: list[Strip] | None = None
        self._lines: list[Strip] = []  # all of them, as painted
        self._rows: dict[tuple[int, int, int], dict[tuple[int, ...], Strip]] = {}
        self._fixed_lines: dict[tuple[object, ...], Strip] = {}
        # The widget's own colours, under every segment that sets none (texts, labels).
        self._base = Style()
        self._text_console = Console(width=80, color_system=None, legacy_windows=False)

    # -- public API -------------------------------------------------------------------------
    def show_token(self, layers: tuple[int, ...], experts: np.ndarray, weights: np.ndarray,
                   probs: np.ndarray, label: str, index: int | None = None) -> None:
        """One token's routing: experts and weights (L, k), router probabilities (L, E)."""
        if experts.shape != weights.shape or experts.shape[0] != len(layers) \
                or probs.shape[0] != len(layers):
            raise ValueError(f"routing shapes do not match {len(layers)} layers: experts "
                             f"{experts.shape}, weights {weights.shape}, probs {probs.shape}")
        self._set_layers(layers)
        self._token = (experts, weights, probs, label, index)
        self._token_lines = None
        self._changed()

    def set_geometry(self, num_layers: int, shared_experts: int = 0) -> None:
        """The model's layer count (layers not among the MoE ones are shown as "dense") and
        its shared experts per MoE layer (shown as always on)."""
        if (num_layers, shared_experts) == (self._num_layers, self._shared):
            return
        self._num_layers, self._shared = num_layers, shared_experts
        self._rows.clear()
        self._fixed_lines.clear()
        self._token_lines = self._share_lines = None
        self._changed()

    def show_shares(self, layers: tuple[int, ...], turn_counts: np.ndarray,
                    conversation_counts: np.ndarray) -> None:
        """Top-k assignment counts (L, E) of this turn and of the whole conversation."""
        if turn_counts.shape != conversation_counts.shape or turn_counts.shape[0] != len(layers):
            raise ValueError(f"count shapes do not match {len(layers)} layers: "
                             f"{turn_counts.shape}, {conversation_counts.shape}")
        self._set_layers(layers)
        self._shares = (turn_counts, conversation_counts)
        self._share_lines = None
        self._changed()

    @property
    def shares(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The counts `show_shares` last got: (this turn, the conversation), or None."""
        return self._shares

    def show_dense(self, name: str) -> None:
        """Say that the model is dense: no experts, so nothing to map."""
        self._show_text(f"{name} is a dense model: every token uses all of its parameters, "
                        "so there are no experts to show.")

    def show_message(self, text: str) -> None:
        """Show a line of text instead of the maps (and forget the maps' data)."""
        self._show_text(text)

    # -- state ------------------------------------------------------------------------------
    def _set_layers(self, layers: tuple[int, ...]) -> None:
        layers = tuple(layers)
        if self._text is not None or layers != self._layers:
            # A message was shown, or another model: what was held no longer lines up.
            if layers != self._layers:
                self._rows.clear()  # rows are cached by position, labelled by layer
            self._layers = layers
            self._token = self._shares = None
            self._token_lines = self._share_lines = None
            self._text = None

    def _show_text(self, text: str) -> None:
        self._text = text
        self._token = self._shares = None
        self._token_lines = self._share_lines = self._text_lines = None
        self._changed()

    def _changed(self) -> None:
        """Build what changed now and repaint only the lines that differ."""
        if not self.is_mounted or self._width <= 0:
            self.refresh(layout=True)
            return
        old = self._lines
        new = self._build(self._width)
        if len(new) != len(old):
            self.refresh(layout=True)
            return
        # Rows come from a cache, so an unchanged row is the same Strip object.
        dirty = [y for y, (a, b) in enumerate(zip(old, new, strict=True)) if a is not b]
        if not dirty:
            return
        regions, start = [], dirty[0]
        for previous, y in zip(dirty, dirty[1:] + [-1], strict=True):
            if y != previous + 1:
                regions.append(Region(0, start, self._width, previous + 1 - start))
                start = y
        self.refresh(*regions)

    # -- layout -----------------------------------------------------------------------------
    def _layer_width(self) -> int:
        return len(f"L{max(max(self._layers, default=0), self._num_layers - 1)}") + 1

    def _label_width(self) -> int:
        """A row's label: "L12 ", then "S " on MoE rows where the model has shared experts."""
        return self._layer_width() + (2 if self._shared else 0)

    def _num_experts(self) -> int:
        if self._token is not None:
            return int(self._token[2].shape[1])
        if self._shares is not None:
            return int(self._shares[0].shape[1])
        return 0

    def _compact(self, width: int) -> bool:
        """Too many experts for a cell each (even 2 wide): ids with weights, load strips."""
        return 2 * max(self._num_experts(), 1) > width - self._label_width()

    def _cell_width(self, width: int) -> int:
        """Cells of 4 characters where they fit, else 3 (numbers), else 2 (markers)."""
        room = width - self._label_width()
        experts = max(self._num_experts(), 1)
        for cell in (4, 3):
            if cell * experts <= room:
                return cell
        return 2

    def _build(self, width: int) -> list[Strip]:
        width = max(width, 1)
        if width != self._width:
            self._width = width
            self._token_lines = self._share_lines = self._text_lines = None
        if self._text is not None or (self._token is None and self._shares is None):
            if self._text_lines is None:
                self._text_lines = self._wrap(self._text or "", width)
            self._lines = self._text_lines
            return self._lines
        compact = self._compact(width)
        cell = self._cell_width(width)
        lines: list[Strip] = []
        if self._token is not None:
            if self._token_lines is None:
                # cells too narrow for numbers (2 wide) would hide the weights: ids instead
                self._token_lines = (self._token_rows(width) if compact or cell < 3
                                     else self._token_map(width, cell))
            lines += self._token_lines
        if self._shares is not None:
            if self._share_lines is None:
                turn, conversation = self._shares
                if compact or len(self._layers) > TALL_LAYERS:
                    self._share_lines = self._load_maps(turn, conversation, width)
                else:
                    self._share_lines = [
                        *self._share_map("this turn", turn, width, cell), self._blank(width),
                        *self._share_map("whole conversation", conversation, width, cell)]
            if lines:
                lines.append(self._blank(width))
            lines += self._share_lines
        self._lines = lines
        return lines

    def _wrap(self, text: str, width: int) -> list[Strip]:
        self._text_console.size = (width, 1)
        wrapped = Text(text, style=self._base + Style(italic=True)).wrap(self._text_console,
                                                                         width)
        return [Strip(list(line.render(self._text_console))) for line in wrapped]

    def _line(self, segments: list[Segment], width: int) -> Strip:
        # Exactly `width` cells, so that Textual has no padding to add on each repaint.
        return Strip(Segment.apply_style(segments, self._base)).adjust_cell_length(width,
                                                                                  self._base)

    def _blank(self, width: int) -> Strip:
        return self._fixed(("blank",), list, width)

    def _fixed(self, key: tuple[object, ...], make: Callable[[], list[Segment]],
               width: int) -> Strip:
        """A line that only changes with its key: the same Strip each time, so not repainted."""
        full = (*key, width)
        strip = self._fixed_lines.get(full)
        if strip is None:
            strip = self._fixed_lines[full] = self._line(make(), width)
        return strip

    def _note(self, key: str, texts: tuple[str, ...], width: int) -> Strip:
        return self._note_as(key, texts, NOTE, width)

    def _note_as(self, key: str, texts: tuple[str, ...], style: Style, width: int) -> Strip:
        """The first of `texts` that fits, as a fixed line."""
        return self._fixed((key, *texts), lambda: [Segment(_fitting(texts, width), style)],
                           width)

    def _shared_note(self, width: int) -> Strip:
        n = self._shared
        plural = "s" if n > 1 else ""
        return self._fixed(("shared", n), lambda: [
            Segment("S", SHARED_STYLE),
            Segment(_fitting((f": {n} shared expert{plural}, always on (not in the shares)",
                              f": {n} shared expert{plural}, always on",
                              f": {n} shared, always on", f": {n} shared"), width - 1),
                    NOTE)], width)

    def _labels(self) -> list[list[Segment]]:
        """The label segments of each MoE row: its layer and, with shared experts, "S"."""
        style = self._base + LABEL
        layer_width = self._layer_width()
        shared = [Segment("S ", self._base + SHARED_STYLE)] if self._shared else []
        return [[Segment(f"L{layer}".ljust(layer_width), style), *shared]
                for layer in self._layers]

    def _with_dense(self, strips: list[Strip], width: int) -> list[Strip]:
        """The MoE rows with a "dense" row at each dense layer, in layer order."""
        moe = set(self._layers)
        dense = [layer for layer in range(self._num_layers) if layer not in moe]
        if not dense:
            return strips
        layer_width = self._layer_width()

        def row(layer: int) -> Callable[[], list[Segment]]:
            return lambda: [Segment(f"L{layer}".ljust(layer_width), LABEL),
                            Segment("dense", DENSE_STYLE)]

        by_layer = dict(zip(self._layers, strips, strict=True))
        for layer in dense:
            by_layer[layer] = self._fixed(("dense", layer, layer_width), row(layer), width)
        return [by_layer[layer] for layer in sorted(by_layer)]

    def _header(self, width: int, cell: int, experts: int) -> Strip:
        """Expert numbers above the columns, in the experts' colours."""
        label_width = self._label_width()
        return self._fixed(
            ("header", label_width, cell, experts),
            lambda: [Segment(" " * label_width)]
            + [Segment(f"{e:>{cell - 1}} ", Style(color=expert_colour(e), bold=True))
               for e in range(experts)],
            width)

    def _grid(self, kind: int, index_of: list[list[int]], table: list[Segment], width: int,
              cell: int, merge: bool = False) -> list[Strip]:
        """One Strip per MoE layer; cells are `table[index]`. Rows are reused from a cache.
        `merge`: a run of one index is one segment (load strips: fewer segments to paint)."""
        if len(self._rows) > MAPS_CACHED:
            self._rows.clear()
        # Per kind of map and geometry: {(row number, *cell indices): Strip}.
        cache = self._rows.setdefault((kind, width, cell), {})
        if len(cache) > ROWS_PER_MAP:
            cache.clear()
        label_width = self._label_width()
        row_width = label_width + cell * (len(index_of[0]) if index_of else 0)
        labels: list[list[Segment]] | None = None
        pad = [Segment(" " * (width - row_width), self._base)] if width > row_width else []
        strips = []
        for r, row in enumerate(index_of):
            key = (r, *row)
            strip = cache.get(key)
            if strip is None:
                if labels is None:
                    labels = self._labels()
                cells = _runs(row, table) if merge else [table[i] for i in row]
                strip = Strip([*labels[r], *cells, *pad], max(width, row_width))
                if row_width > width:
                    strip = strip.crop(0, width)
                cache[key] = strip
            strips.append(strip)
        return self._with_dense(strips, width)

    def _token_title(self, width: int) -> Strip:
        assert self._token is not None
        label, index = self._token[3], self._token[4]
        where = f"token {index} " if index is not None else "token "
        return self._line([Segment(where + _token_label(label), TITLE)], width)

    def _token_map(self, width: int, cell: int) -> list[Strip]:
        assert self._token is not None
        experts, weights, probs, label, index = self._token
        layers, num_experts = probs.shape
        ids = experts.astype(np.int64)
        chosen = np.zeros((layers, num_experts), dtype=bool)
        gate = np.zeros((layers, num_experts), dtype=np.float64)
        np.put_along_axis(chosen, ids, True, axis=1)
        # nan_to_num: a broken model's NaN must not become a garbage table index.
        # Weights as they are (scaled ones can pass 1); the shade saturates at 1.
        np.put_along_axis(gate, ids, np.clip(np.nan_to_num(weights), 0.0,
                                             (GATE_PCTS - 1) / 100), axis=1)
        pct = np.rint(gate * 100).astype(np.int64)
        level = np.rint(np.minimum(gate, 1.0) * (LEVELS - 1)).astype(np.int64)
        other = np.rint(np.clip(np.nan_to_num(probs) / PROB_FULL, 0.0, 1.0)
                        * (LEVELS - 1)).astype(np.int64)
        table = _token_cells(cell)
        index_of = np.where(chosen, level * GATE_PCTS + pct,
                            LEVELS * GATE_PCTS + other).tolist()
        note = self._fixed(("token note",), lambda: [Segment(_fitting(TOKEN_NOTES, width), NOTE)],
                           width)
        shared = [self._shared_note(width)] if self._shared else []
        return [self._token_title(width), note, *shared,
                self._header(width, cell, num_experts),
                *self._grid(0, index_of, table, width, cell)]

    def _token_rows(self, width: int) -> list[Strip]:
        """Compact: per MoE layer the chosen experts as "id weight", by weight."""
        assert self._token is not None
        experts, weights = self._token[0], self._token[1]
        if len(self._rows) > MAPS_CACHED:
            self._rows.clear()
        cache = self._rows.setdefault((2, width, 0), {})
        if len(cache) > ROWS_PER_MAP:
            cache.clear()
        label_width = self._label_width()
        room = width - label_width
        ids_list, gates, codes, levels = _heaviest_first(experts, weights)
        labels: list[list[Segment]] | None = None
        chosen = [self._base + style for style in CHOSEN_STYLES]
        note_style = self._base + NOTE
        strips = []
        for r, row_ids in enumerate(ids_list):
            key = (r, *row_ids, *codes[r])
            strip = cache.get(key)
            if strip is None:
                if labels is None:
                    labels = self._labels()
                segments, used = _chosen_entries(row_ids, gates[r].tolist(), codes[r],
                                                 levels[r], room, chosen, note_style)
                pad = width - label_width - used
                strip = cache[key] = Strip(
                    [*labels[r], *segments, *([Segment(" " * pad, self._base)] if pad > 0
                                              else [])], max(width, label_width + used))
            strips.append(strip)
        note = self._note("rows note", COMPACT_NOTES, width)
        shared = [self._shared_note(width)] if self._shared else []
        return [self._token_title(width), note, *shared, *self._with_dense(strips, width)]

    def _share_map(self, what: str, counts: np.ndarray, width: int, cell: int) -> list[Strip]:
        num_experts = counts.shape[1]
        uniform = 1.0 / num_experts
        totals = counts.sum(axis=1, keepdims=True)
        shares = counts / np.maximum(totals, 1)
        ratio = np.log2(np.maximum(shares, 1e-12) / uniform)
        steps = np.rint(np.clip(ratio / DIVERGING_SPAN, -1.0, 1.0) * DIVERGING_STEPS)
        pct = np.rint(shares * 100).astype(np.int64)
        index_of = (steps.astype(np.int64) + DIVERGING_STEPS) * 101 + pct
        # Layers without a single assignment yet: the last entry of the table, "no data".
        index_of[totals[:, 0] == 0] = len(SHARE_STYLES) * 101
        table = _share_cells(cell) + [Segment("·".rjust(cell - 1) + " ", NO_DATA_STYLE)]
        title = self._fixed(("share title", what), lambda: [Segment(_fitting(
            (f"{what}: share of assignments", f"{what.split()[-1]}: share of assignments",
             f"{what.split()[-1]}: shares"), width), TITLE)], width)
        above, below = ("above", "below") if width >= 39 else (">", "<")
        note = self._fixed(("share note", num_experts),
                           lambda: [Segment(f"uniform = {100 * uniform:.1f} %; "
                                            if width >= 31 else f"uniform {100 * uniform:.1f} %: ",
                                            NOTE),
                                    Segment("red", Style(color=ABOVE)),
                                    Segment(f" {above}, ", NOTE),
                                    Segment("blue", Style(color=BELOW)),
                                    Segment(f" {below}", NOTE)],
                           width)
        return [title, note, self._header(width, cell, num_experts),
                *self._grid(1, index_of.tolist(), table, width, cell)]

    def _load_maps(self, turn: np.ndarray, conversation: np.ndarray, width: int) -> list[Strip]:
        """Compact shares: a strip per layer, one character per expert (or per bin of
        experts, shaded by the busiest of them); this turn and the conversation side by
        side where both fit one character per expert, else one map each."""
        num_experts = turn.shape[1]
        room = width - self._label_width()
        glyphs = len(LOAD_GLYPHS)
        table = self._load_table()
        gap = [glyphs + 2, glyphs + 3, glyphs + 2]  # " │ " between the two strips
        legend = self._load_legend(num_experts, width)
        if 2 * num_experts + len(gap) <= room:
            title = self._fixed(("load title",), lambda: [Segment(_fitting(
                ("shares: this turn │ whole conversation", "shares: turn │ conversation",
                 "turn │ conversation"), width), TITLE)], width)
            left, right = _load_index(turn, 1).tolist(), _load_index(conversation, 1).tolist()
            rows = [a + gap + b for a, b in zip(left, right, strict=True)]
            return [title, self._note("bins", ("1 char = 1 expert",), width), legend,
                    self._axis(num_experts, 1, 2, width),
                    *self._grid(3, rows, table, width, 1, merge=True)]
        size = _bin_size(num_experts, room)
        what_bins = ((f"1 char = {size} experts, shaded by the busiest",
                      f"1 char = {size} experts (the busiest)", f"1 char = {size} experts")
                     if size > 1 else ("1 char = 1 expert",))
        lines: list[Strip] = []
        for what, counts in (("this turn", turn), ("whole conversation", conversation)):
            if lines:
                lines.append(self._blank(width))
            titles = (f"{what}: share of assignments", f"{what.split()[-1]}: shares")
            lines += [self._note_as("load title", titles, TITLE, width),
                      self._note("bins", what_bins, width), legend,
                      self._axis(num_experts, size, 1, width),
                      *self._grid(3, _load_index(counts, size).tolist(), table, width, 1,
                                  merge=True)]
        return lines

    def _load_table(self) -> list[Segment]:
        """Load strip cells by `_load_index`'s indices, then a space and a bar (gaps)."""
        styles = {id(style): self._base + style for style in LOAD_STYLES}  # one object each
        table = [Segment(g, styles[id(style)]) for g, style in zip(LOAD_GLYPHS, LOAD_STYLES,
                                                                   strict=True)]
        return table + [Segment(LOAD_ZERO.text, self._base + LOAD_ZERO.style),
                        Segment(LOAD_NO_DATA.text, self._base + LOAD_NO_DATA.style),
                        Segment(" ", self._base), Segment("│", self._base + LABEL)]

    def _load_legend(self, num_experts: int, width: int) -> Strip:
        def make() -> list[Segment]:
            uniform = f"uniform {100 / num_experts:.3g} %"
            lead = f"{uniform}: " if width >= 40 else f"{uniform} "
            return [Segment(lead, NOTE), Segment(LOAD_GLYPHS[0], LOAD_STYLES[0]),
                    Segment(" ¼×  " if width >= 40 else "¼ ", NOTE),
                    Segment(LOAD_GLYPHS[4], LOAD_STYLES[4]),
                    Segment(" 1×  " if width >= 40 else "1 ", NOTE),
                    Segment(LOAD_GLYPHS[-1], LOAD_STYLES[-1]),
                    Segment(" 4×  " if width >= 40 else "4 ", NOTE),
                    Segment("·", LOAD_ZERO.style), Segment(" none", NOTE)]
        return self._fixed(("load legend", num_experts), make, width)

    def _axis(self, num_experts: int, size: int, copies: int, width: int) -> Strip:
        """Expert ids above a load strip, every 8 characters."""
        def make() -> list[Segment]:
            chars = -(-num_experts // size)
            axis = [" "] * chars
            for c in range(0, chars, 8):
                text = str(c * size)
                if c + len(text) <= chars:
                    axis[c:c + len(text)] = text
            one = "".join(axis)
            row = " " * self._label_width() + one + (" │ " + one if copies == 2 else "")
            return [Segment(row, LABEL)]
        return self._fixed(("axis", num_experts, size, copies, self._label_width()), make,
                           width)

    # -- Textual ----------------------------------------------------------------------------
    def get_content_width(self, container: Size, viewport: Size) -> int:
        if self._text is not None or (self._token is None and self._shares is None):
            return min(container.width, Text(self._text or "").cell_len)
        # never wider than the panel: many experts go compact rather than off the edge
        return min(container.width, self._label_width() + 4 * self._num_experts())

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self._build(width))

    def on_resize(self) -> None:
        self._build(self.size.width)

    def on_mount(self) -> None:
        self.notify_style_update()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        if self.is_mounted and self.rich_style != self._base:
            self._base = self.rich_style  # a new theme: every line again, in its colours
            self._rows.clear()
            self._fixed_lines.clear()
            self._token_lines = self._share_lines = self._text_lines = None
            if self._width > 0:
                self._build(self._width)

    def render_lines(self, crop: Region) -> list[Strip]:
        # Layout may have measured other widths (get_content_height): build for this one.
        if self._width != self.size.width:
            self._build(self.size.width)
            self.refresh()  # every line is new: nothing Textual cached for them still holds
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        # Called for every painted line: no look-ups here; _build keeps _lines current.
        lines = self._lines
        return lines[y] if y < len(lines) else Strip([])

    def render(self) -> Text:
        """What is painted, as rich Text (the widget itself paints line by line)."""
        text = Text()
        for y, line in enumerate(self._build(self._width or self.size.width or 44)):
            if y:
                text.append("\n")
            for segment in line:
                text.append(segment.text, segment.style)
        return text
