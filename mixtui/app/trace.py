"""The mixtui trace: JSON Lines with one record per processed token (docs/trace-format.md)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from mixtui.core.errors import UsageError
from mixtui.core.types import ModelInfo, Stats
from mixtui.engine.messages import Tokens

if TYPE_CHECKING:
    import numpy as np
else:  # numpy loads when routing first needs it (core/lazy.py)
    from mixtui.core.lazy import np

FORMAT = "mixtui-trace"
VERSION = 2
READABLE = (1, 2)  # version 1 (before families): read with its implied defaults
_DIGITS = 6  # float32 routing figures, rounded for a readable file


def header_record(info: ModelInfo, routing: bool = True) -> dict[str, Any]:
    """`routing`: whether the records carry routing (false: `--no-routing`, their lists are
    empty)."""
    moe = set(info.moe_layers)
    # a model of no known family (run with --no-routing) may well have MoE layers: which of
    # its layers are dense is not known
    dense = [i for i in range(info.num_layers) if i not in moe] if info.family else None
    return {"type": "header", "format": FORMAT, "version": VERSION, "model": info.name,
            "model_type": info.model_type, "family": info.family or None,
            "num_layers": info.num_layers, "moe_layers": list(info.moe_layers),
            "dense_layers": dense, "num_experts": info.num_experts, "top_k": info.top_k,
            "scoring": info.scoring if info.moe_layers and routing else None,
            "shared_experts": info.shared_experts, "routing": bool(routing and moe)}


def upgrade_header(header: dict[str, Any]) -> dict[str, Any]:
    """A version 1 header with the fields of version 2 it implies: the families it could
    come from (Mixtral, Qwen3-MoE, dense) all score by softmax and have no shared experts."""
    if header.get("version") != 1:
        return header
    moe = set(header.get("moe_layers") or ())
    layers = int(header.get("num_layers") or 0)
    return header | {"family": header.get("model_type") if moe else None,
                     "dense_layers": [i for i in range(layers) if i not in moe],
                     "scoring": "softmax" if moe else None, "shared_experts": 0,
                     "routing": None}  # version 1 did not say (its records do)


def token_records(event: Tokens, offset: int) -> list[dict[str, Any]]:
    """One record per token of the event; `offset` is the trace index of its first token."""
    records = []
    r = event.routing
    for j, (tok, text) in enumerate(zip(event.ids, event.texts, strict=True)):
        rec: dict[str, Any] = {"type": "token", "i": offset + j, "phase": event.phase,
                               "id": int(tok), "text": text}
        if r is not None:
            rec["experts"] = r.experts[j].tolist()
            rec["weights"] = r.weights[j].astype(np.float64).round(_DIGITS).tolist()
            rec["probs"] = r.probs[j].astype(np.float64).round(_DIGITS).tolist()
        else:
            rec["experts"] = rec["weights"] = rec["probs"] = []
        records.append(rec)
    return records


def summary_record(stats: Stats, text: str, token_ids: list[int]) -> dict[str, Any]:
    return {"type": "summary", "text": text, "token_ids": token_ids} | asdict(stats)


class TraceWriter:
    """Writes a trace as events arrive; the file is valid JSON Lines at every moment."""

    def __init__(self, out: IO[str], info: ModelInfo, routing: bool = True):
        self._out = out
        self._count = 0
        self._write(header_record(info, routing))

    def _write(self, record: dict[str, Any]) -> None:
        self._out.write(json.dumps(record, ensure_ascii=False) + "\n")

    def tokens(self, event: Tokens) -> None:
        for rec in token_records(event, self._count):
            self._write(rec)
        self._count += len(event.ids)

    def summary(self, stats: Stats, text: str, token_ids: list[int]) -> None:
        self._write(summary_record(stats, text, token_ids))
        self._out.flush()


class TraceError(UsageError, ValueError):
    """A file that is not a trace this mixtui reads: one sentence naming the line (exit 2).
    Also a ValueError, as read_trace's errors always were."""

    code = "bad-trace"


_WRITE_AGAIN = "write it again with `mixtui generate --trace`"


def bad_line(path: Path, line: int, what: str, remedy: str = _WRITE_AGAIN) -> TraceError:
    """The one sentence for a bad line of a trace: where, what, and what to do."""
    return TraceError(f"{path}, line {line}: {what}; {remedy}.", facts={"path": str(path),
                                                                       "line": line})


def read_trace_lines(path: Path) -> tuple[dict[str, Any], list[tuple[int, dict[str, Any]]],
                                          list[dict[str, Any]]]:
    """(header, [(line number, token record)], summaries) of a trace file, checking each
    line: JSON, a record of a known type, a header this mixtui reads, token indices without
    gaps. Raises TraceError naming the first bad line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TraceError(f"{path} does not exist; give the file `mixtui generate --trace` "
                         "wrote.", facts={"path": str(path)}) from None
    except OSError as exc:
        raise TraceError(f"Cannot read {path} ({exc.strerror}); give a trace file.",
                         facts={"path": str(path)}) from None
    header: dict[str, Any] | None = None
    tokens: list[tuple[int, dict[str, Any]]] = []
    summaries: list[dict[str, Any]] = []
    for n, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            if header is None:
                raise bad_line(path, n, "this is not a mixtui trace (the line is not JSON)",
                           "give a file written by `mixtui generate --trace`") from None
            raise bad_line(path, n, "the line is not JSON (the trace is cut short or damaged)"
                       ) from None
        kind = record.get("type") if isinstance(record, dict) else None
        if header is None:
            if kind != "header" or record.get("format") != FORMAT:
                raise bad_line(path, n, "this is not a mixtui trace (its first line is not a "
                           "mixtui-trace header)", "give a file written by `mixtui generate "
                           "--trace`")
            if record.get("version") not in READABLE:
                raise bad_line(path, n, f"the trace is version {record.get('version')} and this "
                           f"mixtui reads versions {', '.join(map(str, READABLE))}",
                           "read it with the mixtui that wrote it, or update mixtui")
            header = upgrade_header(record)
        elif kind == "token":
            assert isinstance(record, dict)
            if record.get("i") != len(tokens):
                raise bad_line(path, n, f"token record {len(tokens)} has index "
                           f"{record.get('i')!r}")
            if record.get("phase") not in ("prompt", "generate") or not isinstance(
                    record.get("id"), int):
                raise bad_line(path, n, "the token record has no phase (prompt or generate) or "
                           "no token id")
            tokens.append((n, record))
        elif kind == "summary":
            assert isinstance(record, dict)
            summaries.append(record)
        elif kind == "header":
            raise bad_line(path, n, "a second header (two traces joined into one file?)",
                       "keep one trace per file")
        else:
            raise bad_line(path, n, "the line is not a header, token or summary record")
    if header is None:
        raise TraceError(f"{path} is empty, not a mixtui trace; give a file written by "
                         "`mixtui generate --trace`.", facts={"path": str(path)})
    return header, tokens, summaries


def read_trace(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any] | None]:
    """(header, token records, last summary or None) of a trace file, checking its shape
    (TraceError, a ValueError, naming the line otherwise)."""
    header, tokens, summaries = read_trace_lines(path)
    return header, [rec for _, rec in tokens], summaries[-1] if summaries else None
