"""The chat: turns and notices as wrapped lines in one scroll view, cheap to stream into.

A streaming answer grows ten times a second. Kept in ordinary widgets, each growth changes a
widget's height, and Textual then lays out and repaints the whole screen; on a small CPU that
cost slows the model itself (the engine shares the cores). Here the chat is one ScrollView
that keeps its own wrapped lines: appending text re-wraps only the last paragraph of the last
block and repaints only the lines that changed, and nothing else on the screen moves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

KINDS = ("user", "answer", "notice")
GROW_LINES = 40  # the virtual height grows in steps of this many lines


@dataclass
class Block:
    kind: str  # "user", "answer" or "notice"
    text: str = ""
    # wrapped lines of every paragraph but the last (they no longer change), and of the last
    done: list[str] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)
    done_chars: int = 0  # how much of `text` the `done` lines cover

    @property
    def lines(self) -> list[str]:
        return self.done + self.tail


def wrap_paragraph(text: str, width: int) -> list[str]:
    """Greedy word wrap of one paragraph (no newlines) into lines of at most `width` cells."""
    if not text:
        return [""]
    return [line.plain for line in Text(text).wrap(_CONSOLE, width)]


class _Console:
    """Just enough of rich's Console for Text.wrap (no terminal needed)."""

    def __init__(self) -> None:
        self.console = Console(width=10_000, legacy_windows=False, color_system=None)


_CONSOLE = _Console().console


class ChatLog(ScrollView, can_focus=False):
    """User turns, answers (streamed) and notices, oldest first."""

    COMPONENT_CLASSES = {"chatlog--user", "chatlog--answer", "chatlog--notice"}
    DEFAULT_CSS = """
    ChatLog { background: $surface; }
    ChatLog > .chatlog--user { background: $boost; color: $text; text-style: bold; }
    ChatLog > .chatlog--answer { color: $text; }
    ChatLog > .chatlog--notice { color: $warning; }
    """

    def __init__(self, *, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.blocks: list[Block] = []
        self._wrap_width = 0
        self._starts: list[int] = []  # first line of each block (a blank line before it)
        self._line_count = 0

    # -- public API -------------------------------------------------------------------------
    def add(self, kind: str, text: str = "") -> int:
        """A new block at the end; returns its index."""
        assert kind in KINDS, kind
        self.blocks.append(Block(kind))
        index = len(self.blocks) - 1
        self._set_text(index, text)
        return index

    def append(self, text: str, index: int = -1) -> None:
        """More text for a block (the last by default): the streaming answer."""
        if text:
            block = self.blocks[index]
            self._set_text(index % len(self.blocks), block.text + text)

    def set_text(self, index: int, text: str) -> None:
        self._set_text(index % len(self.blocks), text)

    def remove_block(self, index: int) -> None:
        del self.blocks[index]
        self._relayout(rewrap=False)

    def clear(self) -> None:
        self.blocks.clear()
        self._relayout(rewrap=False)

    def texts(self, kind: str | None = None) -> list[str]:
        return [b.text for b in self.blocks if kind is None or b.kind == kind]

    # -- wrapping ---------------------------------------------------------------------------
    def _width(self) -> int:
        return max(self.scrollable_content_region.width - 2, 8)  # one cell of margin each side

    def _wrap(self, block: Block, width: int, whole: bool) -> None:
        text = block.text
        if whole:
            block.done, block.done_chars = [], 0
        cut = text.rfind("\n") + 1  # paragraphs before `cut` are complete
        if cut > block.done_chars:
            for paragraph in text[block.done_chars:cut - 1].split("\n"):
                block.done.extend(wrap_paragraph(paragraph, width))
            block.done_chars = cut
        block.tail = wrap_paragraph(text[block.done_chars:], width)

    def _set_text(self, index: int, text: str) -> None:
        block = self.blocks[index]
        width = self._width()
        if width != self._wrap_width:
            block.text = text
            self._relayout(rewrap=True)
            return
        grown = text.startswith(block.text)
        before = len(block.lines)
        old_tail = len(block.tail)
        block.text = text
        self._wrap(block, width, whole=not grown)
        if len(block.lines) != before or index != len(self.blocks) - 1:
            self._relayout(rewrap=False)
            return
        # Same number of lines: repaint only the lines that may have changed.
        start = self._starts[index] + len(block.lines) - max(old_tail, len(block.tail))
        self.refresh_lines(start, max(old_tail, len(block.tail)))

    def _relayout(self, rewrap: bool) -> None:
        width = self._width()
        if rewrap or width != self._wrap_width:
            self._wrap_width = width
            for block in self.blocks:
                self._wrap(block, width, whole=True)
        following = self._following()
        self._starts = []
        line = 0
        for block in self.blocks:
            line += 1  # a blank line before each block
            self._starts.append(line)
            line += len(block.lines)
        self._line_count = line
        # A new virtual size means a layout of the whole screen: grow it in steps, not by
        # one line at a time (the rows past the last line are drawn blank).
        height = self.virtual_size.height
        if line > height or line < height - 2 * GROW_LINES or rewrap:
            height = (line // GROW_LINES + 1) * GROW_LINES
            self.virtual_size = Size(width + 2, height)
        self.refresh()
        if following:
            self._show_last_line()

    def _following(self) -> bool:
        """Is the last line on screen (so that new lines should stay in view)?"""
        return self.scroll_offset.y + self.scrollable_content_region.height >= self._line_count

    def _show_last_line(self) -> None:
        top = max(self._line_count - self.scrollable_content_region.height, 0)
        if top != self.scroll_offset.y:
            self.scroll_to(y=top, animate=False, immediate=True)

    def on_resize(self) -> None:
        self._relayout(rewrap=True)

    # -- rendering --------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        line = y + self.scroll_offset.y
        width = self.scrollable_content_region.width
        base = self.rich_style
        if line >= self._line_count or not self.blocks:
            return Strip.blank(width, base)
        # the block holding this line (blocks are few: a linear scan from the end is fine)
        index = len(self._starts) - 1
        while index > 0 and self._starts[index] > line:
            index -= 1
        block = self.blocks[index]
        row = line - self._starts[index]
        if row < 0 or row >= len(block.lines):
            return Strip.blank(width, base)
        style: Style = base + self.get_component_rich_style(f"chatlog--{block.kind}")
        text = " " + block.lines[row]
        return Strip([Segment(text, style)]).adjust_cell_length(width, style)
