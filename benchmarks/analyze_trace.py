"""How long does `mixtui analyze` take on a long trace of a deep model?

    python benchmarks/analyze_trace.py [--tokens N] [--geometry LxE:k ...] [--json]

For each geometry (default 56 x 8, k 2: Mixtral 8x22B's, at 10,000 tokens; and 48 x 128,
k 8: Qwen3-30B-A3B's, at 2,000) a trace is written in the real format (docs/trace-format.md)
with routing that keeps its expert with some chance from token to token, as real routing
does, and then, timed apart: reading it (`read_routing`), every statistic with the cache
replayed at the default capacities (`analyze`), and the report in each format (`render`).
The issue's requirement: 10,000 tokens of a 56-layer model analyse in seconds.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from mixtui.app.analysis.report import FORMATS, build_report, render
from mixtui.app.analysis.stats import analyze
from mixtui.app.analysis.tracefile import read_routing

DEFAULT = (("56x8:2", 10_000), ("48x128:8", 2_000))


def write_trace(path: Path, tokens: int, layers: int, experts: int, k: int,
                seed: int = 0) -> None:
    """A trace whose tokens keep each layer's experts with chance 0.3, else draw new ones
    from a skewed distribution (a busy expert or two per layer, as trained routers have)."""
    rng = np.random.default_rng(seed)
    prefs = rng.dirichlet(np.full(experts, 0.7), size=layers)  # (L, E)
    logits = np.log(prefs)
    current = np.argsort(-(logits + rng.gumbel(size=(layers, experts))), axis=-1)[:, :k]
    with path.open("w", encoding="utf-8") as out:
        out.write(json.dumps({
            "type": "header", "format": "mixtui-trace", "version": 2, "model": "bench",
            "model_type": "mixtral", "family": "mixtral", "num_layers": layers,
            "moe_layers": list(range(layers)), "dense_layers": [], "num_experts": experts,
            "top_k": k, "scoring": "softmax", "shared_experts": 0, "routing": True}) + "\n")
        for i in range(tokens):
            scores = logits + rng.gumbel(size=(layers, experts))
            fresh = np.argsort(-scores, axis=-1)[:, :k]
            keep = rng.random(layers) < 0.3
            current = np.where(keep[:, None], current, fresh)
            probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
            probs /= probs.sum(axis=-1, keepdims=True)
            chosen = np.take_along_axis(probs, current, axis=-1)
            weights = chosen / chosen.sum(axis=-1, keepdims=True)
            out.write(json.dumps({
                "type": "token", "i": i, "phase": "prompt" if i < tokens // 10 else "generate",
                "id": int(rng.integers(0, 32000)), "text": "x",
                "experts": current.tolist(), "weights": weights.round(6).tolist(),
                "probs": probs.round(6).tolist()}) + "\n")


def measure(spec: str, tokens: int, folder: Path) -> dict[str, object]:
    shape, k = spec.split(":")
    layers, experts = (int(x) for x in shape.split("x"))
    path = folder / f"{spec.replace(':', '_')}.jsonl"
    write_trace(path, tokens, layers, experts, int(k))
    t0 = time.perf_counter()
    trace = read_routing(path)
    t1 = time.perf_counter()
    result = analyze(trace.routing)
    t2 = time.perf_counter()
    report = build_report(result, "bench", str(path))
    rendered = {fmt: len(render(report, fmt)) for fmt in FORMATS}
    t3 = time.perf_counter()
    return {"geometry": spec, "tokens": tokens, "capacities": list(result.capacities),
            "read_s": round(t1 - t0, 3), "analyze_s": round(t2 - t1, 3),
            "render_s": round(t3 - t2, 3), "total_s": round(t3 - t0, 3),
            "file_mb": round(path.stat().st_size / 1e6, 1), "report_chars": rendered}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--geometry", action="append", metavar="LxE:k",
                        help="layers x experts : k (repeatable; default 56x8:2 and 48x128:8)")
    parser.add_argument("--tokens", type=int, help="tokens per trace (default per geometry)")
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    args = parser.parse_args()
    runs = ([(g, args.tokens or 10_000) for g in args.geometry] if args.geometry
            else [(g, args.tokens or n) for g, n in DEFAULT])
    with tempfile.TemporaryDirectory() as tmp:
        for spec, tokens in runs:
            row = measure(spec, tokens, Path(tmp))
            if args.json:
                print(json.dumps(row))
            else:
                print(f"{spec:>9} x {tokens:,} tokens ({row['file_mb']} MB): read "
                      f"{row['read_s']:.2f} s, analyze {row['analyze_s']:.2f} s "
                      f"({len(row['capacities'])} capacities), render {row['render_s']:.2f} s; "
                      f"total {row['total_s']:.2f} s")


if __name__ == "__main__":
    main()
