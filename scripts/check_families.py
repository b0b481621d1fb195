"""Every MoE family through the command line: a tiny random model of it, `mixtui generate
--trace`, and the trace checked against the independent recomputation of tests/family_harness.py.

    python scripts/check_families.py [--keep DIR] [MODEL_TYPE ...]

For each family (default: all): builds the tiny model (its `synthetic_config`, mlx-lm's own
classes), runs `mixtui generate --model DIR --prompt ... --trace t.jsonl` and then
`--experts-per-token 1`, and checks each trace's experts, weights and scores token by token
against the recomputation from the MoE blocks' own inputs (the same model and prompt, run in
this process). Prints one line per family and exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the harness lives with the tests

PROMPT = "w5 w6 w7 w8 w9 w10"
TOKENS = 6


def check(model_type: str, root: Path) -> str:
    from family_harness import assert_routing_matches, generate, greedy, references

    from mixtui.app.trace import read_trace
    from mixtui.core.routing import RoutingBatch
    from mixtui.engine.session import Session
    from mixtui.engine.synthetic import make_model_dir, synthetic_config

    model_dir = root / f"tiny-{model_type}"
    if not (model_dir / "config.json").is_file():
        make_model_dir(model_dir, synthetic_config(model_type))
    session = Session.load(str(model_dir))
    results = []
    for k in (None, 1):
        trace = root / f"{model_type}-k{k}.jsonl"
        extra = [] if k is None else ["--experts-per-token", str(k)]
        proc = subprocess.run(
            [sys.executable, "-m", "mixtui", "generate", "--model", str(model_dir), "--prompt",
             PROMPT, "--max-tokens", str(TOKENS), "--temp", "0", "--trace", str(trace), *extra],
            capture_output=True, text=True, timeout=300, cwd=ROOT)
        if proc.returncode != 0:
            raise AssertionError(f"mixtui generate exited {proc.returncode}: {proc.stderr}")
        header, records, _ = read_trace(trace)
        traced = RoutingBatch(np.array([r["experts"] for r in records], np.int32),
                              np.array([r["weights"] for r in records], np.float32),
                              np.array([r["probs"] for r in records], np.float32))
        session.set_experts_per_token(k)
        here = generate(session, PROMPT, greedy(TOKENS))
        session.reset_conversation()
        if here.ids != [r["id"] for r in records]:
            raise AssertionError("the trace's tokens are not the model's")
        used = k or session.top_k
        assert_routing_matches(traced, references(session, here, used))
        results.append(f"k={used}: {len(records)} tokens x {len(header['moe_layers'])} MoE "
                       f"layers ok")
    session.set_experts_per_token(None)
    return "; ".join(results)


def main() -> int:
    from mixtui.families import moe_model_types

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("types", nargs="*", metavar="MODEL_TYPE", help="default: every family")
    parser.add_argument("--keep", type=Path, help="build the models and traces here")
    args = parser.parse_args()
    types = args.types or list(moe_model_types())
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        for model_type in types:
            try:
                print(f"{model_type:12} {check(model_type, root)}", flush=True)
            except AssertionError as exc:
                failed += 1
                print(f"{model_type:12} FAILED: {exc}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
