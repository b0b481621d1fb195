"""Textual messages that carry engine events from the engine thread to the main screen.

One message class per engine event, each handled by its own `@on` handler. Tokens arrive at
up to ~20 Hz: they wait in a `TokenInbox` and a `TokensArrived` message says "there are
some"; consecutive unhandled ones replace each other (`can_replace`), so the screen takes
whatever has arrived in one go. Every message carries the generation of the engine that
sent it: events of a replaced engine are dropped.
"""

from __future__ import annotations

import threading
from collections import deque

from textual.message import Message

from mixtui.engine.messages import EngineExited, Event, Failed, Finished, Loading, Ready, Tokens


class EngineMessage(Message):
    """An engine event (posted from the engine thread; posting is thread-safe)."""

    def __init__(self, generation: int) -> None:
        super().__init__()
        self.generation = generation  # which engine process sent it


class EngineLoading(EngineMessage):
    def __init__(self, event: Loading, generation: int) -> None:
        super().__init__(generation)
        self.event = event


class EngineReady(EngineMessage):
    def __init__(self, event: Ready, generation: int) -> None:
        super().__init__(generation)
        self.event = event


class TokensArrived(EngineMessage):
    """Tokens wait in the inbox; one of these stands for all that arrived meanwhile."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, TokensArrived)


class EngineFinished(EngineMessage):
    def __init__(self, event: Finished, generation: int) -> None:
        super().__init__(generation)
        self.event = event


class EngineFailed(EngineMessage):
    def __init__(self, event: Failed, generation: int) -> None:
        super().__init__(generation)
        self.event = event


class EngineGone(EngineMessage):
    """The engine process exited (`EngineExited`)."""

    def __init__(self, event: EngineExited, generation: int) -> None:
        super().__init__(generation)
        self.event = event


class TokenInbox:
    """Tokens events in arrival order, from the engine thread to the UI thread."""

    def __init__(self) -> None:
        self._events: deque[tuple[int, Tokens]] = deque()
        self._lock = threading.Lock()

    def put(self, event: Tokens, generation: int) -> None:
        with self._lock:
            self._events.append((generation, event))

    def take(self) -> list[tuple[int, Tokens]]:
        with self._lock:
            events = list(self._events)
            self._events.clear()
        return events


def engine_message(event: Event, generation: int, inbox: TokenInbox) -> EngineMessage:
    """The message for one engine event (a Tokens event goes into `inbox`)."""
    if isinstance(event, Tokens):
        inbox.put(event, generation)
        return TokensArrived(generation)
    if isinstance(event, Loading):
        return EngineLoading(event, generation)
    if isinstance(event, Ready):
        return EngineReady(event, generation)
    if isinstance(event, Finished):
        return EngineFinished(event, generation)
    if isinstance(event, Failed):
        return EngineFailed(event, generation)
    if isinstance(event, EngineExited):
        return EngineGone(event, generation)
    # a benchmark's events never come from the chat's engine: it is sent no benchmark
    return EngineFailed(Failed(None, f"internal error: unexpected {event!r}; please report "
                                     "it.", code="internal-error"), generation)
