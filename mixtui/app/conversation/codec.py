"""The conversation file (docs/conversation-format.md): JSON, routing as base64 arrays.

`encode` turns a conversation's parts into the record and `decode` back, checking everything:
a damaged or foreign file is one sentence (ConversationError), never a traceback.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeGuard

from mixtui.app.conversation.routing import NO_EXPERT, RoutingStore
from mixtui.app.conversation.tokens import PHASES, ROLES, TokenLog, TurnLog
from mixtui.core.errors import UsageError
from mixtui.core.files import atomic_write
from mixtui.core.routing import RoutingBatch
from mixtui.core.types import ModelInfo, Stats

if TYPE_CHECKING:
    import numpy as np
else:  # numpy loads when routing first needs it (core/lazy.py)
    from mixtui.core.lazy import np

FORMAT = "mixtui-conversation"
VERSION = 1


class ConversationError(UsageError):
    """A conversation file that cannot be read or written, or an export that cannot be made."""


@dataclass
class Decoded:
    """What a conversation file holds."""

    model: str
    info: ModelInfo | None
    system: str | None
    turns: TurnLog
    tokens: TokenLog
    routing: RoutingStore


def encode(model: str, info: ModelInfo | None, system: str | None, turns: TurnLog,
           tokens: TokenLog, r: RoutingBatch | None) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": model,
        "model_info": asdict(info) if info is not None else None,
        "system": system,
        "turns": [[role, content] for role, content in turns.turns],
        "stats": [asdict(s) for s in turns.stats],
        "tokens": {"ids": list(tokens.ids), "texts": list(tokens.texts),
                   "phases": list(tokens.phases), "requests": list(tokens.requests)},
        "routing": None if r is None else {
            "experts": _encode(r.experts), "weights": _encode(r.weights),
            "probs": _encode(r.probs)},
    }


def write(record: dict[str, Any], path: Path) -> None:
    """Write the record as JSON, atomically."""
    def dump(out: IO[str]) -> None:
        json.dump(record, out, ensure_ascii=False)
        out.write("\n")

    write_file(path, dump, "save the conversation")


def write_file(path: Path, write: Callable[[IO[str]], None], what: str) -> None:
    """`atomic_write`, with a ConversationError that says what could not be done."""
    try:
        atomic_write(Path(path), write)
    except OSError as exc:
        raise ConversationError(f"Cannot {what} to {path} ({exc.strerror or exc}); choose "
                                "another file or folder.") from None


def read(path: Path) -> Decoded:
    """Read a file `write` wrote; ConversationError (one sentence) for any other file."""
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
        return decode(record)
    except Corrupt as exc:
        raise ConversationError(f"{path} is a damaged mixtui conversation ({exc}); it "
                                "cannot be opened.") from None


def decode(record: dict[str, Any]) -> Decoded:
    """The parts of a conversation from a decoded file; Corrupt (what is wrong) if they
    do not fit together."""
    version = record.get("version")
    if not _is_int(version) or version < 1:
        raise Corrupt(f"its version is {version!r}")
    model = _get(record, "model", str)
    system = _get(record, "system", (str, type(None)))
    info = _model_info(record.get("model_info"))

    turns: list[tuple[str, str]] = []
    for t in _get(record, "turns", list):
        if not (isinstance(t, list) and len(t) == 2 and t[0] in ROLES
                and isinstance(t[1], str)):
            raise Corrupt(f"turn {len(turns)} is not a [role, text] pair")
        turns.append((t[0], t[1]))
    stats = [_dataclass_from(Stats, s, f"stats[{i}]")
             for i, s in enumerate(_get(record, "stats", list))]
    answers = sum(role == "assistant" for role, _ in turns)
    if answers != len(stats):
        raise Corrupt(f"it has {answers} answers but {len(stats)} stats")

    tokens = _get(record, "tokens", dict)
    ids, texts, phases, requests = (_get(tokens, name, list, "tokens.")
                                    for name in ("ids", "texts", "phases", "requests"))
    n = len(ids)
    if not len(texts) == len(phases) == len(requests) == n:
        raise Corrupt(f"tokens has {n} ids, {len(texts)} texts, {len(phases)} phases and "
                       f"{len(requests)} requests")
    if not all(_is_int(t) for t in ids) or not all(isinstance(t, str) for t in texts):
        raise Corrupt("tokens.ids must be integers and tokens.texts strings")
    if not all(p in PHASES for p in phases):
        raise Corrupt("tokens.phases must each be \"prompt\" or \"generate\"")
    if not all(_is_int(r) and 0 <= r <= len(stats) for r in requests) or any(
            a > b for a, b in zip(requests, requests[1:], strict=False)):
        raise Corrupt(f"tokens.requests must rise from 0 to at most {len(stats)}")

    routing = record.get("routing")
    log = RoutingStore()
    if routing is not None:
        if not isinstance(routing, dict):
            raise Corrupt("routing is neither null nor an object")
        experts = _decode(routing, "experts", ("int8", "int16", "int32", "int64"))
        weights = _decode(routing, "weights", ("float16", "float32", "float64"))
        probs = _decode(routing, "probs", ("float16", "float32", "float64"))
        if len(experts) != n or weights.shape != experts.shape or probs.shape[:2] != (
                experts.shape[:2]):
            raise Corrupt(f"routing shapes experts {list(experts.shape)}, weights "
                           f"{list(weights.shape)}, probs {list(probs.shape)} do not fit "
                           f"{n} tokens")
        layers, num_experts = experts.shape[1], probs.shape[2]
        if experts.size and (experts.min() < NO_EXPERT or experts.max() >= num_experts):
            raise Corrupt(f"routing names experts outside 0..{num_experts - 1}")
        if info is not None and info.is_moe and (
                layers, num_experts) != (len(info.moe_layers), info.num_experts):
            raise Corrupt(f"its routing has {layers} layers x {num_experts} experts, its "
                           f"model {len(info.moe_layers)} x {info.num_experts}")
        log = RoutingStore.from_arrays(experts.astype(np.int32, copy=False),
                                      weights.astype(np.float32, copy=False),
                                      probs.astype(np.float32, copy=False))

    return Decoded(model, info, system, TurnLog(turns, stats),
                   TokenLog(ids, texts, phases, requests), log)


class Corrupt(Exception):
    """What is wrong with a conversation file (a clause, for ConversationError)."""


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _get(record: dict[str, Any], key: str, kind: type | tuple[type, ...],
         prefix: str = "") -> Any:
    if key not in record:
        raise Corrupt(f"{prefix}{key} is missing")
    value = record[key]
    if not isinstance(value, kind):
        raise Corrupt(f"{prefix}{key} has the wrong type")
    return value


def _encode(a: np.ndarray) -> dict[str, Any]:
    little = np.ascontiguousarray(a, a.dtype.newbyteorder("<"))
    return {"dtype": a.dtype.name, "shape": list(a.shape),
            "data": base64.b64encode(little.tobytes()).decode("ascii")}


def _decode(routing: dict[str, Any], name: str, dtypes: tuple[str, ...]) -> np.ndarray:
    rec = _get(routing, name, dict, "routing.")
    dtype, shape, data = rec.get("dtype"), rec.get("shape"), rec.get("data")
    if dtype not in dtypes:
        raise Corrupt(f"routing.{name} has dtype {dtype!r}")
    if not (isinstance(shape, list) and len(shape) == 3
            and all(_is_int(d) and d >= 0 for d in shape)):
        raise Corrupt(f"routing.{name} has shape {shape!r}")
    if not isinstance(data, str):
        raise Corrupt(f"routing.{name} has no data")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise Corrupt(f"routing.{name} data is not valid base64 (cut short?)") from None
    dt = np.dtype(dtype).newbyteorder("<")
    if len(raw) != math.prod(shape) * dt.itemsize:
        raise Corrupt(f"routing.{name} holds {len(raw)} bytes where shape {shape} needs "
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
        raise Corrupt(f"{where} is not an object")
    values = {}
    for f in fields(cls):
        if f.name not in rec:
            if f.default is MISSING and f.default_factory is MISSING:
                raise Corrupt(f"{where}.{f.name} is missing")
            continue
        value = rec[f.name]
        check = _TYPE_CHECKS.get(str(f.type))
        if check is not None and not check(value):
            raise Corrupt(f"{where}.{f.name} has the wrong type")
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
