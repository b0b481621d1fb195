"""What does routing capture cost? Capture off and on, interleaved, medians of the ratios.

    python benchmarks/capture_overhead.py [--json] [--rounds N] [--models nano,mid]

Models: the bundled nano Mixtral, and a synthetic mid-size Mixtral (random weights, hidden
1024, 8 layers, 8 experts, 4-bit) written once to a cache folder. Each round runs the same
prompt with capture off and on (the order alternates between rounds), from an empty KV
cache, consuming every event as a real caller does. Reported per model: decode and prompt
tokens/s ratios (on/off, medians over rounds) and the extra MLX peak memory with capture on.
Speeds are the session's own (docs/performance.md): prompt = request until the prompt's
routing is on the host; decode = from then until the last token's routing is on the host.

On Linux it runs MLX with the optimised BLAS that mixtui's engine process uses (see
mixtui/engine/blas.py), restarting itself with it preloaded; `--bundled-blas` measures with
MLX's own reference BLAS instead.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
from pathlib import Path

import mlx.core as mx
import platformdirs

from mixtui.core.paths import PACKAGE_DIR
from mixtui.core.types import Sampling
from mixtui.engine import blas
from mixtui.engine.messages import Finished, Generate, Tokens
from mixtui.engine.session import FLUSH_INTERVAL_S, Session
from mixtui.engine.synthetic import make_model_dir, mixtral_config

MID = dict(layers=8, hidden=1024, intermediate=3584, heads=8, kv_heads=2, vocab=32000,
           experts=8, top_k=2)


# Mixtral 8x7B's depth (32 layers) at a width this CPU runs quickly: capture's one extra
# prompt cost is the last layer's attention over prefill chunks (see docs/performance.md),
# a share that shrinks with depth.
DEEP = dict(layers=32, hidden=128, intermediate=256, heads=4, kv_heads=2, vocab=2048,
            experts=8, top_k=2)


def synthetic_dir(name: str, geometry: dict, bits: int | None) -> Path:
    path = Path(platformdirs.user_cache_dir("mixtui")) / "bench" / name
    if not (path / "model.safetensors").is_file():
        print(f"writing the synthetic Mixtral {name} to {path} …", file=sys.stderr)
        make_model_dir(path, mixtral_config(**geometry), bits=bits, group_size=64, chat=False)
    return path


def run_once(session: Session, prompt: str, capture: bool, max_tokens: int,
             flush_interval: float = FLUSH_INTERVAL_S) -> dict:
    session.reset_conversation()
    mx.clear_cache()  # every run starts from the same allocator state
    gc.collect()
    transfers = session.capture.transfers if session.capture else 0
    request = Generate(1, (("user", prompt),), sampling=Sampling(temperature=0.0,
                       max_tokens=max_tokens), capture=capture, completion=True)
    tokens: list[int] = []
    routed = 0
    for event in session.generate(request, flush_interval=flush_interval):
        if isinstance(event, Tokens):
            routed += 0 if event.routing is None else len(event.routing)
            if event.phase == "generate":
                tokens.extend(event.ids)
        elif isinstance(event, Finished):
            stats = event.stats
    return {"prompt_tps": stats.prompt_tps, "decode_tps": stats.generation_tps,
            "peak": stats.peak_memory_bytes, "tokens": tokens, "routed": routed,
            "prompt_tokens": stats.prompt_tokens, "generated": stats.generation_tokens,
            "transfers": (session.capture.transfers if session.capture else 0) - transfers}


def measure(path: Path, rounds: int, prompt_words: int, max_tokens: int,
            per_token: bool = False) -> dict:
    session = Session.load(str(path), max_kv_size=None)
    vocab = session.geometry.vocab
    # A fixed prompt of ordinary text for nano; word ids for the word-level synthetic tokenizer.
    words = (["the", "lady", "said", "that", "she", "would", "walk", "to", "the", "house"]
             if "nano" in path.name else [f"w{3 + (i * 7919) % (vocab - 3)}"
                                           for i in range(prompt_words)])
    prompt = " ".join(words[i % len(words)] for i in range(prompt_words))
    run_once(session, prompt, True, 8)  # warm-up: kernels, allocator
    run_once(session, prompt, False, 8)
    on: list[dict] = []
    off: list[dict] = []
    each: list[dict] = []  # capture on, routing read to the host after every token
    modes = ["off", "on"] + (["per-token"] if per_token else [])
    for r in range(rounds):
        for mode in modes[r % len(modes):] + modes[:r % len(modes)]:  # rotate the order
            if mode == "per-token":
                each.append(run_once(session, prompt, True, max_tokens, flush_interval=0.0))
            else:
                (on if mode == "on" else off).append(
                    run_once(session, prompt, mode == "on", max_tokens))
    same = all(a["tokens"] == b["tokens"] for a, b in zip(on, off, strict=True))
    decode = [a["decode_tps"] / b["decode_tps"] for a, b in zip(on, off, strict=True)]
    prompt_r = [a["prompt_tps"] / b["prompt_tps"] for a, b in zip(on, off, strict=True)]
    extra = {}
    if each:
        extra = {"per_token_decode_ratio": round(statistics.median(
                     a["decode_tps"] / b["decode_tps"] for a, b in zip(each, off, strict=True)), 4),
                 "per_token_host_reads_per_run": statistics.median(a["transfers"] for a in each)}
    return extra | {
        "model": path.name,
        "decode_ratio": round(statistics.median(decode), 4),
        "prompt_ratio": round(statistics.median(prompt_r), 4),
        "extra_peak_mb": round((statistics.median(a["peak"] for a in on)
                                - statistics.median(b["peak"] for b in off)) / 2**20, 3),
        "decode_tps_off": round(statistics.median(b["decode_tps"] for b in off), 2),
        "decode_tps_on": round(statistics.median(a["decode_tps"] for a in on), 2),
        "prompt_tps_off": round(statistics.median(b["prompt_tps"] for b in off), 2),
        "prompt_tps_on": round(statistics.median(a["prompt_tps"] for a in on), 2),
        "peak_mb_off": round(statistics.median(b["peak"] for b in off) / 2**20, 1),
        "prompt_tokens": on[0]["prompt_tokens"], "generated_tokens": on[0]["generated"],
        "routed_tokens_per_run": on[0]["routed"], "rounds": rounds,
        "host_reads_per_run": statistics.median(a["transfers"] for a in on),
        "identical_tokens": same,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--models", default="nano,deep,mid")
    parser.add_argument("--prompt-words", type=int, default=160)  # nano was trained on 256
    parser.add_argument("--max-tokens", type=int, default=128)
    # MLX's CPU expert kernels run the mid-size model at a few tokens/s: shorter runs there.
    parser.add_argument("--mid-prompt-words", type=int, default=64)
    parser.add_argument("--mid-max-tokens", type=int, default=32)
    parser.add_argument("--mid-dir", type=Path, help="use this model folder as 'mid'")
    parser.add_argument("--per-token", default="nano",
                        help="models also run with a host read after every token (comma list)")
    parser.add_argument("--bundled-blas", action="store_true",
                        help="Linux: keep MLX's reference BLAS (the engine preloads a fast one)")
    args = parser.parse_args()
    if not args.bundled_blas and blas.preloaded() is None and blas.fast_blas() is not None \
            and not os.environ.get("MIXTUI_BENCH_REEXEC"):
        env = blas.with_preload(dict(os.environ)) | {"MIXTUI_BENCH_REEXEC": "1"}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    paths = {"nano": PACKAGE_DIR / "models" / "nano", "mid": args.mid_dir}
    results = {}
    for name in args.models.split(","):
        path = paths.get(name) or (
            synthetic_dir("mixtral-mid-4bit", MID, 4) if name == "mid"
            else synthetic_dir("mixtral-deep-f32", DEEP, None) if name == "deep" else Path(name))
        mid = name == "mid"
        results[name] = measure(path, args.rounds,
                                args.mid_prompt_words if mid else args.prompt_words,
                                args.mid_max_tokens if mid else args.max_tokens,
                                per_token=name in args.per_token.split(","))
        if not args.json:
            r = results[name]
            print(f"{name}: decode on/off {r['decode_ratio']:.3f} "
                  f"({r['decode_tps_on']:.1f} / {r['decode_tps_off']:.1f} tok/s), "
                  f"prompt on/off {r['prompt_ratio']:.3f} "
                  f"({r['prompt_tps_on']:.0f} / {r['prompt_tps_off']:.0f} tok/s), "
                  f"extra peak {r['extra_peak_mb']:.2f} MB, "
                  f"{r['host_reads_per_run']:.0f} host reads for {r['routed_tokens_per_run']} "
                  f"tokens, identical tokens: {r['identical_tokens']}", flush=True)
            if "per_token_decode_ratio" in r:
                print(f"{name}: with a host read after every token instead: decode on/off "
                      f"{r['per_token_decode_ratio']:.3f}", flush=True)
    machine = {"platform": platform.platform(), "processor": platform.machine(),
               "mlx": mx.__version__, "device": str(mx.default_device()),
               "blas": blas.preloaded() or "bundled with mlx"}
    if args.json:
        print(json.dumps(results | {"machine": machine}, indent=2))
    else:
        print(f"machine: {machine}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
