"""Routing over time: one row per MoE layer, one column per processed token.

Each cell is the top-1 expert (largest gate weight) of that token at that layer, so a
conversation's routing reads as a picture: runs of one colour along a row are tokens that
kept their expert, a column is one token's path through the layers. The colour is the
expert id modulo the palette (`EXPERT_COLOURS`, 16 hues: the token strip's colours for up to
16 experts), and the character in the cell is id // 16 as a base-32 digit (blank for ids
0-15), so that with 64-512 experts two ids of one hue still differ; the id itself is in
the subtitle at the cursor. Why this and not the strip's frequency ranking:
docs/routing-over-time.md.

A cursor column (the selected token) and a cursor layer are reactives; the main screen keeps
them equal to the token strip's cursor and layer, so either widget moves both. A pure view:
it gets token texts, phases and top-1 ids, in batches (`append`).

2,000 tokens x 56 layers must refresh within the routing panel's budget (5 ms), so only the
window on screen is built, every cell is a `Segment` made once per (expert, phase, cursor),
and a row is a list look-up per cell (benchmarks/render_timeline.py measures it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from mixtui.tui.widgets.heatmap import EXPERT_COLOURS, expert_colour, expert_ink
from mixtui.tui.widgets.token_strip import PROMPT_SHADE, TokenCursor, darker, display_text

if TYPE_CHECKING:
    import numpy as np
else:  # numpy loads when routing first needs it (core/lazy.py)
    from mixtui.core.lazy import np

HUES = len(EXPERT_COLOURS)
# id // HUES as one character: blank for the first HUES ids, then base-32 digits (up to 512
# experts, Qwen3-Next's count); beyond that "+" (the id at the cursor is the truth).
GLYPHS = " 123456789abcdefghijklmnopqrstuv"
MORE = "+"
NO_ROUTING = Segment("·", Style(color="#5a5a5a", dim=True))  # a token without routing
TICK_EVERY = 10  # a tick on the axis row every this many tokens
AXIS = Style(color="#777777")
CURSOR_MARK = Style(color="#ffffff", bold=True)
LABEL = Style(dim=True)
CURSOR_LABEL = Style(bold=True, reverse=True)
NOTE = Style(dim=True, italic=True)


def glyph(expert: int) -> str:
    """The character that tells apart the experts of one hue: id // HUES as a digit."""
    g = expert // HUES
    return GLYPHS[g] if 0 <= g < len(GLYPHS) else MORE


def _cell_style(expert: int, prompt: bool) -> Style:
    """The look of one cell: the hue of expert % HUES; prompt tokens darker (as the strip)."""
    colour = expert_colour(expert)
    if prompt:
        return Style(color="#d0d0d0", bgcolor=darker(colour, PROMPT_SHADE))
    return Style(color=expert_ink(expert), bgcolor=colour)


def _quoted(text: str, limit: int = 20) -> str:
    shown = display_text(text)
    if len(shown) > limit:
        shown = shown[:limit - 1] + "…"
    return f"'{shown}'"


class RoutingTimeline(TokenCursor, Widget, can_focus=True):
    """Top-1 experts per MoE layer (rows) and processed token (columns), growing as they come.

    Feed it with `append` (the token strip's arguments); `set_layers` names the MoE layers
    and the expert count (a new model), `clear` starts over, `show_dense` and `show_message`
    say why there is nothing to draw. When focused: left/right/home/end move the cursor
    token, up/down the cursor layer, page up/down a screenful of layers; a click on a cell
    picks its token and layer. Without a cursor the window follows the newest token.
    """

    DEFAULT_CSS = """
    RoutingTimeline {
        height: auto;
    }
    RoutingTimeline:focus {
        background-tint: $foreground 5%;
    }
    """

    BINDINGS = [
        *TokenCursor.CURSOR_BINDINGS,
        Binding("up", "layer(-1)", "Layer up", key_display="↑"),
        Binding("down", "layer(1)", "Layer down", key_display="↓"),
        Binding("pageup", "page(-1)", "Layers up", show=False),
        Binding("pagedown", "page(1)", "Layers down", show=False),
    ]

    cursor: reactive[int | None] = reactive(None)
    """The selected token's index (0 = first), or None: the window follows the newest."""
    layer_index: reactive[int] = reactive(0)
    """Index into `moe_layers` of the cursor layer (the strip's layer, kept equal)."""

    def __init__(self, *, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._layers: tuple[int, ...] = ()
        self._num_experts = 8
        self._message: str | None = "Send a prompt: each token's top-1 experts appear here."
        self._texts: list[str] = []
        self._prompt_flags: list[bool] = []
        # (capacity, L) int16 top-1 ids, -1: no routing; grown by doubling.
        self._top1: np.ndarray | None = None
        self._prompt: np.ndarray | None = None  # (capacity,) bool
        self._first = 0  # first token column on screen
        self._top = 0  # first layer row on screen
        self._free = False  # the user scrolled the window by mouse: it stays put
        self._stale = True
        self._lines: list[Strip] = []
        self._base = Style()
        self._table: list[Segment] = []  # cells by expert + (E + 1) * prompt; [E]: none
        self._cursor_cells: dict[tuple[int, bool], Segment] = {}
        self._labels: list[Segment] = []  # per MoE layer, then the cursor layer's form

    # -- public API -------------------------------------------------------------------------
    @property
    def moe_layers(self) -> tuple[int, ...]:
        return self._layers

    @property
    def token_count(self) -> int:
        return len(self._texts)

    @property
    def window(self) -> tuple[int, int, int, int]:
        """(first token, tokens, first layer index, layers) on screen, after the last paint."""
        cols, rows = self._room(*self.size)
        n = len(self._texts)
        return self._first, min(cols, n - self._first), self._top, min(
            rows, len(self._layers) - self._top)

    def set_layers(self, layers: tuple[int, ...], num_experts: int = 8) -> None:
        """The model's MoE layer numbers and expert count; other ones than before forget the
        tokens' experts (the same ones, a reload: kept)."""
        layers = tuple(layers)
        if layers == self._layers and num_experts == self._num_experts \
                and self._message is None:
            return
        self._layers, self._num_experts = layers, num_experts
        self._message = None
        n = len(self._texts)
        self._top1 = np.full((n, len(layers)), -1, dtype=np.int16) if n else None
        self._prompt = np.array(self._prompt_flags, dtype=bool) if n else None
        self._table = []
        self._cursor_cells.clear()
        self._labels = []
        self._top = 0
        self.layer_index = min(self.layer_index, max(len(layers) - 1, 0))
        self._changed(layout=True)

    def show_dense(self, name: str = "This model") -> None:
        """A dense model: no experts, so nothing to draw."""
        self.show_message(f"{name} is dense: every token uses all its parameters, no "
                          "experts to route to.")

    def show_message(self, text: str) -> None:
        """A line of text in place of the picture (the tokens are kept)."""
        self._message = text
        self._layers = ()
        self._top1 = None
        self._prompt = None
        self._changed(layout=True)

    def append(self, texts: Sequence[str], phases: Sequence[str],
               top1: np.ndarray | None = None) -> None:
        """Add processed tokens: texts, phases ("prompt" / "generate") and top-1 experts.

        top1: (n, L) ints (`token_strip.top1_experts`), None where routing is not known.
        """
        n = len(texts)
        if len(phases) != n:
            raise ValueError(f"{n} token texts but {len(phases)} phases")
        if top1 is not None and top1.shape != (n, len(self._layers)):
            raise ValueError(f"top1 has shape {top1.shape}, expected ({n}, {len(self._layers)})"
                             " (call set_layers first)")
        if not n:
            return
        start = len(self._texts)
        self._texts += texts
        flags = [p == "prompt" for p in phases]
        self._prompt_flags += flags
        if self._message is None:
            capacity = 0 if self._top1 is None else self._top1.shape[0]
            if capacity < start + n:  # grow by doubling: appends stay cheap
                size = max(2 * capacity, start + n, 256)
                grown = np.full((size, len(self._layers)), -1, dtype=np.int16)
                prompt = np.zeros(size, dtype=bool)
                if self._top1 is not None and self._prompt is not None:
                    grown[:start] = self._top1[:start]
                    prompt[:start] = self._prompt[:start]
                self._top1, self._prompt = grown, prompt
            assert self._top1 is not None and self._prompt is not None
            self._top1[start:start + n] = -1 if top1 is None else top1
            self._prompt[start:start + n] = flags
        self._changed()

    def clear(self) -> None:
        """Forget all tokens."""
        self._texts, self._prompt_flags = [], []
        self._top1 = self._prompt = None
        self._first = 0
        self._free = False
        self.cursor = None
        self._changed()

    def expert_at(self, token: int, layer_index: int) -> int | None:
        """The top-1 expert drawn for a token at a layer (None: no routing)."""
        if self._top1 is None or not 0 <= token < len(self._texts):
            return None
        expert = int(self._top1[token, layer_index])
        return expert if expert >= 0 else None

    def cell_at(self, x: int, y: int) -> tuple[int | None, int | None]:
        """(token, layer index) drawn at content cell (x, y); None where there is none."""
        label = self._label_width()
        first, tokens, top, layers = self.window
        token = first + x - label if label <= x < label + tokens else None
        layer = top + y - 1 if 1 <= y <= layers else None
        return token, layer

    # -- reactives --------------------------------------------------------------------------
    def watch_cursor(self) -> None:
        self._free = False
        self._changed()

    def watch_layer_index(self) -> None:
        self._free = False
        self._changed()

    # -- actions ----------------------------------------------------------------------------
    def action_layer(self, step: int) -> None:
        self.layer_index += step

    def action_page(self, step: int) -> None:
        _, rows = self._room(*self.size)
        self.layer_index += step * max(rows, 1)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        token, layer = self.cell_at(offset.x, offset.y)
        if token is not None:
            self.cursor = token
        if layer is not None:
            self.layer_index = layer

    def _scroll(self, tokens: int, layers: int) -> None:
        """Move the window by mouse, leaving the cursor where it is."""
        cols, rows = self._room(*self.size)
        self._first = max(min(self._first + tokens, len(self._texts) - cols), 0)
        self._top = max(min(self._top + layers, len(self._layers) - rows), 0)
        self._free = True
        self._changed()

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        event.stop()
        self._scroll(8, 0) if event.shift else self._scroll(0, 1)

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        event.stop()
        self._scroll(-8, 0) if event.shift else self._scroll(0, -1)

    def on_mouse_scroll_right(self, event: events.MouseScrollRight) -> None:
        event.stop()
        self._scroll(8, 0)

    def on_mouse_scroll_left(self, event: events.MouseScrollLeft) -> None:
        event.stop()
        self._scroll(-8, 0)

    # -- drawing ----------------------------------------------------------------------------
    def _changed(self, layout: bool = False) -> None:
        self._stale = True
        self._update_subtitle()
        self.refresh(layout=layout)

    def _label_width(self) -> int:
        return len(f"L{max(self._layers, default=0)}") + 1

    def _room(self, width: int, height: int) -> tuple[int, int]:
        """(token columns, layer rows) that fit the content region."""
        return max(width - self._label_width(), 0), max(height - 1, 0)

    def _update_subtitle(self) -> None:
        """The token at the cursor (the newest without one) and its top-1 id at the cursor
        layer: ids are the truth, colours repeat. The longest form that fits the border."""
        n = len(self._texts)
        if not n or self._message is not None:
            self.border_subtitle = None
            return
        index = self.cursor if self.cursor is not None else n - 1
        where = f"token {index + 1}/{n}" if self.cursor is not None else f"newest {n}/{n}"
        phase = "prompt" if self._prompt_flags[index] else "answer"
        expert = ""
        if self._layers:
            top1 = self.expert_at(index, self.layer_index)
            layer = f"L{self._layers[self.layer_index]}"
            expert = f"{layer}: no routing" if top1 is None else f"{layer}: expert {top1}"
        room = max(self.size.width - 6, 20)  # the border's corners and padding
        forms = (f"{where} {_quoted(self._texts[index])} {phase} · {expert}",
                 f"{where} {_quoted(self._texts[index], 12)} · {expert}",
                 f"{index + 1}/{n} {_quoted(self._texts[index], 8)} · {expert}",
                 f"{index + 1}/{n} · {expert}")
        self.border_subtitle = next((f for f in forms if len(f) <= room), forms[-1]).rstrip(" ·")

    def _tables(self) -> None:
        """The cells of every (expert, phase), made once per model and theme."""
        base = self._base
        e = self._num_experts
        none = Segment(NO_ROUTING.text, base + NO_ROUTING.style)
        self._table = [
            *(Segment(glyph(x), base + _cell_style(x, False)) for x in range(e)), none,
            *(Segment(glyph(x), base + _cell_style(x, True)) for x in range(e)), none]
        width = self._label_width()
        self._labels = [Segment(f"L{layer}".ljust(width), base + LABEL)
                        for layer in self._layers]

    def _cursor_cell(self, expert: int, prompt: bool) -> Segment:
        """The cell at the cursor token and layer: its glyph (or a dot) in bold, underlined."""
        key = (expert, prompt)
        cell = self._cursor_cells.get(key)
        if cell is None:
            if expert < 0:
                cell = Segment("●", self._base + Style(bold=True))
            else:
                text = glyph(expert)
                cell = Segment("●" if text == " " else text, self._base + _cell_style(
                    expert, prompt) + Style(bold=True, underline=True))
            self._cursor_cells[key] = cell
        return cell

    def _place(self, cols: int, rows: int) -> None:
        """The window: the newest tokens, or around the cursor (token and layer)."""
        n, layers = len(self._texts), len(self._layers)
        if not self._free:
            if self.cursor is None:
                self._first = n - cols
            elif self.cursor < self._first:
                self._first = self.cursor
            elif self.cursor >= self._first + cols:
                self._first = self.cursor - cols + 1
            if self.layer_index < self._top:
                self._top = self.layer_index
            elif self.layer_index >= self._top + rows:
                self._top = self.layer_index - rows + 1
        self._first = max(min(self._first, n - cols), 0)
        self._top = max(min(self._top, layers - rows), 0)

    def _rebuild(self, width: int, height: int) -> None:
        self._stale = False
        base = self._base
        if self._message is not None or not self._layers:
            message = self._message or ""
            self._lines = [Strip([Segment(message, base + NOTE)]).adjust_cell_length(
                max(width, 1), base)]
            return
        if not self._table:
            self._tables()
        cols, rows = self._room(width, height)
        self._place(cols, rows)
        first, top = self._first, self._top
        n = len(self._texts)
        stop = min(first + cols, n)
        label_width = self._label_width()
        cursor = self.cursor
        lines = [self._axis(first, stop, label_width, width)]
        shown_rows = min(rows, len(self._layers) - top)
        if stop > first and self._top1 is not None and self._prompt is not None:
            window = self._top1[first:stop, top:top + shown_rows].astype(np.int64)  # (t, r)
            window[window < 0] = self._num_experts  # the "no routing" cell
            codes = (window + (self._num_experts + 1) * self._prompt[first:stop, None]).T
            rows_codes = codes.tolist()
        else:
            rows_codes = [[] for _ in range(shown_rows)]
        table = self._table
        pad_width = width - label_width - (stop - first)
        pad = [Segment(" " * pad_width, base)] if pad_width > 0 else []
        for r, row in enumerate(rows_codes):
            layer = top + r
            label = self._labels[layer]
            if layer == self.layer_index:
                label = Segment(label.text, base + CURSOR_LABEL)
            cells = [table[c] for c in row]
            if cursor is not None and first <= cursor < stop and layer == self.layer_index:
                expert = self.expert_at(cursor, layer)
                cells[cursor - first] = self._cursor_cell(
                    -1 if expert is None else expert, self._prompt_flags[cursor])
            strip = Strip([label, *cells, *pad], max(width, label_width + stop - first))
            lines.append(strip.crop(0, width) if label_width + stop - first > width else strip)
        self._lines = lines

    def _axis(self, first: int, stop: int, label_width: int, width: int) -> Strip:
        """The row above the cells: a tick every TICK_EVERY tokens, ▼ over the cursor."""
        chars = [("╵" if i % TICK_EVERY == 0 else " ") for i in range(first, stop)]
        cursor = self.cursor
        # the label column: the first token on screen, where its number fits (never cut)
        number = f"{first + 1}"
        segments = [Segment((number if len(number) <= label_width else "").ljust(label_width),
                            self._base + AXIS)]
        if cursor is not None and first <= cursor < stop:
            at = cursor - first
            segments += [Segment("".join(chars[:at]), self._base + AXIS),
                         Segment("▼", self._base + CURSOR_MARK),
                         Segment("".join(chars[at + 1:]), self._base + AXIS)]
        else:
            segments.append(Segment("".join(chars), self._base + AXIS))
        return Strip(segments).adjust_cell_length(max(width, 1), self._base)

    # -- Textual ----------------------------------------------------------------------------
    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        # the axis row and every MoE layer (a max-height in CSS caps it; the rest scrolls)
        if self._message is not None or not self._layers:
            return 1
        return 1 + len(self._layers)

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return container.width

    def on_resize(self) -> None:
        self._changed()

    def on_mount(self) -> None:
        self.notify_style_update()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        if self.is_mounted and self.rich_style != self._base:
            self._base = self.rich_style  # a new theme: every cell again, in its colours
            self._table = []
            self._cursor_cells.clear()
        self._stale = True

    def render_line(self, y: int) -> Strip:
        if self._stale:
            self._rebuild(*self.size)
        return self._lines[y] if y < len(self._lines) else Strip([])

    def render(self) -> Text:
        """The lines on screen as plain Text (the widget itself paints line by line)."""
        if self._stale:
            self._rebuild(*self.size)
        return Text("\n".join(strip.text for strip in self._lines))
