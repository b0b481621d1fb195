"""`mixtui generate`: one prompt through the engine process, text to stdout, optional trace.

A thin view on the loader policy (`app/loader.py`) and the chat controller (`app/chat.py`).
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from mixtui.app.chat import ChatController
from mixtui.app.loader import OfferDownload, Refused, Start, Unavailable, decide, launch
from mixtui.app.trace import TraceWriter
from mixtui.cli.wording import say
from mixtui.core.errors import MixtuiError, UsageError
from mixtui.core.types import DEFAULT_CONTEXT, ModelInfo, Sampling
from mixtui.engine.messages import EngineExited, Failed, Finished, Loading, Ready, Tokens
from mixtui.registry.spec import ModelSpec

SYSTEM_MERGED = ("mixtui: note: this model's chat template has no system role, so the system "
                 "prompt was put before your message in the first user turn.")


@dataclass(frozen=True)
class GenerateArgs:
    model: str
    prompt: str
    max_tokens: int = Sampling.max_tokens
    temp: float = Sampling.temperature
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    system: str | None = None
    experts_per_token: int | None = None
    routing: bool = True
    trace: Path | None = None
    json: bool = False
    max_kv_size: int = DEFAULT_CONTEXT
    force: bool = False  # load a model that does not fit the memory budget anyway


def _bad(option: str, value: object, rule: str) -> UsageError:
    return UsageError(f"{option} {rule}, not {value}.", code="bad-option",
                      facts={"option": option, "value": value})


def check_args(args: GenerateArgs, spec: ModelSpec) -> None:
    """Reject bad values before any process starts (exit code 2)."""
    if args.max_tokens < 1:
        raise _bad("--max-tokens", args.max_tokens, "must be at least 1")
    if args.temp < 0:
        raise _bad("--temp", args.temp, "must be 0 or more")
    if not 0 < args.top_p <= 1:
        raise _bad("--top-p", args.top_p, "must be in (0, 1]")
    if args.top_k < 0:
        raise _bad("--top-k", args.top_k, "must be 0 or more")
    if not 0 <= args.min_p <= 1:
        raise _bad("--min-p", args.min_p, "must be between 0 and 1")
    if args.max_kv_size < 1:
        raise _bad("--max-kv-size", args.max_kv_size, "must be at least 1")
    if not args.prompt:
        raise UsageError("--prompt is empty; give some text.")
    k = args.experts_per_token
    g = spec.geometry
    if k is not None:
        if not g.is_moe:
            raise UsageError(f"{spec.key} is a dense model, so --experts-per-token does not "
                             "apply; leave it out.")
        family = spec.family
        most = family.max_experts_per_token(spec.hf_config) if family else g.experts
        if not 1 <= k <= most:
            note = family.experts_per_token_note(spec.hf_config) if family else ""
            raise UsageError(f"--experts-per-token must be between 1 and {most} for "
                             f"{spec.key}, not {k}." + (f" {note}" if note else ""))


def _check_trace_path(path: Path) -> None:
    """Refuse a trace file that cannot be written, in the words the open would give."""
    folder = path.expanduser().parent
    why = ("No such file or directory" if not folder.is_dir()
           else "Is a directory" if path.expanduser().is_dir()
           else "Permission denied" if not os.access(folder, os.W_OK) else None)
    if why is not None:
        raise UsageError(f"Cannot write the trace to {path} ({why}); choose another file.",
                         code="bad-trace-path", facts={"path": str(path)})


def _warn(start: Start) -> None:
    if start.warn:
        print(f"mixtui: {say(start)}", file=sys.stderr)


def _start(args: GenerateArgs) -> tuple[ChatController, ModelSpec]:
    """The loader policy's outcome as the CLI acts on it: refused or unavailable → the
    error (exit code 2 for input to fix, 1 for a model not on disk or damaged); otherwise a
    controller with the engine loading."""
    if args.trace is not None:
        _check_trace_path(args.trace)  # before a model is loaded for nothing
    outcome = decide(args.model, context=args.max_kv_size, force=args.force,
                     offer_download=False, check=lambda spec: check_args(args, spec),
                     without_routing=not args.routing)
    if isinstance(outcome, Unavailable | OfferDownload):
        raise outcome.error
    if isinstance(outcome, Refused):
        raise outcome.fit.error()
    _warn(outcome)
    chat = ChatController(outcome.spec.key)
    generation, _ = chat.begin_load(outcome.spec.key, system=args.system)
    chat.attach(launch(outcome.load(args.max_kv_size, args.experts_per_token)), generation)
    return chat, outcome.spec


def _failure(event: Failed | EngineExited) -> MixtuiError:
    if isinstance(event, EngineExited):
        return MixtuiError(say(event), code="engine-exited", facts={"engine_exit": event.code})
    return event.error()


def _wait_ready(chat: ChatController, progress: bool) -> ModelInfo:
    assert chat.engine is not None
    for event in chat.engine.events():
        change = chat.handle(event)
        if isinstance(event, Loading) and progress:
            print(f"\r{event.stage} {event.done}/{event.total}", end="", file=sys.stderr)
        elif isinstance(event, Ready) and chat.info is not None:
            if progress:
                print("\r\033[K", end="", file=sys.stderr)
            return chat.info
        elif isinstance(event, Failed | EngineExited) and change is not None:
            raise _failure(event)
    raise MixtuiError("The engine stopped answering; run again with --debug.")


def run(args: GenerateArgs) -> int:
    chat, spec = _start(args)
    with ExitStack() as stack:
        stack.callback(chat.close, 2.0)
        info = _wait_ready(chat, progress=sys.stderr.isatty() and not args.json)
        trace = None
        if args.trace is not None:
            try:
                out = stack.enter_context(args.trace.open("w", encoding="utf-8"))
            except OSError as exc:
                raise UsageError(f"Cannot write the trace to {args.trace} ({exc.strerror}); "
                                 "choose another file.") from None
            trace = TraceWriter(out, info, routing=args.routing)
        chat.ask(args.prompt, Sampling(args.temp, args.top_p, args.top_k, args.min_p,
                                       args.seed, args.max_tokens),
                 completion=spec.kind == "base", capture=args.routing)
        token_ids: list[int] = []
        interrupted = False
        engine = chat.engine
        assert engine is not None
        while True:
            try:
                event = engine.next_event()
            except KeyboardInterrupt:  # stop after the current token; keep what came
                chat.stop()
                interrupted = True
                continue
            if event is None:
                continue
            change = chat.handle(event)
            if change is None:
                continue
            if isinstance(event, Tokens):
                if trace is not None:
                    trace.tokens(event)
                if event.phase == "generate":
                    token_ids.extend(event.ids)
                    if not args.json:
                        sys.stdout.write("".join(event.texts))
                        sys.stdout.flush()
            elif isinstance(event, Finished):
                _finished(args, spec, event, token_ids, trace)
                return 130 if interrupted else 0
            elif isinstance(event, Failed | EngineExited):
                raise _failure(event)


def _finished(args: GenerateArgs, spec: ModelSpec, event: Finished, token_ids: list[int],
              trace: TraceWriter | None) -> None:
    if trace is not None:
        trace.summary(event.stats, event.text, token_ids)
    if args.json:
        print(json.dumps({
            "model": spec.key, "text": event.text, "token_ids": token_ids,
            "prompt_tokens": event.stats.prompt_tokens,
            "generation_tokens": event.stats.generation_tokens,
            "ttft_s": event.stats.ttft_s, "prompt_tps": event.stats.prompt_tps,
            "generation_tps": event.stats.generation_tps,
            "peak_memory_bytes": event.stats.peak_memory_bytes,
            "finish_reason": event.stats.finish_reason,
            "system_merged": event.stats.system_merged,
        }))
        return
    sys.stdout.write("\n")
    if event.stats.system_merged:
        print(SYSTEM_MERGED, file=sys.stderr)
    if event.stats.finish_reason == "context":
        print(f"mixtui: note: the answer stopped where the context of {args.max_kv_size} "
              "tokens is full; raise --max-kv-size for a longer one.", file=sys.stderr)
