"""The yardstick for benchmarks/startup.py: a bare Textual app (a Static, an Input, a Footer)
that reports its first frame the way mixtui does (MIXTUI_FIRST_FRAME_FILE) and exits."""

from __future__ import annotations

import os
import time
from pathlib import Path

from textual.app import App, ComposeResult
from textual.widgets import Footer, Input, Static


class BareApp(App[int]):
    def compose(self) -> ComposeResult:
        yield Static("bare")
        yield Input(placeholder="prompt")
        yield Footer()

    def on_mount(self) -> None:
        self.call_after_refresh(self._first_frame)

    def _first_frame(self) -> None:
        Path(os.environ["MIXTUI_FIRST_FRAME_FILE"]).write_text(f"{time.time():.6f}\n")
        self.exit(0)


if __name__ == "__main__":
    raise SystemExit(BareApp().run() or 0)
