"""The conversation the TUI shows: turns, per-answer statistics and every processed token.

Tokens are logged exactly as the engine's `Tokens` events arrive — each request's prompt
tokens (only those the KV cache did not already hold), then its generated tokens — with the
routing of each. The parts: the turn log and token log (tokens.py), the routing store
(routing.py), expert counts kept up to date as routing arrives (aggregates.py), and the file
codec and trace export (codec.py, export.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import mixtui.app.conversation.codec as codec
from mixtui.app.conversation.aggregates import ExpertCounts
from mixtui.app.conversation.codec import ConversationError, Corrupt
from mixtui.app.conversation.export import export_trace
from mixtui.app.conversation.routing import NO_EXPERT, RoutingStore
from mixtui.app.conversation.tokens import PHASES, TokenLog, TurnLog
from mixtui.core.routing import RoutingBatch
from mixtui.core.types import ModelInfo, Phase, Stats
from mixtui.engine.messages import Finished, Tokens

if TYPE_CHECKING:
    import numpy as np
else:  # numpy loads when routing first needs it (core/lazy.py)
    from mixtui.core.lazy import np


class TokenRouting(NamedTuple):
    """One token's routing: per MoE layer, its k chosen experts, their weights, all probs."""

    experts: np.ndarray  # (moe_layers, k) int32
    weights: np.ndarray  # (moe_layers, k) float32
    probs: np.ndarray  # (moe_layers, num_experts) float32


class TokenInfo(NamedTuple):
    id: int
    text: str
    phase: Phase
    request: int  # index of the answer the token belongs to (0 = the first answer)
    routing: TokenRouting | None  # None: dense model, or capture was off for it


class Conversation:
    """Turns, per-answer statistics and the log of every token the model processed.

    `turns` holds (role, content) pairs, role "user" or "assistant"; `stats[i]` belongs to the
    i-th assistant turn (answer i). Each logged token carries the index of the answer it was
    processed for: the tokens of request i are answer i's new prompt tokens and its generated
    tokens. Use the methods to change a conversation, not `turns` or `stats` directly.
    """

    def __init__(self, model: str, info: ModelInfo | None = None, system: str | None = None):
        self.model = model
        self.info = info
        self.system = system
        self._log = TurnLog()
        self._tokens = TokenLog()
        self._routing = RoutingStore()
        self._counts = ExpertCounts()
        self._active: int | None = None  # engine request id of the answer now arriving
        self._seen = {"prompt": 0, "generate": 0}  # its tokens so far, per phase

    @property
    def turns(self) -> list[tuple[str, str]]:
        return self._log.turns

    @property
    def stats(self) -> list[Stats]:
        return self._log.stats

    # -- changing it -------------------------------------------------------------------------
    def add_user(self, text: str) -> None:
        self._log.turns.append(("user", text))

    def add_tokens(self, event: Tokens) -> None:
        """Log the tokens of a `Tokens` event (they must arrive in the engine's order).

        The first event of a request binds its request id; tokens of another request before
        `finish` or `drop_unanswered`, or an event that does not continue its phase
        (`event.start` is the index within the request's phase), raise ValueError.
        """
        self._begin(event.request_id)
        if event.phase not in PHASES:
            raise ValueError(f"unknown phase {event.phase!r}")
        if event.start != self._seen[event.phase]:
            raise ValueError(f"request {event.request_id}: {event.phase} tokens from "
                             f"{event.start} arrived after {self._seen[event.phase]} of them")
        n = len(event.ids)
        if len(event.texts) != n:
            raise ValueError(f"{n} token ids arrived with {len(event.texts)} texts")
        self._routing.append(n, event.routing)  # checks the batch's shape first
        answer = self._log.answers
        if event.routing is not None and n:
            self._counts.add(answer, event.phase, event.routing.experts,
                             int(event.routing.probs.shape[2]))
        self._tokens.append(event.ids, event.texts, event.phase, answer)
        self._seen[event.phase] += n

    def finish(self, event: Finished) -> None:
        """The answer is complete: append the assistant turn (event.text) and its stats."""
        self._begin(event.request_id)
        self._log.turns.append(("assistant", event.text))
        self._log.stats.append(event.stats)
        self._end()

    def drop_unanswered(self) -> None:
        """Forget a request that failed: its trailing user turn and the tokens it processed."""
        self._drop_unfinished()
        if self._log.pending:
            self._log.turns.pop()
        self._end()

    def clear(self) -> None:
        """Forget all turns, stats and tokens (model, info and system prompt stay)."""
        self._log.clear()
        self._tokens = TokenLog()
        self._routing = RoutingStore()
        self._counts.clear()
        self._end()

    def _begin(self, request_id: int) -> None:
        if self._active is None:
            # Tokens of a request that never finished (e.g. saved while it ran) belong to no
            # answer: a new request replaces them.
            self._drop_unfinished()
            self._active = request_id
        elif request_id != self._active:
            raise ValueError(f"request {request_id} arrived while request {self._active} "
                             "is unfinished; call finish() or drop_unanswered() first")

    def _end(self) -> None:
        self._active = None
        self._seen = {"prompt": 0, "generate": 0}

    def _drop_unfinished(self) -> None:
        """Forget the tokens of requests after the last answer."""
        n = self._tokens.first_of(self._log.answers)
        if n < len(self._tokens):
            self._tokens.truncate(n)
            self._routing.truncate(n)
            self._counts.drop_from(self._log.answers)

    # -- reading it ----------------------------------------------------------------------------
    def __len__(self) -> int:
        """Tokens processed (the whole log)."""
        return len(self._tokens)

    @property
    def pending(self) -> bool:
        """True while the last turn is a user turn without an answer."""
        return self._log.pending

    def messages(self) -> tuple[tuple[str, str], ...]:
        """The turns, as `Generate.messages` takes them."""
        return tuple(self._log.turns)

    @property
    def ids(self) -> Sequence[int]:
        return self._tokens.ids

    @property
    def texts(self) -> Sequence[str]:
        return self._tokens.texts

    @property
    def phases(self) -> Sequence[Phase]:
        return self._tokens.phases

    @property
    def requests(self) -> Sequence[int]:
        return self._tokens.requests

    @property
    def layers(self) -> int:
        """MoE layers in the routing (from the routing, else from info; 0 if unknown/dense)."""
        if self._routing.layers is not None:
            return self._routing.layers
        return len(self.info.moe_layers) if self.info is not None else 0

    @property
    def num_experts(self) -> int:
        if self._routing.num_experts is not None:
            return self._routing.num_experts
        return self.info.num_experts if self.info is not None and self.info.is_moe else 0

    def request_range(self, request: int) -> tuple[int, int]:
        """(start, stop): the token indices of request `request` (empty if it has none)."""
        return self._tokens.request_range(request)

    def routing(self) -> RoutingBatch | None:
        """Routing of all tokens (read-only arrays), or None when no token has any.

        Tokens without routing (capture off for their request) have expert ids -1, weights 0
        and probs 0; when experts per token changed, rows with fewer experts are padded the
        same way at the end of the k axis.
        """
        return self._routing.batch()

    def token(self, i: int) -> TokenInfo:
        """Token i (negative counts from the end) with its own routing, padding removed."""
        n = len(self._tokens)
        if not -n <= i < n:
            raise IndexError(f"token {i} of {n}")
        i %= n
        routing = None
        r = self._routing.batch()
        if r is not None:
            k = int((r.experts[i, 0] != NO_EXPERT).sum())
            if k:
                routing = TokenRouting(r.experts[i, :, :k], r.weights[i, :, :k], r.probs[i])
        t = self._tokens
        return TokenInfo(t.ids[i], t.texts[i], t.phases[i], t.requests[i], routing)

    def counts(self, request: int | None = None, phase: Phase | None = None) -> np.ndarray:
        """(layers, num_experts) int64, read-only: how often each expert was among a token's
        chosen ones, over the whole conversation or the tokens of one request, optionally of
        one phase. Kept up to date as routing arrives, so this costs no counting."""
        counts = self._counts.get(request, phase)
        if counts is None:
            counts = np.zeros((self.layers, self.num_experts), np.int64)
            counts.flags.writeable = False
        return counts

    def top1(self, layer: int, request: int | None = None) -> np.ndarray:
        """(tokens,) int32: per token, the chosen expert with the largest gate weight at MoE
        layer ordinal `layer` (-1 for tokens without routing). Ties go to the earlier choice."""
        if not 0 <= layer < self.layers:
            raise IndexError(f"MoE layer ordinal {layer} out of range (0..{self.layers - 1})")
        start, stop = (0, len(self)) if request is None else self.request_range(request)
        r = self._routing.batch()
        if r is None:
            return np.full(stop - start, NO_EXPERT, np.int32)
        e = r.experts[start:stop, layer]
        w = np.where(e != NO_EXPERT, r.weights[start:stop, layer], -np.inf)
        choice = np.argmax(w, axis=1) if e.shape[1] else np.zeros(len(e), np.intp)
        return np.asarray(e[np.arange(len(e)), choice], np.int32)

    # -- files ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return codec.encode(self.model, self.info, self.system, self._log, self._tokens,
                            self.routing())

    def save(self, path: Path) -> None:
        """Write the conversation as JSON (docs/conversation-format.md), atomically."""
        codec.write(self.to_dict(), path)

    @classmethod
    def load(cls, path: Path) -> Conversation:
        """Read a file `save` wrote; ConversationError (one sentence) for any other file."""
        return cls._assemble(codec.read(path))

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Conversation:
        """A conversation from a decoded file; Corrupt (what is wrong) if it does not fit."""
        return cls._assemble(codec.decode(record))

    @classmethod
    def _assemble(cls, parts: codec.Decoded) -> Conversation:
        conv = cls(parts.model, parts.info, parts.system)
        conv._log, conv._tokens, conv._routing = parts.turns, parts.tokens, parts.routing
        r = parts.routing.batch()
        if r is not None:  # count once what the file holds; later batches add to it
            tokens = parts.tokens
            for request in range(tokens.requests[-1] + 1 if tokens.requests else 0):
                start, stop = tokens.request_range(request)
                for phase in PHASES:
                    rows = [i for i in range(start, stop) if tokens.phases[i] == phase]
                    if rows:
                        conv._counts.add(request, phase, r.experts[rows], r.probs.shape[2])
        return conv

    def export_trace(self, path: Path, info: ModelInfo | None = None) -> None:
        """Write the whole conversation in the trace format (docs/trace-format.md), with the
        header from `info`, else the conversation's own."""
        info = info if info is not None else self.info
        if info is None:
            raise ConversationError("This conversation does not know its model's details; "
                                    "load the model it was held with, then export again.")
        r = self.routing()
        if r is not None and (self.layers, self.num_experts) != (len(info.moe_layers),
                                                                 info.num_experts):
            raise ConversationError(
                f"The conversation's routing has {self.layers} MoE layers x {self.num_experts} "
                f"experts and {info.name} has {len(info.moe_layers)} x {info.num_experts}; "
                "export it with the model it was held with.")
        export_trace(path, info, self._log, self._tokens, r)


__all__ = ["Conversation", "ConversationError", "Corrupt", "NO_EXPERT", "TokenInfo",
           "TokenRouting"]
