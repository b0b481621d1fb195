"""A whole conversation written in the trace format (docs/trace-format.md)."""

from __future__ import annotations

from pathlib import Path
from typing import IO

from mixtui.app.conversation.codec import write_file
from mixtui.app.conversation.routing import NO_EXPERT
from mixtui.app.conversation.tokens import TokenLog, TurnLog
from mixtui.app.trace import TraceWriter
from mixtui.core.routing import RoutingBatch
from mixtui.core.types import ModelInfo
from mixtui.engine.messages import Tokens


def export_trace(path: Path, info: ModelInfo, turns: TurnLog, tokens: TokenLog,
                 r: RoutingBatch | None) -> None:
    """A header from `info`, every token record in order, and after each answer's tokens one
    summary with its stats, text and generated ids; tokens of an unanswered request are
    written without a summary."""
    answers = turns.answer_texts()
    last = max(turns.answers - 1, tokens.requests[-1] if tokens.requests else -1)

    def write(out: IO[str]) -> None:
        writer = TraceWriter(out, info)
        for request in range(last + 1):
            start, stop = tokens.request_range(request)
            generated: list[int] = []
            for event in _events(tokens, request, start, stop, r):
                writer.tokens(event)
                if event.phase == "generate":
                    generated.extend(event.ids)
            if request < turns.answers:
                writer.summary(turns.stats[request], answers[request], generated)

    write_file(path, write, "write the trace")


def _events(tokens: TokenLog, request: int, start: int, stop: int,
            r: RoutingBatch | None) -> list[Tokens]:
    """A request's tokens as Tokens events: one per run of one phase, with or without
    routing (padding removed)."""
    events: list[Tokens] = []
    seen = {"prompt": 0, "generate": 0}
    ks = ([0] * (stop - start) if r is None  # experts per token of each row; 0: none
          else (r.experts[start:stop, 0] != NO_EXPERT).sum(axis=1).tolist())
    i = start
    while i < stop:
        phase, k = tokens.phases[i], ks[i - start]
        j = i + 1
        while j < stop and tokens.phases[j] == phase and ks[j - start] == k:
            j += 1
        routing = None
        if r is not None and k:
            routing = RoutingBatch(r.experts[i:j, :, :k], r.weights[i:j, :, :k], r.probs[i:j])
        events.append(Tokens(request, phase, seen[phase], tuple(tokens.ids[i:j]),
                             tuple(tokens.texts[i:j]), routing))
        seen[phase] += j - i
        i = j
    return events
