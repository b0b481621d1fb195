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
from mixtui.families.inventory import Quantization


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
class LoadSynthetic:
    """Build a model of `config` with random weights in its checkpoint's layout (the same
    tensors, dtypes and quantization); nothing is read from disk or the network."""

    name: str
    config: dict[str, Any]
    quantization: Quantization | None
    seed: int = 0


@dataclass(frozen=True)
class Bench:
    """Time the loaded model at each experts-per-token value: a warm-up each, then `runs`
    rounds, each a run at every value in turn (interleaved, so that a machine's drift falls
    on all alike), every run from an empty KV cache, greedy, `gen_tokens` tokens whatever
    they are (no stop at EOS). Answered by one BenchMeasured per value, in order."""

    request_id: int
    prompt: str | None  # None: random token ids (a synthetic model has no real tokenizer)
    prompt_tokens: int | None  # cut or repeat the prompt's tokens to this many; None: as is
    gen_tokens: int
    runs: int
    experts_per_token: tuple[int | None, ...] = (None,)  # None: the model's own


@dataclass(frozen=True)
class Perplexity:
    """Score `text` in chunks of the model's context (at most `max_tokens` tokens)."""

    request_id: int
    text: str
    max_tokens: int
    experts_per_token: int | None = None


@dataclass(frozen=True)
class Probe:
    """Measure the memory bandwidth of the device MLX uses (a copy of a large array)."""

    request_id: int


@dataclass(frozen=True)
class Shutdown:
    pass


Command = (Load | LoadSynthetic | Generate | SetExpertsPerToken | ResetConversation | Bench
           | Perplexity | Probe | Shutdown)


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
class RunFigures:
    """One timed run: time to the first token (the prompt's processing), the speeds, and
    MLX's peak memory (the weights included)."""

    ttft_s: float
    prompt_tps: float
    decode_tps: float
    peak_memory_bytes: int
    prompt_tokens: int
    generated: int


@dataclass(frozen=True)
class BenchProgress:
    """Where a Bench, Perplexity or Probe is: `stage` ("warm-up", "run", "perplexity",
    "probe"), run `run` of `runs`, `tokens` of `total` tokens in it."""

    request_id: int
    stage: str
    run: int
    runs: int
    tokens: int
    total: int
    experts_per_token: int = 0  # the value being run (0: the model's own, or dense)


@dataclass(frozen=True)
class BenchMeasured:
    request_id: int
    runs: tuple[RunFigures, ...]
    experts_per_token: int  # the number the runs used (0: dense)
    cancelled: bool = False


@dataclass(frozen=True)
class PerplexityMeasured:
    request_id: int
    perplexity: float
    tokens: int  # tokens scored
    chunk: int  # tokens a chunk (the context each is scored in)
    experts_per_token: int


@dataclass(frozen=True)
class ProbeMeasured:
    request_id: int
    gbps: float  # median of the copies: bytes read + written per second / 1e9
    device: str
    mib: int  # the array copied


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


Event = (Loading | Ready | Tokens | Finished | Failed | EngineExited | BenchProgress
         | BenchMeasured | PerplexityMeasured | ProbeMeasured)
