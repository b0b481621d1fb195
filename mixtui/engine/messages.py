"""What the engine process and its caller say to each other: typed, picklable dataclasses.

Commands go to the engine; events come back. Token events carry several tokens at once
(with their routing) because routing reaches the host in batches, and because a UI that
refreshes at about 20 Hz needs no more.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mixtui.core.errors import MixtuiError, Remedy, UsageError
from mixtui.core.routing import RoutingBatch
from mixtui.core.types import DEFAULT_CONTEXT, ModelInfo, Phase, Sampling, Stats


# -- commands -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Load:
    """Load a model from a local directory (downloads happen before, never in the engine)."""

    path: str
    name: str
    max_kv_size: int | None = DEFAULT_CONTEXT
    experts_per_token: int | None = None


@dataclass(frozen=True)
class Generate:
    """Continue a conversation (chat models) or a text (base models)."""

    request_id: int
    messages: tuple[tuple[str, str], ...]  # (role, content), oldest first
    system: str | None = None
    sampling: Sampling = field(default_factory=Sampling)
    capture: bool = True
    completion: bool = False  # True: plain text continuation, no chat template


@dataclass(frozen=True)
class SetExpertsPerToken:
    k: int | None  # None: back to the model's own number


@dataclass(frozen=True)
class ResetConversation:
    """Forget the KV cache (a new conversation)."""


@dataclass(frozen=True)
class Shutdown:
    pass


Command = Load | Generate | SetExpertsPerToken | ResetConversation | Shutdown


# -- events ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Loading:
    stage: str
    done: int
    total: int


@dataclass(frozen=True)
class Ready:
    info: ModelInfo


@dataclass(frozen=True)
class Tokens:
    """Consecutive processed tokens; `start` is the index of the first in the request's stream."""

    request_id: int
    phase: Phase
    start: int
    ids: tuple[int, ...]
    texts: tuple[str, ...]
    routing: RoutingBatch | None  # None when capture is off or the model is dense


@dataclass(frozen=True)
class Finished:
    request_id: int
    text: str
    stats: Stats


@dataclass(frozen=True)
class Failed:
    """The command failed; the engine is still usable. `reason` is one sentence for the user."""

    request_id: int | None
    reason: str
    detail: str = ""  # a traceback, for --debug only
    usage: bool = False  # the input was at fault (exit code 2 in the CLI)
    code: str = "engine-failed"  # the error's code (core/errors.py)
    facts: dict[str, Any] = field(default_factory=dict)  # and its facts
    template: str = ""  # with remedies: the sentence each front end words its own way
    remedies: tuple[Remedy, ...] = ()

    @classmethod
    def of(cls, request_id: int | None, error: MixtuiError) -> Failed:
        """The event for an error the engine raised."""
        return cls(request_id, str(error), error.detail, isinstance(error, UsageError),
                   error.code, dict(error.facts), error.template, error.remedies)

    def error(self) -> MixtuiError:
        """The error again, on the caller's side (exit code 2 when the input was at fault)."""
        kind = UsageError if self.usage else MixtuiError
        if self.remedies:
            return kind(self.template, self.detail, code=self.code, facts=self.facts,
                        remedies=self.remedies)
        return kind(self.reason, self.detail, code=self.code, facts=self.facts)


@dataclass(frozen=True)
class EngineExited:
    """The engine process is gone (crash, kill, out of memory); start a new one."""

    code: int | None

    @property
    def description(self) -> str:
        why = " (killed: often the system running out of memory)" if self.code == -9 else ""
        return f"The engine exited (code {self.code}){why}"

    @property
    def reason(self) -> str:
        return f"{self.description}; load the model again to go on."


Event = Loading | Ready | Tokens | Finished | Failed | EngineExited
