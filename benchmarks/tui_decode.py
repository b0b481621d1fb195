"""Does the TUI slow decoding down? The full app against headless `mixtui generate`.

    python benchmarks/tui_decode.py [--rounds 5] [--model nano] [--max-tokens 256] [--json]

Each round runs the same greedy request twice, in alternating order:
- headless: `mixtui generate --model M --prompt P --max-tokens N --temp 0 --json` (a separate
  process, as a script would run it); its decode tokens/s as the engine reports it;
- TUI: the real MixtuiApp under `App.run_test` (headless terminal, full rendering of every
  update) in a fresh process, the prompt typed into the input; its engine's decode tokens/s,
  and the decode speed the UI itself saw (generated tokens shown / time from the first to
  the last update).
Reported: medians and the ratios TUI / headless (target >= 0.95).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from mixtui.app.chat import Change
from mixtui.core.types import Sampling
from mixtui.engine.messages import Event

PROMPT = "It is a truth universally acknowledged"


def headless(model: str, max_tokens: int) -> float:
    out = subprocess.run([sys.executable, "-m", "mixtui", "generate", "--model", model,
                          "--prompt", PROMPT, "--max-tokens", str(max_tokens), "--temp", "0",
                          "--json"], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    return float(result["generation_tps"])


async def tui(model: str, max_tokens: int) -> tuple[float, float, int]:
    from mixtui.tui.app import MixtuiApp

    app = MixtuiApp(model, Sampling(temperature=0.0, max_tokens=max_tokens), persist=False)
    seen: list[tuple[float, int]] = []  # (time, generated tokens so far) at each UI update
    original = app.controller.handle

    def watch(event: Event, generation: int | None = None) -> Change | None:
        change = original(event, generation)  # the UI thread folds the tokens in here
        if change is not None and change.tokens is not None \
                and change.tokens.phase == "generate":
            seen.append((time.perf_counter(), app.controller.generated))
        return change

    app.controller.handle = watch  # type: ignore[method-assign]
    async with app.run_test(size=(140, 45)) as pilot:
        while app.info is None:
            await pilot.pause(0.05)
        await pilot.press(*PROMPT)
        await pilot.press("enter")
        while app.last_finish_reason is None:  # a plain sleep: no extra work for the app
            await asyncio.sleep(0.05)
        stats = app.conversation.stats[-1]
    (t0, n0), (t1, n1) = seen[0], seen[-1]
    ui_tps = (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0
    return stats.generation_tps, ui_tps, stats.generation_tokens


def tui_in_fresh_process(model: str, max_tokens: int) -> tuple[float, float, int]:
    """One TUI run in its own process, as a user starts it (the app lowers its UI thread's
    priority, which a process's later children would inherit)."""
    out = subprocess.run([sys.executable, __file__, "--one-tui-run", "--model", model,
                          "--max-tokens", str(max_tokens)], capture_output=True, text=True,
                         check=True)
    engine_tps, ui_tps, tokens = json.loads(out.stdout.strip().splitlines()[-1])
    return float(engine_tps), float(ui_tps), int(tokens)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", default="nano")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--one-tui-run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_tui_run:
        print(json.dumps(asyncio.run(tui(args.model, args.max_tokens))))
        return 0
    with tempfile.TemporaryDirectory() as config:
        os.environ["MIXTUI_CONFIG_DIR"] = config  # the user's settings stay untouched
        head: list[float] = []
        engine_in_tui: list[float] = []
        seen_in_tui: list[float] = []
        tokens = 0
        for r in range(args.rounds):
            order = ("headless", "tui") if r % 2 == 0 else ("tui", "headless")
            for mode in order:
                if mode == "headless":
                    head.append(headless(args.model, args.max_tokens))
                else:
                    engine_tps, ui_tps, tokens = tui_in_fresh_process(args.model,
                                                                      args.max_tokens)
                    engine_in_tui.append(engine_tps)
                    seen_in_tui.append(ui_tps)
    result = {
        "model": args.model, "rounds": args.rounds, "generated_tokens": tokens,
        "headless_tps": round(statistics.median(head), 2),
        "tui_engine_tps": round(statistics.median(engine_in_tui), 2),
        "tui_seen_tps": round(statistics.median(seen_in_tui), 2),
        "ratio_engine": round(statistics.median(a / b for a, b in
                                                zip(engine_in_tui, head, strict=True)), 4),
        "ratio_seen": round(statistics.median(a / b for a, b in
                                              zip(seen_in_tui, head, strict=True)), 4),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.model}: headless {result['headless_tps']} tok/s; in the TUI the engine "
              f"decoded at {result['tui_engine_tps']} ({result['ratio_engine']:.3f} of "
              f"headless) and the UI showed {result['tui_seen_tps']} tok/s "
              f"({result['ratio_seen']:.3f}); {tokens} tokens, {args.rounds} rounds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
