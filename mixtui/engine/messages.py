"""What the engine process and its caller say to each other: typed, picklable dataclasses.

Commands go to the engine; events come back. Token events carry several tokens at once
(with their routing) because routing reaches the host in batches, and because a UI that
refreshes at about 20 Hz needs no more.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mixtui.routing.batch import RoutingBatch

Phase = Literal["prompt", "generate"]

DEFAULT_CONTEXT = 4096  # KV-cache size (max_kv_size) unless the user picks another


# -- settings carried by commands -------------------------------------------------------------
@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    max_tokens: int = 256


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
class ModelInfo:
    name: str
    path: str
    model_type: str
    num_layers: int
    moe_layers: tuple[int, ...]  # layer indices with an MoE block; empty for a dense model
    num_experts: int
    top_k: int  # experts per token in use now
    default_top_k: int
    total_params: int
    active_params: int
    weight_bytes: int  # as loaded
    kv_bytes_per_token: int
    max_kv_size: int | None
    chat_template: bool
    vocab_size: int
    device: str = ""  # where MLX runs, e.g. "gpu" or "cpu, OpenBLAS"

    @property
    def is_moe(self) -> bool:
        return bool(self.moe_layers)


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
class Stats:
    prompt_tokens: int  # tokens run through the model for the prompt
    cached_tokens: int  # prompt tokens reused from the previous turn's KV cache
    generation_tokens: int
    ttft_s: float
    prompt_tps: float
    generation_tps: float
    peak_memory_bytes: int
    kv_cache_bytes: int
    finish_reason: str  # "stop", "length", "context" (the context is full) or "cancelled"
    # the chat template has no system role: the system prompt went into the first user turn
    system_merged: bool = False


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
