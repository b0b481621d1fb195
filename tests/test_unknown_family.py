"""A mixture-of-experts model whose architecture mixtui has no family for (here a tiny
random ERNIE 4.5 MoE, which mlx-lm runs): mixtui says so in one sentence and runs it, without
routing, only when asked to (`--no-routing`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mixtui.app.loader import Unavailable, decide
from mixtui.core.errors import UnknownFamily

ERNIE = {
    "model_type": "ernie4_5_moe", "architectures": ["Ernie4_5_MoeForCausalLM"],
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 256,
    "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "use_bias": False, "tie_word_embeddings": False, "moe_num_experts": 8, "moe_k": 2,
    "moe_capacity": [8, 8, 8], "moe_intermediate_size": 32, "torch_dtype": "float32",
    "bos_token_id": 1, "eos_token_id": 2,
}


@pytest.fixture(scope="module")
def ernie_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mixtui.engine.synthetic import make_model_dir

    return make_model_dir(tmp_path_factory.mktemp("unknown") / "tiny-ernie", ERNIE)


def mixtui(env: dict[str, str], *args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mixtui", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.usefixtures("fixed_budget")
def test_the_loader_refuses_it_unless_asked(ernie_dir: Path) -> None:
    outcome = decide(str(ernie_dir), context=512)
    assert isinstance(outcome, Unavailable) and isinstance(outcome.error, UnknownFamily)
    assert outcome.error.facts["model_type"] == "ernie4_5_moe"
    from mixtui.tui.wording import say

    tui = say(outcome.error)
    assert "`mixtui --no-routing`" in tui and tui.count(".") >= 1 and "{" not in tui
    assert not isinstance(decide(str(ernie_dir), context=512, without_routing=True),
                          Unavailable)


def test_generate_says_so_and_runs_it_without_routing_when_asked(
        cli_env: dict[str, str], ernie_dir: Path, tmp_path: Path) -> None:
    refused = mixtui(cli_env, "generate", "--model", ernie_dir, "--prompt", "w5 w6",
                     "--max-tokens", 3)
    assert refused.returncode == 2 and refused.stdout == ""
    sentence = refused.stderr.strip()
    assert "ernie4_5_moe" in sentence and "--no-routing" in sentence
    assert "Traceback" not in sentence and len(sentence.splitlines()) == 1
    as_json = mixtui(cli_env, "generate", "--model", ernie_dir, "--prompt", "w5", "--json")
    assert json.loads(as_json.stdout)["error"]["code"] == "unknown-family"
    trace = tmp_path / "t.jsonl"
    ran = mixtui(cli_env, "generate", "--model", ernie_dir, "--prompt", "w5 w6",
                 "--max-tokens", 3, "--temp", 0, "--no-routing", "--trace", trace)
    assert ran.returncode == 0, ran.stderr
    from mixtui.app.trace import read_trace

    header, records, summary = read_trace(trace)
    assert summary is not None and summary["generation_tokens"] == 3
    assert header["moe_layers"] == [] and all(r["experts"] == [] for r in records)
    assert header["routing"] is False and header["dense_layers"] is None
    assert header["family"] is None and header["scoring"] is None
