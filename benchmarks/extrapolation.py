"""How far is `mixtui bench --synthetic --layers N` from the full run? Measured, not assumed.

    python benchmarks/extrapolation.py [--rounds 3] [--models nano,mixtral-mid] [--json]

For each model, each round runs the synthetic model several ways, one after the other:
`--layers 2` (its first layer and its first two, extrapolated), `--layers 4` (2 and 4) where
the model is deeper, and all its layers; the rounds rotate that order. Reported per model
and way: the medians over rounds of decode tokens/s, time to the first token and peak
memory, and each extrapolation's error against the full run of the same round
(extrapolated / full - 1).

Models: nano (the bundled geometry, 4 layers) and "mixtral-mid", a mid-size Mixtral made up
here (16 layers, hidden 1024, 8 experts of 3584, 4-bit), both with random weights in their
checkpoint's layout (docs/performance.md has the results).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from mixtui.app.bench.figures import BenchRequest, BenchRow
from mixtui.app.bench.runner import BenchRunner
from mixtui.families import mixtral
from mixtui.families.inventory import Quantization
from mixtui.registry.loader import load_registry
from mixtui.registry.spec import ModelSpec

MID = dict(layers=16, hidden=1024, intermediate=3584, heads=8, kv_heads=2, head_dim=128,
           vocab=32000, experts=8, experts_per_token=2)


def registry() -> dict[str, ModelSpec]:
    config = mixtral.FAMILY.synthetic_config(**MID)
    mid = ModelSpec("mixtral-mid", "Mixtral mid-size (synthetic)",
                    mixtral.FAMILY.geometry(config), kind="base", config=config,
                    quantization=Quantization(4, 64), source="benchmarks/extrapolation.py")
    return {**load_registry(), "mixtral-mid": mid}


def run(model: str, layers: int | None, args: argparse.Namespace,
        models: dict[str, ModelSpec]) -> BenchRow:
    request = BenchRequest((model,), synthetic=True, layers=layers,
                           prompt_tokens=args.prompt_tokens, gen_tokens=args.gen_tokens,
                           runs=args.runs)
    report = BenchRunner(request, registry=models).run()
    (row,) = report.rows
    if not row.ok:
        raise SystemExit(f"{model}: {row.error}")
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="nano,mixtral-mid")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per bench row")
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--gen-tokens", type=int, default=32)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    models = registry()
    results: dict[str, dict[str, dict[str, float]]] = {}
    for model in args.models.split(","):
        total = models[model].geometry.layers
        ways: tuple[int | None, ...] = (*(w for w in (2, 4) if w < total), None)
        seen: dict[int | None, list[BenchRow]] = {w: [] for w in ways}
        for r in range(args.rounds):
            order = ways[r % len(ways):] + ways[:r % len(ways)]
            for way in order:
                print(f"{model}: round {r + 1}/{args.rounds}, "
                      f"{'all' if way is None else way} of {total} layers", file=sys.stderr)
                seen[way].append(run(model, way, args, models))
        full = seen[None]
        out: dict[str, dict[str, float]] = {}
        for way in ways:
            rows = seen[way]
            assert all(r.decode_tps and r.ttft_s and r.peak_memory_bytes for r in rows + full)
            figures = {
                "decode_tps": statistics.median(r.decode_tps.median for r in rows),
                "ttft_s": statistics.median(r.ttft_s.median for r in rows),
                "peak_memory_bytes": statistics.median(r.peak_memory_bytes for r in rows),
                "extrapolated": rows[0].extrapolated,
            }
            if way is not None:
                for name, get in (("decode", lambda r: r.decode_tps.median),
                                  ("ttft", lambda r: r.ttft_s.median),
                                  ("memory", lambda r: r.peak_memory_bytes)):
                    figures[f"{name}_error"] = statistics.median(
                        get(a) / get(b) - 1 for a, b in zip(rows, full, strict=True))
            out["all" if way is None else str(way)] = figures
        results[model] = out
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    for model, out in results.items():
        print(f"\n{model}")
        for way, f in out.items():
            errors = "".join(f"  {name} {100 * f[name + '_error']:+.1f} %"
                             for name in ("decode", "ttft", "memory") if name + "_error" in f)
            print(f"  {way:>3} layers: decode {f['decode_tps']:.1f} tok/s, TTFT "
                  f"{f['ttft_s']:.3f} s, peak {f['peak_memory_bytes'] / 1e6:.0f} MB{errors}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
