"""The token strip: the conversation's tokens coloured by their top-1 expert at one layer.

Like Figure 8 of the Mixtral paper: every processed token (prompt and generated) on the
background colour of the expert that gave it the largest gate weight at the selected MoE
layer. A cursor picks a token (keys or a click) and tells the app, which then shows that
token's full routing in the heatmap. A pure view: it gets token texts and expert ids.

Conversations grow to thousands of tokens and arrive at about 20 Hz, so the layout into
lines is incremental (new tokens are placed after the last one) and only the lines on
screen are turned into segments.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from mixtui.tui.widgets.heatmap import EXPERT_COLOURS, expert_colour, expert_ink

if TYPE_CHECKING:
    import numpy as np
else:  # numpy loads when routing first needs it (core/lazy.py)
    from mixtui.core.lazy import np

# Control characters as visible symbols, so a token never breaks or hides the line.
_VISIBLE = {c: chr(0x2400 + c) for c in range(32)} | {0x7F: "\u2421", 0x0A: "⏎", 0x09: "⇥"}
EMPTY_TOKEN = "·"  # a token with no text of its own (e.g. part of a multi-byte character)

AUTO_LINES = 8  # token lines shown with `height: auto`
PROMPT_SHADE = 0.45  # prompt tokens: the expert's colour, this much darker
# More experts than colours: the most frequent top-1 experts at the layer get one each, the
# rest share a grey (ids are the truth wherever they are shown: the heatmap).
DISTINCT = len(EXPERT_COLOURS) - 1
OTHERS = -2  # the colour index of the experts without a colour of their own
OTHERS_COLOUR = "#6e6e6e"


def top1_experts(experts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The chosen expert with the largest gate weight: (..., L, k) ids and weights -> (..., L).

    Not `experts[..., 0]`: the order of the chosen experts is the router's, not by weight.
    """
    best = np.argmax(weights, axis=-1)[..., None]
    return np.take_along_axis(experts, best, axis=-1)[..., 0]


def display_text(text: str) -> str:
    """A token's text as shown: control characters (newlines too) as visible symbols."""
    return text.translate(_VISIBLE) if text else EMPTY_TOKEN


def darker(colour: str, amount: float) -> str:
    return "#" + "".join(f"{round(int(colour[i:i + 2], 16) * (1 - amount)):02x}"
                         for i in (1, 3, 5))


class TokenCursor:
    """The cursor keys over a run of tokens (← → Home End), for the token strip and the
    routing timeline, which share one cursor and layer: the widget keeps the tokens' texts
    in `_texts`, its MoE layers in `_layers`, and the `cursor` (None: the newest) and
    `layer_index` reactives, which these validate."""

    CURSOR_BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left", "cursor_left", "Previous token", show=False),
        Binding("right", "cursor_right", "Next token", show=False),
        Binding("home", "cursor_first", "First token", show=False),
        Binding("end", "cursor_last", "Last token", show=False),
    ]  # to spread in each widget's BINDINGS: Textual reads bindings of widget classes only

    _texts: list[str]
    _layers: tuple[int, ...]
    cursor: int | None

    def validate_cursor(self, value: int | None) -> int | None:
        if value is None or not self._texts:
            return None
        return min(max(value, 0), len(self._texts) - 1)

    def validate_layer_index(self, value: int) -> int:
        return min(max(value, 0), max(len(self._layers) - 1, 0))

    def action_cursor_left(self) -> None:
        if self._texts:
            self.cursor = len(self._texts) - 1 if self.cursor is None else self.cursor - 1

    def action_cursor_right(self) -> None:
        if self._texts:
            self.cursor = len(self._texts) - 1 if self.cursor is None else self.cursor + 1

    def action_cursor_first(self) -> None:
        if self._texts:
            self.cursor = 0

    def action_cursor_last(self) -> None:
        if self._texts:
            self.cursor = len(self._texts) - 1


class TokenStrip(TokenCursor, Widget, can_focus=True):
    """Processed tokens coloured by their top-1 expert at layer `moe_layers[layer_index]`.

    Feed it with `append`; `set_layers` names the MoE layers (a new model), `clear` starts
    over, `show_dense` says there is nothing to colour by. When focused: left/right move the
    cursor one token, home/end to the first/last token, up/down change the layer; a click
    puts the cursor on a token. Every cursor move posts `TokenStrip.CursorMoved`.
    """

    DEFAULT_CSS = """
    TokenStrip {
        height: 6;
    }
    TokenStrip:focus {
        background-tint: $foreground 5%;
    }
    """

    BINDINGS = [
        *TokenCursor.CURSOR_BINDINGS,
        Binding("up", "previous_layer", "Layer up", key_display="↑"),
        Binding("down", "next_layer", "Layer down", key_display="↓"),
    ]

    layer_index: reactive[int] = reactive(0)
    """Index into `moe_layers` of the MoE layer whose top-1 experts colour the tokens."""
    colouring: reactive[bool] = reactive(True)
    """False: plain text (prompt tokens still in italics)."""
    cursor: reactive[int | None] = reactive(None)
    """The selected token's index in the strip, or None (the strip follows the newest)."""

    @dataclass
    class CursorMoved(Message):
        """The cursor moved to token `index` (its index in the strip, 0 = first token)."""

        token_strip: TokenStrip
        index: int

        @property
        def control(self) -> TokenStrip:
            return self.token_strip

    def __init__(self, *, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._layers: tuple[int, ...] = ()
        self._num_experts = 8
        self._dense = False
        self._texts: list[str] = []  # as displayed
        self._widths: list[int] = []  # cells of each displayed text
        self._prompt: list[bool] = []
        # (capacity, L); -1: not known. None until the first token (numpy is not needed to
        # draw an empty strip, nor loaded before the first frame: core/lazy.py).
        self._top1: np.ndarray | None = None
        # Layout into lines of `_layout_width` cells, extended as tokens arrive.
        self._layout_width = 0
        self._line_starts: list[int] = []  # first token of each line
        self._token_x: list[int] = []  # each token's column in its line
        self._x = 0  # cells used on the last line
        # What is on screen.
        self._first_line = 0
        self._strips: list[Strip] = []
        self._spans: list[list[tuple[int, int, int]]] = []  # per token line: (x0, x1, index)
        self._stale = True
        self._styles: dict[tuple[Style, int, bool, bool], Style] = {}
        # Many experts: {expert: colour index} for (layer, tokens) it was counted for.
        self._slots: dict[int, int] = {}
        self._slots_for: tuple[int, int] | None = None

    # -- public API -------------------------------------------------------------------------
    @property
    def moe_layers(self) -> tuple[int, ...]:
        """The model's MoE layer numbers (`Widget.layers` is Textual's, for CSS layers)."""
        return self._layers

    @property
    def token_count(self) -> int:
        return len(self._texts)

    @property
    def shown_layer(self) -> int | None:
        """The model layer number shown (None without MoE layers)."""
        return self._layers[self.layer_index] if self._layers else None

    def set_layers(self, layers: tuple[int, ...], num_experts: int = 8) -> None:
        """The model's MoE layer numbers and expert count. Other layers than before (another
        model): the tokens' colours are forgotten; the same ones (a reload): kept."""
        layers = tuple(layers)
        if layers == self._layers and num_experts == self._num_experts and not self._dense:
            return
        self._layers = layers
        self._num_experts = num_experts
        self._dense = False
        # the panel says, in one line, what the colours mean when they cannot all differ
        self.border_subtitle = (f"{DISTINCT} most frequent coloured, rest grey"
                                if self._many() else None)
        self._top1 = (np.full((len(self._texts), len(self._layers)), -1, dtype=np.int16)
                      if self._texts else None)  # no tokens: nothing to allocate yet
        self.layer_index = min(self.layer_index, max(len(self._layers) - 1, 0))
        self._changed()

    def show_dense(self) -> None:
        """A dense model: tokens are shown plain, and the strip says why."""
        self._dense = True
        self._layers = ()
        self.border_subtitle = None
        self._top1 = (np.full((len(self._texts), 0), -1, dtype=np.int16) if self._texts
                      else None)
        self.layer_index = 0
        self._changed()

    def append(self, texts: Sequence[str], phases: Sequence[str],
               top1: np.ndarray | None = None) -> None:
        """Add processed tokens: their texts, phases ("prompt" or "generate") and top-1 experts.

        top1: (n, L) int, the chosen expert with the largest gate weight at each MoE layer
        (see `top1_experts`); None when the routing is not known (capture off, dense model).
        """
        n = len(texts)
        if len(phases) != n:
            raise ValueError(f"{n} token texts but {len(phases)} phases")
        if top1 is not None and top1.shape != (n, len(self._layers)):
            raise ValueError(f"top1 has shape {top1.shape}, expected ({n}, {len(self._layers)})"
                             " (call set_layers first)")
        if not n:
            return
        shown = [display_text(t) for t in texts]
        start = len(self._texts)
        self._texts += shown
        self._widths += [cell_len(t) for t in shown]
        self._prompt += [p == "prompt" for p in phases]
        capacity = 0 if self._top1 is None else self._top1.shape[0]
        if capacity < start + n:  # grow by doubling: appends stay cheap
            grown = np.full((max(2 * capacity, start + n, 256), len(self._layers)),
                            -1, dtype=np.int16)
            if self._top1 is not None:
                grown[:start] = self._top1[:start]
            self._top1 = grown
        assert self._top1 is not None
        self._top1[start:start + n] = -1 if top1 is None else top1
        self._changed()

    def clear(self) -> None:
        """Forget all tokens."""
        self._texts, self._widths, self._prompt = [], [], []
        self._top1 = None
        self._layout_width = 0
        self._first_line = 0
        self.cursor = None
        self._changed()

    def coloured_experts(self) -> list[int] | None:
        """With more experts than colours: the experts that have a colour of their own at the
        shown layer, most frequent top-1 first (the rest are grey); None otherwise."""
        if not self._many():
            return None
        return sorted(self._colour_slots(), key=self._colour_slots().__getitem__)

    def next_layer(self) -> None:
        self.layer_index += 1  # clamped by validate_layer_index

    def previous_layer(self) -> None:
        self.layer_index -= 1

    # -- reactives --------------------------------------------------------------------------
    def watch_cursor(self, value: int | None) -> None:
        self._changed()
        if value is not None:
            self.post_message(self.CursorMoved(self, value))

    def watch_layer_index(self) -> None:
        self._changed()

    def watch_colouring(self) -> None:
        self._changed()

    # -- actions ----------------------------------------------------------------------------
    def action_next_layer(self) -> None:
        self.next_layer()

    def action_previous_layer(self) -> None:
        self.previous_layer()

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        index = self.token_at(offset.x, offset.y)
        if index is not None:
            self.cursor = index

    def token_at(self, x: int, y: int) -> int | None:
        """The token drawn at content cell (x, y), if any (row 0 is the legend)."""
        row = y - 1
        if not 0 <= row < len(self._spans):
            return None
        for x0, x1, index in self._spans[row]:
            if x0 <= x < x1:
                return index
        return None

    # -- layout -----------------------------------------------------------------------------
    def _changed(self) -> None:
        self._stale = True
        self._slots_for = None  # new tokens, layers or colouring: counted again when drawn
        self.refresh()

    def _lay_out(self, width: int) -> None:
        """Place the tokens not placed yet (all of them again after a change of width)."""
        if width != self._layout_width or len(self._token_x) > len(self._texts):
            self._layout_width = width
            self._line_starts, self._token_x, self._x = [], [], 0
        starts, xs, x = self._line_starts, self._token_x, self._x
        widths = self._widths
        for i in range(len(xs), len(widths)):
            w = widths[i]
            if not starts or (x > 0 and x + w > width):
                starts.append(i)
                x = 0
            xs.append(x)
            x += w
        self._x = x

    def _many(self) -> bool:
        return self._num_experts > len(EXPERT_COLOURS) and bool(self._layers)

    def _colour_slots(self) -> dict[int, int]:
        """{expert: colour index} for the DISTINCT most frequent top-1 experts at the shown
        layer among the tokens so far (ties: the lower id); counted again as tokens come."""
        n = len(self._texts)
        key = (self.layer_index, n)
        if self._slots_for != key:
            self._slots_for = key
            self._slots = {}
            if n and self._top1 is not None:
                top1 = self._top1[:n, self.layer_index]
                counts = np.bincount(top1[top1 >= 0].astype(np.int64),
                                     minlength=self._num_experts)
                ranked = np.argsort(-counts, kind="stable")[:DISTINCT]
                self._slots = {int(e): slot for slot, e in enumerate(ranked.tolist())
                               if counts[e] > 0}
        return self._slots

    def _style(self, base: Style, expert: int, prompt: bool, cursor: bool) -> Style:
        """`expert`: a colour index (an expert id, or its slot with many experts), -1 for
        none, OTHERS for grey."""
        key = (base, expert, prompt, cursor)
        style = self._styles.get(key)
        if style is None:
            if len(self._styles) > 1024:
                self._styles.clear()
            colour = OTHERS_COLOUR if expert == OTHERS else expert_colour(max(expert, 0))
            if expert == -1:
                style = Style(italic=True, dim=True) if prompt else Style()
            elif prompt:
                background = darker(colour, PROMPT_SHADE)
                style = Style(color="#ffffff", bgcolor=background, italic=True)
            else:
                ink = "#000000" if expert == OTHERS else expert_ink(expert)
                style = Style(color=ink, bgcolor=colour)
            if cursor:
                style += Style(reverse=True, underline=True, bold=True)
            style = self._styles[key] = base + style
        return style

    def _header(self, base: Style, width: int) -> Strip:
        n = len(self._texts)
        where = (f"token {self.cursor + 1}/{n}" if self.cursor is not None
                 else f"{n} tokens")
        if self._dense:
            segments = [Segment("dense model: no experts to colour tokens by", base + Style(
                italic=True)), Segment(f" · {where}", base + Style(dim=True))]
        elif not self._layers:
            segments = [Segment(f"tokens · {where}", base + Style(dim=True))]
        else:
            label = f"layer L{self._layers[self.layer_index]}"
            segments = [Segment(label, base + Style(bold=True))]
            tail = Segment(f" · {where}", base + Style(dim=True))
            if self.colouring and self._many():
                segments += self._many_legend(base, width - len(label) - len(tail.text))
            elif self.colouring:
                # The widest legend that fits: padded numbers, then bare ones, then no words.
                experts = range(self._num_experts)
                for pad, words in ((" ", " top-1 expert "), ("", " top-1 expert "), ("", " ")):
                    legend = sum(len(f"{pad}{e}{pad}") for e in experts)
                    if len(label) + len(words) + legend + len(tail.text) <= width:
                        break
                segments.append(Segment(words, base + Style(dim=True)))
                segments += [Segment(f"{pad}{e}{pad}", Style(color=expert_ink(e),
                                                             bgcolor=expert_colour(e)))
                             for e in experts]
            else:
                segments.append(Segment(" · colours off", base + Style(dim=True)))
            segments.append(tail)
        return Strip(segments).adjust_cell_length(width, base)

    def _many_legend(self, base: Style, room: int) -> list[Segment]:
        """The legend with more experts than colours: it says that the colours go to the
        most frequent top-1 experts, then as many of them as fit, in their colours."""
        slots = self._colour_slots()
        experts = sorted(slots, key=slots.__getitem__)
        dim = base + Style(dim=True)
        forms = ((f" top-1; colours: the {DISTINCT} most frequent ", " others grey"),
                 (f" top-1, {DISTINCT} most frequent: ", " rest grey"),
                 (" top-1, most frequent: ", ""), (" top-1: ", ""))
        words, rest = next((f for f in forms if len(f[0]) + len(f[1]) <= room), forms[-1])
        shown = list(experts)
        while shown and len(words) + sum(len(f" {e} ") for e in shown) + len(rest) > room:
            shown.pop()
        segments = [Segment(words, dim)]
        segments += [Segment(f" {e} ", Style(color=expert_ink(slots[e]),
                                             bgcolor=expert_colour(slots[e]))) for e in shown]
        if rest:
            segments.append(Segment(rest, dim))
        return segments

    def _rebuild(self, width: int, height: int) -> None:
        """The strips on screen: the legend, then the token lines around the cursor."""
        self._stale = False
        base = self.rich_style
        width = max(width, 1)
        self._lay_out(width)
        rows = max(height - 1, 0)
        lines = len(self._line_starts)
        cursor = self.cursor
        if cursor is None:
            first = max(lines - rows, 0)  # follow the newest tokens
        else:
            line = bisect_right(self._line_starts, cursor) - 1
            first = self._first_line
            if line < first:
                first = line
            elif line >= first + rows:
                first = line - rows + 1
            first = max(min(first, lines - rows), 0)
        self._first_line = first
        strips = [self._header(base, width)]
        spans: list[list[tuple[int, int, int]]] = []
        layer = self.layer_index
        colour = self.colouring and bool(self._layers) and not self._dense
        slots = self._colour_slots() if colour and self._many() else None
        for line in range(first, min(first + rows, lines)):
            start = self._line_starts[line]
            end = self._line_starts[line + 1] if line + 1 < lines else len(self._texts)
            experts = (self._top1[start:end, layer].tolist()
                       if colour and self._top1 is not None else [-1] * (end - start))
            if slots is not None:
                experts = [e if e < 0 else slots.get(e, OTHERS) for e in experts]
            segments, row = [], []
            for i, expert in zip(range(start, end), experts, strict=True):
                segments.append(Segment(self._texts[i], self._style(
                    base, expert, self._prompt[i], i == cursor)))
                x = self._token_x[i]
                row.append((x, x + self._widths[i], i))
            strips.append(Strip(segments).adjust_cell_length(width, base))
            spans.append(row)
        self._strips, self._spans = strips, spans

    # -- Textual ----------------------------------------------------------------------------
    def on_resize(self) -> None:
        self._changed()

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        # Only used with `height: auto`: the legend and up to AUTO_LINES lines of tokens.
        self._lay_out(max(width, 1))
        return 1 + min(len(self._line_starts), AUTO_LINES)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._stale = True

    def render_line(self, y: int) -> Strip:
        if self._stale:
            self._rebuild(*self.size)
        return self._strips[y] if y < len(self._strips) else Strip([])

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return container.width  # tokens flow into whatever width there is

    def render(self) -> Text:
        """The lines on screen as plain Text (the widget itself paints line by line)."""
        if self._stale:
            self._rebuild(*self.size)
        return Text("\n".join(strip.text for strip in self._strips))
