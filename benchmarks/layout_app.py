"""The lab's first frame in plain Textual: the same CSS, containers, bordered and titled
panels, with Static placeholders and no mixtui code (benchmarks/startup.py --layout):
what Textual alone costs to draw mixtui's screen, against the bare app."""
from __future__ import annotations

import os
import time
from pathlib import Path

from textual.app import App, ComposeResult
from textual.containers import Container, Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, Input, Static

CSS = Path(__file__).resolve().parent.parent / "mixtui" / "tui" / "app.tcss"


class LayoutApp(App[int]):
    CSS_PATH = str(CSS)

    def compose(self) -> ComposeResult:
        yield Static("1 nano  2 Mistral  3 Mixtral 8x7B  4 Mixtral 8x22B  5 Instruct",
                     id="model-bar")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield Static("", id="chat")
                yield Static("layer L0 top-1 expert 01234567 · 0 tokens", id="strip")
            with Container(id="side"):
                with VerticalScroll(id="routing"):
                    yield Static("Send a prompt: each token's experts appear here.")
                yield Static("\n".join(f"row{i}      —" for i in range(22)), id="stats")
        yield Input(placeholder="Type a prompt and press Enter · Esc then ? for help",
                    id="prompt")
        yield Footer()

    def on_mount(self) -> None:
        for selector, title in (("#chat", "chat"), ("#strip", "tokens"), ("#routing", "routing"),
                                ("#stats", "speed · memory")):
            self.query_one(selector).border_title = title
        self.call_after_refresh(self._first_frame)

    def _first_frame(self) -> None:
        Path(os.environ["MIXTUI_FIRST_FRAME_FILE"]).write_text(f"{time.time():.6f}\n")
        self.exit(0)

if __name__ == "__main__":
    raise SystemExit(LayoutApp().run() or 0)
