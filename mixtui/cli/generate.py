"""`mixtui generate`: one prompt through the engine process, text to stdout, optional trace."""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from mixtui.core.errors import MixtuiError, UsageError
from mixtui.core.types import DEFAULT_CONTEXT, ModelInfo, Sampling
from mixtui.engine.client import EngineProcess
from mixtui.engine.messages import (
    EngineExited,
    Failed,
    Finished,
    Generate,
    Load,
    Loading,
    Ready,
    Tokens,
)
from mixtui.registry.local import require_local, resolve
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
        if not 1 <= k <= g.experts:
            raise UsageError(f"--experts-per-token must be between 1 and {g.experts} for "
                             f"{spec.key}, not {k}.")


def check_fit(spec: ModelSpec, context: int, force: bool) -> None:
    """Before any engine process: refuse a model that does not fit (exit code 2) unless
    `force`; warn, on one stderr line, when it is tight or forced."""
    from mixtui.planner import plan

    fit = plan(spec, context=context)
    if fit.verdict == "does-not-fit" and not force:
        raise fit.error()
    if fit.verdict == "does-not-fit":
        print(f"mixtui: warning: {fit.reason[:-1]}; loading it anyway (--force).",
              file=sys.stderr)
    elif fit.verdict == "tight":
        print(f"mixtui: warning: {fit.reason}", file=sys.stderr)




def _exited(event: EngineExited) -> str:
    return f"{event.description}; run the command again."


def _wait_ready(engine: EngineProcess, progress: bool) -> ModelInfo:
    for event in engine.events():
        if isinstance(event, Loading) and progress:
            print(f"\r{event.stage} {event.done}/{event.total}", end="", file=sys.stderr)
        elif isinstance(event, Ready):
            if progress:
                print("\r\033[K", end="", file=sys.stderr)
            return event.info
        elif isinstance(event, Failed):
            raise event.error()
        elif isinstance(event, EngineExited):
            raise MixtuiError(_exited(event))
    raise MixtuiError("The engine stopped answering; run again with --debug.")


def run(args: GenerateArgs) -> int:
    spec = resolve(args.model)
    check_args(args, spec)
    check_fit(spec, args.max_kv_size, args.force)
    path = require_local(spec)
    engine = EngineProcess()
    with ExitStack() as stack:
        stack.callback(engine.close)
        engine.send(Load(str(path), spec.key, args.max_kv_size, args.experts_per_token))
        info = _wait_ready(engine, progress=sys.stderr.isatty() and not args.json)
        trace = None
        if args.trace is not None:
            from mixtui.app.trace import TraceWriter

            try:
                out = stack.enter_context(args.trace.open("w", encoding="utf-8"))
            except OSError as exc:
                raise UsageError(f"Cannot write the trace to {args.trace} ({exc.strerror}); "
                                 "choose another file.") from None
            trace = TraceWriter(out, info)
        request = Generate(
            request_id=1, messages=(("user", args.prompt),), system=args.system,
            sampling=Sampling(args.temp, args.top_p, args.top_k, args.min_p, args.seed,
                              args.max_tokens),
            capture=args.routing, completion=spec.kind == "base",
        )
        engine.send(request)
        token_ids: list[int] = []
        interrupted = False
        while True:
            try:
                event = engine.next_event()
            except KeyboardInterrupt:  # stop after the current token; keep what came
                engine.cancel()
                interrupted = True
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
                else:
                    sys.stdout.write("\n")
                    if event.stats.system_merged:
                        print(SYSTEM_MERGED, file=sys.stderr)
                    if event.stats.finish_reason == "context":
                        print(f"mixtui: note: the answer stopped where the context of "
                              f"{args.max_kv_size} tokens is full; raise --max-kv-size for a "
                              "longer one.", file=sys.stderr)
                return 130 if interrupted else 0
            elif isinstance(event, Failed):
                raise event.error()
            elif isinstance(event, EngineExited):
                raise MixtuiError(_exited(event))
    return 1
