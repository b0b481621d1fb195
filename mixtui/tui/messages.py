"""Textual messages that carry engine events from the engine thread to the app."""

from __future__ import annotations

from textual.message import Message

from mixtui.engine.messages import Event


class EngineEvent(Message):
    """One event from the engine process (posted from the engine thread; thread-safe)."""

    def __init__(self, event: Event, generation: int) -> None:
        super().__init__()
        self.event = event
        self.generation = generation  # which engine process sent it (stale ones are dropped)
