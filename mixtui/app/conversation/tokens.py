"""The turn log and the token log of a conversation: what was said, and every token the model
processed for it, in order, with the answer each token belongs to."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field

from mixtui.core.types import Phase, Stats

PHASES: tuple[Phase, ...] = ("prompt", "generate")
ROLES = ("user", "assistant")


@dataclass
class TurnLog:
    """(role, content) turns and, for the i-th assistant turn, its statistics `stats[i]`."""

    turns: list[tuple[str, str]] = field(default_factory=list)
    stats: list[Stats] = field(default_factory=list)

    @property
    def answers(self) -> int:
        return len(self.stats)

    @property
    def pending(self) -> bool:
        """True while the last turn is a user turn without an answer."""
        return bool(self.turns) and self.turns[-1][0] == "user"

    def answer_texts(self) -> list[str]:
        return [content for role, content in self.turns if role == "assistant"]

    def clear(self) -> None:
        self.turns.clear()
        self.stats.clear()


@dataclass
class TokenLog:
    """Every processed token: id, text, phase and the index of the answer it belongs to."""

    ids: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    phases: list[Phase] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)  # rising: answer 0's tokens first

    def __len__(self) -> int:
        return len(self.ids)

    def append(self, ids: Sequence[int], texts: Sequence[str], phase: Phase,
               request: int) -> None:
        self.ids.extend(int(t) for t in ids)
        self.texts.extend(texts)
        self.phases.extend([phase] * len(ids))
        self.requests.extend([request] * len(ids))

    def truncate(self, n: int) -> None:
        """Keep the first n tokens."""
        del self.ids[n:], self.texts[n:], self.phases[n:], self.requests[n:]

    def first_of(self, request: int) -> int:
        """Index of the first token of `request` or of any later one."""
        return bisect_left(self.requests, request)

    def request_range(self, request: int) -> tuple[int, int]:
        """(start, stop): the token indices of request `request` (empty if it has none)."""
        return bisect_left(self.requests, request), bisect_right(self.requests, request)
