"""The model bar: the registry's models on number keys, which one is active, what it is doing.

One line below `WIDE` columns: the entries, then the active model's status. From `WIDE`
columns on, two lines: the entries with more detail, then the status. Entries shrink in
steps (sizes dropped, shorter names and tags, then symbols) until they fit, so 80 columns
still show all five models with their state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual import events
from textual.geometry import Size
from textual.message import Message
from textual.widget import Widget

WIDE = 120  # from this width on: two lines


@dataclass(frozen=True)
class BarEntry:
    """One model on the bar: its number key, registry key, name, local state and size."""

    number: int
    key: str
    name: str
    state: str  # "bundled", "downloaded", "partial", "not downloaded", "tight", "does not fit"
    size: str  # e.g. "26.3 GB"
    fit_reason: str = ""  # the memory plan in one sentence: the entry's tooltip
    pinned: bool = False  # on its key because the user pinned it (the picker's *)
    speed: str = ""  # a synthetic run's decode speed here, e.g. "≈ 23 tok/s here, synthetic"


@dataclass(frozen=True)
class _Tag:
    long: str
    short: str
    symbol: str
    style: Style


TAGS = {
    "bundled": _Tag("bundled", "bundled", "✓", Style(color="green")),
    "downloaded": _Tag("downloaded", "on disk", "✓", Style(color="green")),
    "partial": _Tag("partly downloaded", "partial", "↓", Style(color="yellow")),
    "not downloaded": _Tag("not downloaded", "not here", "↓", Style(color="yellow")),
    "tight": _Tag("tight fit", "tight", "!", Style(color="yellow", bold=True)),
    "does not fit": _Tag("does not fit", "too big", "✗", Style(color="red", bold=True)),
}
NUMBER = Style(bold=True)
ACTIVE = Style(reverse=True)
STATUS = Style(bold=True)
HINT = Style(dim=True)
SEPARATOR = " │ "
PIN = "★"

_NOISE = re.compile(r"^(v\d+(\.\d+)*|\d+-?bit|mlx|gguf)$", re.IGNORECASE)
_SIZE = re.compile(r"^\d+(\.\d+)?(x\d+(\.\d+)?)?[bm]$", re.IGNORECASE)


def name_forms(name: str) -> tuple[str, str, str]:
    """(medium, short, tiny) forms of a model name, e.g. for "Mixtral 8x7B Instruct v0.1":
    "Mixtral 8x7B Instruct", "Mixtral-8x7B-it", "8x7B-it". Versions, quantisation and
    parenthesised notes go; "Instruct" becomes "it"; tiny also drops the family name."""
    base = re.sub(r"\([^)]*\)", " ", name.rsplit("/", 1)[-1])
    words = [w for w in re.split(r"[\s_-]+", base) if w and not _NOISE.match(w)]
    if not words:
        return name, name, name
    medium = " ".join(words)
    short_words = ["it" if w.lower() in ("instruct", "chat", "it") else w for w in words]
    short = "-".join(short_words)
    size_at = next((i for i, w in enumerate(words) if _SIZE.match(w)), 0)
    tiny = "-".join(short_words[size_at:]) if size_at else short
    return medium, short, tiny


def _tag(state: str) -> _Tag:
    return TAGS.get(state, _Tag(state, state, "?", Style(dim=True)))


def _entry_parts(entry: BarEntry, level: int) -> list[tuple[str, Style | None]]:
    """An entry at detail `level` (0 = most), as (text, style) pieces."""
    medium, short, tiny = name_forms(entry.name)
    tag = _tag(entry.state)
    number = (f"{entry.number}{PIN if entry.pinned else ''}", NUMBER)
    if level == 0:
        speed = [(f" {entry.speed}", HINT)] if entry.speed else []
        return [number, (f" {medium} {entry.size} ", None), (tag.long, tag.style), *speed]
    # narrower: the figure alone ("≈ 4.2 tok/s"), then nothing
    brief = [(" " + entry.speed.split(" here")[0], HINT)] if entry.speed else []
    if level == 1:
        return [number, (f" {medium} ", None), (tag.short, tag.style), *brief]
    if level == 2:
        return [number, (f" {short} ", None), (tag.short, tag.style), *brief]
    if level == 3:
        return [number, (f" {short} ", None), (tag.symbol, tag.style)]
    if level == 4:
        return [number, (f" {short}", None), (tag.symbol, tag.style)]
    if level == 5:
        return [number, (f" {tiny}", None), (tag.symbol, tag.style)]
    return [number, (tag.symbol, tag.style)]


LEVELS = 7
_GAPS = ("  ", "  ", "  ", "  ", " ", " ", " ")  # between entries, per level


class ModelBar(Widget):
    """The models on keys 1-5 with their state; the active one reversed, with its status.

    `set_entries` with the registry's models, `set_active` with the active model's key and a
    status text. Hovering an entry shows its memory plan as a tooltip. Clicking an entry
    posts `ModelBar.Selected` (the app decides what to do).
    """

    DEFAULT_CSS = """
    ModelBar {
        height: auto;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    @dataclass
    class Selected(Message):
        """An entry was clicked."""

        model_bar: ModelBar
        key: str
        number: int

        @property
        def control(self) -> ModelBar:
            return self.model_bar

    def __init__(self, *, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._entries: list[BarEntry] = []
        self._active: str | None = None
        self._status = ""
        self._spans: list[tuple[int, int, BarEntry]] = []  # (x0, x1, entry) on the first line

    @property
    def entries(self) -> list[BarEntry]:
        return list(self._entries)

    def set_entries(self, entries: list[BarEntry]) -> None:
        self._entries = list(entries)
        self.refresh(layout=True)

    def set_active(self, key: str | None, status: str) -> None:
        """Mark the active model (None: none) and show its status, e.g. "ready"."""
        self._active, self._status = key, status
        self.refresh()

    # -- rendering --------------------------------------------------------------------------
    def _entries_text(self, level: int) -> tuple[Text, list[tuple[int, int, BarEntry]]]:
        text = Text()
        spans = []
        for i, entry in enumerate(self._entries):
            if i:
                text.append(_GAPS[level])
            start = len(text)
            active = entry.key == self._active
            if active:
                text.append("▶", ACTIVE + NUMBER)
            for piece, style in _entry_parts(entry, level):
                text.append(piece, ACTIVE + style if active and style else
                            ACTIVE if active else style)
            spans.append((start, len(text), entry))
        return text, spans

    def _status_text(self, wide: bool) -> Text:
        text = Text()
        if wide:
            active = next((e for e in self._entries if e.key == self._active), None)
            text.append("▶ ", STATUS)
            if active is not None:
                text.append(f"{name_forms(active.name)[0]}: ", STATUS)
            text.append(self._status or "no model loaded")
            if self._entries:
                last = max(e.number for e in self._entries)
                pinned = any(e.pinned for e in self._entries)
                text.append(f"   keys 1–{last} load a model" + (
                    " (★ pinned) · m picks any" if pinned else ""), HINT)
        else:
            text.append(self._status, STATUS)
        return text

    def render(self) -> Text:
        width = self.size.width or 80
        wide = width >= WIDE
        status = self._status_text(wide)
        chosen: tuple[Text, list[tuple[int, int, BarEntry]]] | None = None
        for level in range(LEVELS):
            entries, spans = self._entries_text(level)
            room = width if wide or not status else width - len(SEPARATOR) - status.cell_len
            if entries.cell_len <= room:
                chosen = entries, spans
                break
        if chosen is None:  # even the smallest form leaves no room: the status is cut
            chosen = self._entries_text(LEVELS - 1)
        line, self._spans = chosen
        if wide:
            line.append("\n")
            line.append_text(status)
        elif status:
            line.append(SEPARATOR, HINT)
            line.append_text(status)
            line.truncate(width, overflow="ellipsis")
        return line

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return 2 if width >= WIDE else 1

    def on_resize(self) -> None:
        self.refresh(layout=True)  # one or two lines, and another level of detail

    def _entry_at(self, event: events.MouseEvent) -> BarEntry | None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y != 0:
            return None
        return next((entry for x0, x1, entry in self._spans if x0 <= offset.x < x1), None)

    def on_click(self, event: events.Click) -> None:
        entry = self._entry_at(event)
        if entry is not None:
            self.post_message(self.Selected(self, entry.key, entry.number))

    def on_mouse_move(self, event: events.MouseMove) -> None:
        """Hovering an entry shows its memory plan (needs, budget, what would fit)."""
        entry = self._entry_at(event)
        tooltip = entry.fit_reason if entry is not None and entry.fit_reason else None
        if tooltip != self.tooltip:
            self.tooltip = tooltip
