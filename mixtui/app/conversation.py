"""The conversation the TUI shows: turns, per-answer statistics and every processed token.

Tokens are logged exactly as the engine's `Tokens` events arrive — each request's prompt
tokens (only those the KV cache did not already hold), then its generated tokens — with the
routing of each. Routing arrives in small batches (about 20 a second while generating); they
are queued and copied into growing arrays only when someone reads them, so reading all of the
routing costs the new rows only. Files: docs/conversation-format.md; `export_trace` writes
the engine's trace format (docs/trace-format.md).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import IO, Any, NamedTuple, TypeGuard

import numpy as np

from mixtui.app.trace import TraceWriter
from mixtui.core.errors import UsageError
from mixtui.core.files import atomic_write
from mixtui.core.routing import RoutingBatch
from mixtui.core.types import ModelInfo, Phase, Stats
from mixtui.engine.messages import Finished, Tokens

FORMAT = "mixtui-conversation"
VERSION = 1
PHASES: tuple[Phase, ...] = ("prompt", "generate")
ROLES = ("user", "assistant")
NO_EXPERT = -1  # expert id of padding and of tokens without routing


class ConversationError(UsageError):
    """A conversation file that cannot be read or written, or an export that cannot be made."""


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


# -- the routing of all tokens ---------------------------------------------------------------------
class _RoutingLog:
    """Routing rows of every token in order; rows of tokens without routing are padding.

    Batches are queued as they arrive and written into arrays with spare capacity when the
    routing is read. The k axis is as wide as the widest batch (experts per token can change
    between requests); narrower rows are padded with expert NO_EXPERT and weight 0, and the
    rows of tokens that came without routing are all padding (probs 0). Rows once handed out
    never change: dropping tokens copies the kept rows into new arrays.
    """

    def __init__(self) -> None:
        self.layers: int | None = None  # geometry, from the first batch with routing
        self.num_experts: int | None = None
        self.k = 0
        self.total = 0  # tokens logged, queued ones included
        self.routed = 0  # tokens logged with routing
        self._queue: list[tuple[int, RoutingBatch]] = []  # (first row, batch)
        self._rows = 0  # rows written into the arrays
        self._experts = np.zeros((0, 0, 0), np.int32)
        self._weights = np.zeros((0, 0, 0), np.float32)
        self._probs = np.zeros((0, 0, 0), np.float32)
        self._view: RoutingBatch | None = None

    def append(self, count: int, batch: RoutingBatch | None) -> None:
        if batch is not None:
            e, w, p = batch.experts, batch.weights, batch.probs
            if e.ndim != 3 or w.shape != e.shape or p.ndim != 3 or p.shape[:2] != e.shape[:2]:
                raise ValueError(f"malformed routing batch: experts {e.shape}, weights "
                                 f"{w.shape}, probs {p.shape}")
            if len(e) != count:
                raise ValueError(f"routing for {len(e)} tokens arrived with {count} tokens")
            layers, num_experts = e.shape[1], p.shape[2]
            if self.layers is not None and (layers, num_experts) != (self.layers,
                                                                     self.num_experts):
                raise ValueError(f"routing of {layers} layers x {num_experts} experts does not "
                                 f"match the conversation's {self.layers} x {self.num_experts}")
            self.layers, self.num_experts = layers, num_experts
            if count:
                self._queue.append((self.total, batch))
                self.routed += count
        self.total += count

    def _allocate(self, capacity: int, k: int) -> None:
        assert self.layers is not None and self.num_experts is not None
        experts = np.full((capacity, self.layers, k), NO_EXPERT, np.int32)
        weights = np.zeros((capacity, self.layers, k), np.float32)
        probs = np.zeros((capacity, self.layers, self.num_experts), np.float32)
        n, old_k = self._rows, self._experts.shape[2]
        if n:
            experts[:n, :, :old_k] = self._experts[:n]
            weights[:n, :, :old_k] = self._weights[:n]
            probs[:n] = self._probs[:n]
        self._experts, self._weights, self._probs, self.k = experts, weights, probs, k

    def _flush(self) -> None:
        if self.routed == 0 or self._rows == self.total:
            return
        k = max([self.k] + [b.experts.shape[2] for _, b in self._queue])
        capacity = len(self._experts)
        if self.total > capacity or k != self.k:
            self._allocate(max(self.total, 2 * capacity, 64) if self.total > capacity
                           else capacity, k)
        for row, b in self._queue:  # rows past _rows are still padding: fill the routed ones
            n, bk = len(b), b.experts.shape[2]
            self._experts[row:row + n, :, :bk] = b.experts
            self._weights[row:row + n, :, :bk] = b.weights
            self._probs[row:row + n] = b.probs
        self._queue.clear()
        self._rows = self.total
        self._view = None

    def batch(self) -> RoutingBatch | None:
        """All rows (read-only views), or None when no token has routing."""
        if self.routed == 0:
            return None
        self._flush()
        if self._view is None:
            views = [a[:self._rows] for a in (self._experts, self._weights, self._probs)]
            for v in views:
                v.flags.writeable = False
            self._view = RoutingBatch(*views)
        return self._view

    def truncate(self, n: int) -> None:
        """Keep the first n rows."""
        if n >= self.total:
            return
        self._flush()
        if self.routed:
            kept = self._experts[:n]
            self.routed = int((kept[:, 0, 0] != NO_EXPERT).sum()) if kept.size else 0
            self._rows = n
            self._allocate(len(self._experts), self.k)  # fresh arrays: handed-out views stay
        self.total = self._rows = n
        self._view = None

    @classmethod
    def from_arrays(cls, experts: np.ndarray, weights: np.ndarray,
                    probs: np.ndarray) -> _RoutingLog:
        log = cls()
        log.layers, log.num_experts, log.k = experts.shape[1], probs.shape[2], experts.shape[2]
        log._experts, log._weights, log._probs = experts, weights, probs
        log.total = log._rows = len(experts)
        log.routed = int((experts[:, 0, 0] != NO_EXPERT).sum()) if experts.size else 0
        return log


# -- the conversation ------------------------------------------------------------------------------
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
        self.turns: list[tuple[str, str]] = []
        self.stats: list[Stats] = []
        self._ids: list[int] = []
        self._texts: list[str] = []
        self._phases: list[Phase] = []
        self._requests: list[int] = []
        self._routing = _RoutingLog()
        self._active: int | None = None  # engine request id of the answer now arriving
        self._seen = {"prompt": 0, "generate": 0}  # its tokens so far, per phase
        self._cache: dict[tuple[int | None, str | None], np.ndarray] = {}  # counts

    # -- changing it -------------------------------------------------------------------------
    def add_user(self, text: str) -> None:
        self.turns.append(("user", text))

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
        self._routing.append(n, event.routing)
        self._ids.extend(int(t) for t in event.ids)
        self._texts.extend(event.texts)
        self._phases.extend([event.phase] * n)
        self._requests.extend([len(self.stats)] * n)
        self._seen[event.phase] += n
        self._changed()

    def finish(self, event: Finished) -> None:
        """The answer is complete: append the assistant turn (event.text) and its stats."""
        self._begin(event.request_id)
        self.turns.append(("assistant", event.text))
        self.stats.append(event.stats)
        self._end()

    def drop_unanswered(self) -> None:
        """Forget a request that failed: its trailing user turn and the tokens it processed."""
        self._truncate(bisect_left(self._requests, len(self.stats)))
        if self.turns and self.turns[-1][0] == "user":
            self.turns.pop()
        self._end()

    def clear(self) -> None:
        """Forget all turns, stats and tokens (model, info and system prompt stay)."""
        self.turns.clear()
        self.stats.clear()
        self._ids, self._texts, self._phases, self._requests = [], [], [], []
        self._routing = _RoutingLog()
        self._end()

    def _begin(self, request_id: int) -> None:
        if self._active is None:
            # Tokens of a request that never finished (e.g. saved while it ran) belong to no
            # answer: a new request replaces them.
            self._truncate(bisect_left(self._requests, len(self.stats)))
            self._active = request_id
        elif request_id != self._active:
            raise ValueError(f"request {request_id} arrived while request {self._active} "
                             "is unfinished; call finish() or drop_unanswered() first")

    def _end(self) -> None:
        self._active = None
        self._seen = {"prompt": 0, "generate": 0}
        self._changed()

    def _truncate(self, n: int) -> None:
        if n < len(self._ids):
            del self._ids[n:], self._texts[n:], self._phases[n:], self._requests[n:]
            self._routing.truncate(n)
            self._changed()

    def _changed(self) -> None:
        self._cache.clear()

    # -- reading it ----------------------------------------------------------------------------
    def __len__(self) -> int:
        """Tokens processed (the whole log)."""
        return len(self._ids)

    @property
    def pending(self) -> bool:
        """True while the last turn is a user turn without an answer."""
        return bool(self.turns) and self.turns[-1][0] == "user"

    def messages(self) -> tuple[tuple[str, str], ...]:
        """The turns, as `Generate.messages` takes them."""
        return tuple(self.turns)

    @property
    def ids(self) -> Sequence[int]:
        return self._ids

    @property
    def texts(self) -> Sequence[str]:
        return self._texts

    @property
    def phases(self) -> Sequence[Phase]:
        return self._phases

    @property
    def requests(self) -> Sequence[int]:
        return self._requests

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
        return bisect_left(self._requests, request), bisect_right(self._requests, request)

    def routing(self) -> RoutingBatch | None:
        """Routing of all tokens (read-only arrays), or None when no token has any.

        Tokens without routing (capture off for their request) have expert ids -1, weights 0
        and probs 0; when experts per token changed, rows with fewer experts are padded the
        same way at the end of the k axis.
        """
        return self._routing.batch()

    def token(self, i: int) -> TokenInfo:
        """Token i (negative counts from the end) with its own routing, padding removed."""
        if not -len(self._ids) <= i < len(self._ids):
            raise IndexError(f"token {i} of {len(self._ids)}")
        i %= len(self._ids)
        routing = None
        r = self._routing.batch()
        if r is not None:
            k = int((r.experts[i, 0] != NO_EXPERT).sum())
            if k:
                routing = TokenRouting(r.experts[i, :, :k], r.weights[i, :, :k], r.probs[i])
        return TokenInfo(self._ids[i], self._texts[i], self._phases[i], self._requests[i],
                         routing)

    def _rows(self, request: int | None, phase: Phase | None) -> tuple[int, int, np.ndarray | None]:
        start, stop = (0, len(self._ids)) if request is None else self.request_range(request)
        mask = None
        if phase is not None:
            mask = np.fromiter((p == phase for p in self._phases[start:stop]), bool,
                               count=stop - start)
        return start, stop, mask

    def counts(self, request: int | None = None, phase: Phase | None = None) -> np.ndarray:
        """(layers, num_experts) int64: how often each expert was among a token's chosen ones.

        Over the whole conversation, or the tokens of one request, optionally of one phase.
        """
        key = (request, phase)
        if key in self._cache:
            return self._cache[key]
        layers, num_experts = self.layers, self.num_experts
        counts = np.zeros((layers, num_experts), np.int64)
        r = self._routing.batch()
        if r is not None:
            start, stop, mask = self._rows(request, phase)
            e = r.experts[start:stop]
            if mask is not None:
                e = e[mask]
            valid = e != NO_EXPERT
            flat = (np.arange(layers, dtype=np.int64)[None, :, None] * num_experts + e)[valid]
            counts = np.bincount(flat, minlength=layers * num_experts).reshape(layers,
                                                                              num_experts)
        counts.flags.writeable = False
        self._cache[key] = counts
        return counts

    def top1(self, layer: int, request: int | None = None) -> np.ndarray:
        """(tokens,) int32: per token, the chosen expert with the largest gate weight at MoE
        layer ordinal `layer` (-1 for tokens without routing). Ties go to the earlier choice."""
        if not 0 <= layer < self.layers:
            raise IndexError(f"MoE layer ordinal {layer} out of range (0..{self.layers - 1})")
        start, stop, _ = self._rows(request, None)
        r = self._routing.batch()
        if r is None:
            return np.full(stop - start, NO_EXPERT, np.int32)
        e = r.experts[start:stop, layer]
        w = np.where(e != NO_EXPERT, r.weights[start:stop, layer], -np.inf)
        choice = np.argmax(w, axis=1) if e.shape[1] else np.zeros(len(e), np.intp)
        return np.asarray(e[np.arange(len(e)), choice], np.int32)

    # -- files ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        r = self.routing()
        return {
            "format": FORMAT,
            "version": VERSION,
            "model": self.model,
            "model_info": asdict(self.info) if self.info is not None else None,
            "system": self.system,
            "turns": [[role, content] for role, content in self.turns],
            "stats": [asdict(s) for s in self.stats],
            "tokens": {"ids": list(self._ids), "texts": list(self._texts),
                       "phases": list(self._phases), "requests": list(self._requests)},
            "routing": None if r is None else {
                "experts": _encode(r.experts), "weights": _encode(r.weights),
                "probs": _encode(r.probs)},
        }

    def save(self, path: Path) -> None:
        """Write the conversation as JSON (docs/conversation-format.md), atomically."""
        record = self.to_dict()

        def write(out: IO[str]) -> None:
            json.dump(record, out, ensure_ascii=False)
            out.write("\n")

        try:
            atomic_write(Path(path), write)
        except OSError as exc:
            raise ConversationError(f"Cannot save the conversation to {path} "
                                    f"({exc.strerror or exc}); choose another file or "
                                    "folder.") from None

    @classmethod
    def load(cls, path: Path) -> Conversation:
        """Read a file `save` wrote; ConversationError (one sentence) for any other file."""
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConversationError(f"Cannot read {path} ({exc.strerror or exc}); check the "
                                    "file name and its permissions.") from None
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            if _is_trace(raw):
                raise ConversationError(f"{path} is a mixtui trace, not a conversation; open "
                                        "a conversation file that mixtui saved.") from None
            raise ConversationError(f"{path} is not a mixtui conversation (it is not JSON); "
                                    "open a conversation file that mixtui saved.") from None
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            what = (f"its format is {record.get('format')!r}" if isinstance(record, dict)
                    and "format" in record else "it has no \"format\": \"mixtui-conversation\"")
            raise ConversationError(f"{path} is not a mixtui conversation ({what}); open a "
                                    "conversation file that mixtui saved.")
        version = record.get("version")
        if _is_int(version) and version > VERSION:
            raise ConversationError(f"{path} is a version {version} conversation and this "
                                    f"mixtui reads version {VERSION}; update mixtui to open it.")
        try:
            return cls.from_dict(record)
        except _Corrupt as exc:
            raise ConversationError(f"{path} is a damaged mixtui conversation ({exc}); it "
                                    "cannot be opened.") from None

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Conversation:
        """A conversation from a decoded file; _Corrupt (what is wrong) if it does not fit."""
        version = record.get("version")
        if not _is_int(version) or version < 1:
            raise _Corrupt(f"its version is {version!r}")
        model = _get(record, "model", str)
        system = _get(record, "system", (str, type(None)))
        info = _model_info(record.get("model_info"))

        turns: list[tuple[str, str]] = []
        for t in _get(record, "turns", list):
            if not (isinstance(t, list) and len(t) == 2 and t[0] in ROLES
                    and isinstance(t[1], str)):
                raise _Corrupt(f"turn {len(turns)} is not a [role, text] pair")
            turns.append((t[0], t[1]))
        stats = [_dataclass_from(Stats, s, f"stats[{i}]")
                 for i, s in enumerate(_get(record, "stats", list))]
        answers = sum(role == "assistant" for role, _ in turns)
        if answers != len(stats):
            raise _Corrupt(f"it has {answers} answers but {len(stats)} stats")

        tokens = _get(record, "tokens", dict)
        ids, texts, phases, requests = (_get(tokens, name, list, "tokens.")
                                        for name in ("ids", "texts", "phases", "requests"))
        n = len(ids)
        if not len(texts) == len(phases) == len(requests) == n:
            raise _Corrupt(f"tokens has {n} ids, {len(texts)} texts, {len(phases)} phases and "
                           f"{len(requests)} requests")
        if not all(_is_int(t) for t in ids) or not all(isinstance(t, str) for t in texts):
            raise _Corrupt("tokens.ids must be integers and tokens.texts strings")
        if not all(p in PHASES for p in phases):
            raise _Corrupt("tokens.phases must each be \"prompt\" or \"generate\"")
        if not all(_is_int(r) and 0 <= r <= len(stats) for r in requests) or any(
                a > b for a, b in zip(requests, requests[1:], strict=False)):
            raise _Corrupt(f"tokens.requests must rise from 0 to at most {len(stats)}")

        routing = record.get("routing")
        log = _RoutingLog()
        if routing is not None:
            if not isinstance(routing, dict):
                raise _Corrupt("routing is neither null nor an object")
            experts = _decode(routing, "experts", ("int8", "int16", "int32", "int64"))
            weights = _decode(routing, "weights", ("float16", "float32", "float64"))
            probs = _decode(routing, "probs", ("float16", "float32", "float64"))
            if len(experts) != n or weights.shape != experts.shape or probs.shape[:2] != (
                    experts.shape[:2]):
                raise _Corrupt(f"routing shapes experts {list(experts.shape)}, weights "
                               f"{list(weights.shape)}, probs {list(probs.shape)} do not fit "
                               f"{n} tokens")
            layers, num_experts = experts.shape[1], probs.shape[2]
            if experts.size and (experts.min() < NO_EXPERT or experts.max() >= num_experts):
                raise _Corrupt(f"routing names experts outside 0..{num_experts - 1}")
            if info is not None and info.is_moe and (
                    layers, num_experts) != (len(info.moe_layers), info.num_experts):
                raise _Corrupt(f"its routing has {layers} layers x {num_experts} experts, its "
                               f"model {len(info.moe_layers)} x {info.num_experts}")
            log = _RoutingLog.from_arrays(experts.astype(np.int32, copy=False),
                                          weights.astype(np.float32, copy=False),
                                          probs.astype(np.float32, copy=False))

        conv = cls(model, info, system)
        conv.turns, conv.stats = turns, stats
        conv._ids, conv._texts, conv._phases, conv._requests = ids, texts, phases, requests
        conv._routing = log
        return conv

    def export_trace(self, path: Path, info: ModelInfo | None = None) -> None:
        """Write the whole conversation in the trace format (docs/trace-format.md).

        A header (from `info`, else the conversation's own), every token record in order,
        and after each answer's tokens one summary with its stats, text and generated ids.
        Tokens of an unanswered request are written without a summary.
        """
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
        answers = [content for role, content in self.turns if role == "assistant"]
        last = max(len(self.stats) - 1, self._requests[-1] if self._requests else -1)

        def write(out: IO[str]) -> None:
            writer = TraceWriter(out, info)
            for request in range(last + 1):
                start, stop = self.request_range(request)
                generated: list[int] = []
                for event in self._events(request, start, stop, r):
                    writer.tokens(event)
                    if event.phase == "generate":
                        generated.extend(event.ids)
                if request < len(self.stats):
                    writer.summary(self.stats[request], answers[request], generated)

        try:
            atomic_write(Path(path), write)
        except OSError as exc:
            raise ConversationError(f"Cannot write the trace to {path} "
                                    f"({exc.strerror or exc}); choose another file or "
                                    "folder.") from None

    def _events(self, request: int, start: int, stop: int,
                r: RoutingBatch | None) -> list[Tokens]:
        """A request's tokens as Tokens events: one per run of one phase, with or without
        routing (padding removed)."""
        events: list[Tokens] = []
        seen = {"prompt": 0, "generate": 0}
        ks = ([0] * (stop - start) if r is None  # experts per token of each row; 0: none
              else (r.experts[start:stop, 0] != NO_EXPERT).sum(axis=1).tolist())
        i = start
        while i < stop:
            phase, k = self._phases[i], ks[i - start]
            j = i + 1
            while j < stop and self._phases[j] == phase and ks[j - start] == k:
                j += 1
            routing = None
            if r is not None and k:
                routing = RoutingBatch(r.experts[i:j, :, :k], r.weights[i:j, :, :k],
                                       r.probs[i:j])
            events.append(Tokens(request, phase, seen[phase], tuple(self._ids[i:j]),
                                 tuple(self._texts[i:j]), routing))
            seen[phase] += j - i
            i = j
        return events


# -- file helpers ----------------------------------------------------------------------------------
class _Corrupt(Exception):
    """What is wrong with a conversation file (a clause, for ConversationError)."""


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _get(record: dict[str, Any], key: str, kind: type | tuple[type, ...],
         prefix: str = "") -> Any:
    if key not in record:
        raise _Corrupt(f"{prefix}{key} is missing")
    value = record[key]
    if not isinstance(value, kind):
        raise _Corrupt(f"{prefix}{key} has the wrong type")
    return value


def _encode(a: np.ndarray) -> dict[str, Any]:
    little = np.ascontiguousarray(a, a.dtype.newbyteorder("<"))
    return {"dtype": a.dtype.name, "shape": list(a.shape),
            "data": base64.b64encode(little.tobytes()).decode("ascii")}


def _decode(routing: dict[str, Any], name: str, dtypes: tuple[str, ...]) -> np.ndarray:
    rec = _get(routing, name, dict, "routing.")
    dtype, shape, data = rec.get("dtype"), rec.get("shape"), rec.get("data")
    if dtype not in dtypes:
        raise _Corrupt(f"routing.{name} has dtype {dtype!r}")
    if not (isinstance(shape, list) and len(shape) == 3
            and all(_is_int(d) and d >= 0 for d in shape)):
        raise _Corrupt(f"routing.{name} has shape {shape!r}")
    if not isinstance(data, str):
        raise _Corrupt(f"routing.{name} has no data")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _Corrupt(f"routing.{name} data is not valid base64 (cut short?)") from None
    dt = np.dtype(dtype).newbyteorder("<")
    if len(raw) != math.prod(shape) * dt.itemsize:
        raise _Corrupt(f"routing.{name} holds {len(raw)} bytes where shape {shape} needs "
                       f"{math.prod(shape) * dt.itemsize}")
    return np.frombuffer(raw, dt).reshape(shape).astype(dt.newbyteorder("="))


_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "int": _is_int,
    "float": lambda v: (_is_int(v) or isinstance(v, float)),
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "int | None": lambda v: v is None or _is_int(v),
    "tuple[int, ...]": lambda v: isinstance(v, list) and all(_is_int(x) for x in v),
}


def _dataclass_from(cls: Any, rec: Any, where: str) -> Any:
    """An instance of a flat dataclass (Stats, ModelInfo) from its asdict, checking types."""
    if not isinstance(rec, dict):
        raise _Corrupt(f"{where} is not an object")
    values = {}
    for f in fields(cls):
        if f.name not in rec:
            if f.default is MISSING and f.default_factory is MISSING:
                raise _Corrupt(f"{where}.{f.name} is missing")
            continue
        value = rec[f.name]
        check = _TYPE_CHECKS.get(str(f.type))
        if check is not None and not check(value):
            raise _Corrupt(f"{where}.{f.name} has the wrong type")
        if isinstance(value, list):
            value = tuple(value)
        elif str(f.type) == "float":
            value = float(value)
        values[f.name] = value
    return cls(**values)


def _model_info(rec: Any) -> ModelInfo | None:
    if rec is None:
        return None
    info: ModelInfo = _dataclass_from(ModelInfo, rec, "model_info")
    return info


def _is_trace(raw: bytes) -> bool:
    try:
        first = json.loads(raw.split(b"\n", 1)[0])
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(first, dict) and first.get("format") == "mixtui-trace"
