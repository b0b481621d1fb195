"""The real `mixtui` command in a subprocess: generate (text, --json, --trace), models, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from registry_keys import KEYS

from mixtui.app.trace import read_trace

PROMPT = "w5 w6 w7"


def mixtui(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mixtui", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("mixtui: ")
    assert proc.stdout == ""
    return lines[0]


@pytest.fixture(scope="module")
def greedy_ids(tiny_moe_dir: Path) -> tuple[list[int], list[int]]:
    """(prompt ids, generated ids) of the prompt in-process, to compare the CLI with."""
    from mixtui.core.types import Sampling
    from mixtui.engine.messages import Finished, Generate, Tokens
    from mixtui.engine.session import Session

    session = Session.load(str(tiny_moe_dir))
    prompt: list[int] = []
    generated: list[int] = []
    for event in session.generate(Generate(1, (("user", PROMPT),),
                                           sampling=Sampling(temperature=0, max_tokens=6))):
        if isinstance(event, Tokens):
            (prompt if event.phase == "prompt" else generated).extend(event.ids)
        else:
            assert isinstance(event, Finished)
    return prompt, generated


# -- the format ---------------------------------------------------------------------------------
def test_a_version_1_trace_still_reads_with_what_it_implies(tmp_path: Path) -> None:
    # the header mixtui wrote before families (version 1), with one token record
    v1 = tmp_path / "v1.jsonl"
    v1.write_text(json.dumps({"type": "header", "format": "mixtui-trace", "version": 1,
                              "model": "nano", "model_type": "qwen3_moe", "num_layers": 3,
                              "moe_layers": [0, 2], "num_experts": 8, "top_k": 2}) + "\n"
                  + json.dumps({"type": "token", "i": 0, "phase": "prompt", "id": 1,
                                "text": "<s>", "experts": [[1, 2], [3, 4]],
                                "weights": [[0.6, 0.4], [0.5, 0.5]], "probs": [[0.1] * 8] * 2})
                  + "\n")
    header, tokens, summary = read_trace(v1)
    assert header["version"] == 1 and summary is None and len(tokens) == 1
    assert header["dense_layers"] == [1] and header["scoring"] == "softmax"
    assert header["shared_experts"] == 0 and header["family"] == "qwen3_moe"
    v3 = tmp_path / "v3.jsonl"
    v3.write_text(v1.read_text().replace('"version": 1', '"version": 3'))
    with pytest.raises(ValueError, match="reads versions 1, 2"):
        read_trace(v3)


# -- generate -----------------------------------------------------------------------------------
def test_generate_with_trace(cli_env: dict[str, str], tiny_moe_dir: Path, tmp_path: Path,
                             greedy_ids: tuple[list[int], list[int]]) -> None:
    trace_path = tmp_path / "t.jsonl"
    proc = mixtui(cli_env, "generate", "--model", tiny_moe_dir, "--prompt", PROMPT,
                  "--max-tokens", 6, "--temp", 0, "--trace", trace_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr

    header, tokens, summary = read_trace(trace_path)
    assert header["format"] == "mixtui-trace" and header["version"] == 2
    assert header["model_type"] == "mixtral" and header["family"] == "mixtral"
    assert header["num_layers"] == 2 and header["moe_layers"] == [0, 1]
    assert header["dense_layers"] == [] and header["shared_experts"] == 0
    assert header["num_experts"] == 8 and header["top_k"] == 2
    assert header["scoring"] == "softmax" and header["routing"] is True

    assert [t["i"] for t in tokens] == list(range(len(tokens)))
    phases = [t["phase"] for t in tokens]
    n_prompt = phases.count("prompt")
    assert n_prompt > 0
    assert phases == ["prompt"] * n_prompt + ["generate"] * (len(tokens) - n_prompt)
    prompt_ids = [t["id"] for t in tokens[:n_prompt]]
    gen_ids = [t["id"] for t in tokens[n_prompt:]]
    for t in tokens:
        assert len(t["experts"]) == len(t["weights"]) == len(t["probs"]) == 2  # MoE layers
        for experts, weights, probs in zip(t["experts"], t["weights"], t["probs"], strict=True):
            assert len(experts) == len(set(experts)) == 2
            assert all(0 <= e < 8 for e in experts)
            assert len(weights) == 2 and abs(sum(weights) - 1) < 1e-4
            assert len(probs) == 8 and abs(sum(probs) - 1) < 1e-4
            assert min(probs[e] for e in experts) >= max(
                p for j, p in enumerate(probs) if j not in experts)

    assert summary is not None
    assert summary["token_ids"] == gen_ids
    assert summary["generation_tokens"] == len(gen_ids) == 6
    assert summary["prompt_tokens"] == n_prompt
    assert summary["finish_reason"] == "length"
    assert summary["text"] == "".join(t["text"] for t in tokens[n_prompt:])
    assert proc.stdout.strip() == summary["text"].strip() != ""
    assert (prompt_ids, gen_ids) == greedy_ids


def test_generate_json(cli_env: dict[str, str], tiny_moe_dir: Path,
                       greedy_ids: tuple[list[int], list[int]]) -> None:
    proc = mixtui(cli_env, "generate", "--model", tiny_moe_dir, "--prompt", PROMPT,
                  "--max-tokens", 6, "--temp", 0, "--json")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    for key in ("text", "token_ids", "prompt_tokens", "generation_tokens", "ttft_s",
                "prompt_tps", "generation_tps", "peak_memory_bytes"):
        assert key in out, key
    assert out["token_ids"] == greedy_ids[1]
    assert out["generation_tokens"] == 6 and out["prompt_tokens"] == len(greedy_ids[0])
    assert out["text"] == " ".join(f"w{i}" for i in greedy_ids[1])
    assert out["ttft_s"] > 0 and out["generation_tps"] > 0 and out["peak_memory_bytes"] > 0


def test_generate_no_routing_trace(cli_env: dict[str, str], tiny_moe_dir: Path, tmp_path: Path,
                                   greedy_ids: tuple[list[int], list[int]]) -> None:
    trace_path = tmp_path / "t.jsonl"
    proc = mixtui(cli_env, "generate", "--model", tiny_moe_dir, "--prompt", PROMPT,
                  "--max-tokens", 6, "--temp", 0, "--no-routing", "--trace", trace_path)
    assert proc.returncode == 0, proc.stderr
    header, tokens, summary = read_trace(trace_path)
    assert len(tokens) == len(greedy_ids[0]) + 6
    assert all(t["experts"] == t["weights"] == t["probs"] == [] for t in tokens)
    assert summary is not None and summary["token_ids"] == greedy_ids[1]


def test_generate_experts_per_token_in_trace(cli_env: dict[str, str], tiny_moe_dir: Path,
                                            tmp_path: Path) -> None:
    trace_path = tmp_path / "k1.jsonl"
    proc = mixtui(cli_env, "generate", "--model", tiny_moe_dir, "--prompt", PROMPT,
                  "--max-tokens", 3, "--temp", 0, "--experts-per-token", 1,
                  "--trace", trace_path)
    assert proc.returncode == 0, proc.stderr
    header, tokens, summary = read_trace(trace_path)
    assert header["top_k"] == 1
    assert summary is not None and summary["generation_tokens"] == 3
    for t in tokens:
        assert [len(row) for row in t["experts"]] == [1, 1]
        assert t["weights"] == [[1.0], [1.0]]
        assert [len(row) for row in t["probs"]] == [8, 8]


# -- usage errors: exit 2, one line, no traceback ----------------------------------------------
@pytest.mark.parametrize(("args", "words"), [
    (["--model", "no-such-model", "--prompt", "x"], "no-such-model"),
    (["--model", "{moe}", "--prompt", "x", "--max-tokens", "0"], "--max-tokens"),
    (["--model", "{moe}", "--prompt", "x", "--temp", "-1"], "--temp"),
    (["--model", "{moe}", "--prompt", "x", "--experts-per-token", "9"], "--experts-per-token"),
    (["--model", "{moe}", "--prompt", "x", "--experts-per-token", "0"], "--experts-per-token"),
    (["--model", "{dense}", "--prompt", "x", "--experts-per-token", "1"], "dense"),
    (["--model", "{moe}", "--prompt", "x", "--bogus-flag"], "--bogus-flag"),
    (["--model", "{moe}"], "--prompt"),
    (["--model", "./nope/model", "--prompt", "x"], "No such directory"),
    (["--model", "{moe}", "--prompt", "x", "--max-kv-size", "0"], "--max-kv-size"),
    (["--model", "{moe}", "--prompt", "x", "--top-k", "-1"], "--top-k"),
    (["--model", "{moe}", "--prompt", "x", "--min-p", "2"], "--min-p"),
    # found by the engine, not by the argument checks: still bad input, so still exit 2
    (["--model", "{moe}", "--prompt", "w5 w6 w7 w8 w9 w10", "--max-kv-size", "4"],
     "context holds 4"),
])
def test_usage_errors(cli_env: dict[str, str], tiny_moe_dir: Path, tiny_dense_dir: Path,
                      args: list[str], words: str) -> None:
    args = [a.format(moe=tiny_moe_dir, dense=tiny_dense_dir) for a in args]
    proc = mixtui(cli_env, "generate", *args)
    line = one_line_error(proc)
    assert proc.returncode == 2, proc.stderr
    assert words in line


def test_model_not_downloaded(cli_env: dict[str, str]) -> None:
    proc = mixtui(cli_env, "generate", "--model", "mixtral-8x7b-instruct", "--prompt", "x")
    line = one_line_error(proc)
    assert proc.returncode == 1
    assert "Mixtral 8x7B" in line and "download" in line
    assert "mlx-community/Mixtral-8x7B-Instruct-v0.1-4bit" in line


def test_unknown_command_is_a_usage_error(cli_env: dict[str, str]) -> None:
    proc = mixtui(cli_env, "frobnicate")
    one_line_error(proc)
    assert proc.returncode == 2


# -- models ---------------------------------------------------------------------------------------
MODEL_FIELDS = ("key", "name", "repo", "total_params", "active_params", "weight_bytes",
                "kv_bytes_per_token", "state", "fit")


def models_json(env: dict[str, str], budget: str) -> dict[str, dict]:
    proc = mixtui(dict(env, MIXTUI_MEMORY_BUDGET=budget), "models", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["key"] for r in rows][:len(KEYS)] == KEYS  # the MoE families' entries follow
    for row in rows:
        for field in MODEL_FIELDS:
            assert field in row, (row["key"], field)
    return {r["key"]: r for r in rows}


def test_models_json_fit_follows_budget(cli_env: dict[str, str]) -> None:
    small = models_json(cli_env, "1GB")
    large = models_json(cli_env, "1TB")
    assert small["mixtral-8x7b-instruct"]["fit"] == "does-not-fit"
    assert small["mixtral-8x22b"]["fit"] == "does-not-fit"
    assert large["mixtral-8x7b-instruct"]["fit"] == "fits"
    assert large["mixtral-8x22b-instruct"]["fit"] == "fits"
    row = large["mixtral-8x7b-instruct"]
    assert row["repo"] == "mlx-community/Mixtral-8x7B-Instruct-v0.1-4bit"
    assert row["state"] == "absent"  # the cache is empty
    assert row["kv_bytes_per_token"] == 128 * 1024
    assert abs(row["total_params"] - 46.7e9) < 0.005 * 46.7e9
    assert abs(row["active_params"] - 12.9e9) < 0.005 * 12.9e9
    assert abs(row["weight_bytes"] - 26.3e9) < 0.03 * 26.3e9


# The published parameter counts (total, active with the embeddings), as counted from
# mlx-lm's own classes at the published geometries
PUBLISHED = {
    "qwen3-30b-a3b-instruct": (30.53e9, 3.35e9, "qwen3_moe"),
    "qwen3-next-80b-a3b-instruct": (79.67e9, 3.87e9, "qwen3_next"),
    "gpt-oss-20b": (20.91e9, 4.19e9, "gpt_oss"),
    "glm-4.5-air": (106.85e9, 13.42e9, "glm4_moe"),
    "deepseek-v2-lite-chat": (15.71e9, 2.66e9, "deepseek_v2"),
    "olmoe-1b-7b-instruct": (6.92e9, 1.28e9, "olmoe"),
    "granite-3.1-3b-a800m-instruct": (3.30e9, 0.88e9, "granitemoe"),
    "phi-3.5-moe-instruct": (41.87e9, 6.64e9, "phimoe"),
    "qwen1.5-moe-a2.7b-chat": (14.32e9, 2.69e9, "qwen2_moe"),
}


def test_models_json_lists_the_families_with_the_published_figures(cli_env: dict[str, str]
                                                                   ) -> None:
    rows = models_json(cli_env, "64GB")
    for key, (total, active, family) in PUBLISHED.items():
        row = rows[key]
        assert row["family"] == family and row["experts"] > 0, key
        assert abs(row["total_params"] - total) < 0.01 * total, key
        assert abs(row["active_params"] - active) < 0.01 * active, key
        assert row["card"]["total_params"] > 0, key
    gpt = rows["gpt-oss-20b"]
    assert gpt["quantization"] == {"bits": 8, "group_size": 64, "mode": "affine", "experts": {
        "bits": 4, "group_size": 32, "mode": "mxfp4", "experts": None}}
    assert gpt["card"] == {"total_params": 21e9, "active_params": 3.6e9,
                           "note": "its 3.6 B leaves the embeddings out"}
    table = mixtui(dict(cli_env, MIXTUI_MEMORY_BUDGET="64GB"), "models").stdout
    assert "gpt-oss-20b: 21.00 B, 3.60 B active (its 3.6 B leaves the embeddings out)" in table
    assert "  olmoe-1b-7b-instruct:" not in table  # its card counts as mixtui does


def test_models_table(cli_env: dict[str, str]) -> None:
    proc = mixtui(dict(cli_env, MIXTUI_MEMORY_BUDGET="1GB"), "models")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["key", "params", "active", "weights", "KV/token", "need",
                                "state", "fit", "decode", "here"]
    rows = {line.split()[0]: line.split() for line in lines[1:1 + len(KEYS)]}
    assert list(rows) == KEYS
    assert rows["mixtral-8x7b-instruct"][-1] == "does-not-fit"
    assert rows["mixtral-8x7b-instruct"][-2] == "absent"
    assert "46.70" in rows["mixtral-8x7b-instruct"][1]
    assert "1.0 GB" in proc.stdout and "MIXTUI_MEMORY_BUDGET" in proc.stdout


def test_models_with_a_bad_budget(cli_env: dict[str, str]) -> None:
    proc = mixtui(dict(cli_env, MIXTUI_MEMORY_BUDGET="lots"), "models")
    line = one_line_error(proc)
    assert proc.returncode == 2 and "lots" in line


def test_fault_20_models_with_a_bad_user_registry(cli_env: dict[str, str]) -> None:
    user = Path(cli_env["MIXTUI_CONFIG_DIR"]) / "models.toml"
    user.write_text("[models.bad\n")
    proc = mixtui(cli_env, "models")
    line = one_line_error(proc)
    assert proc.returncode == 2
    assert str(user) in line and "line 1" in line


def test_debug_shows_the_traceback(cli_env: dict[str, str], tiny_moe_dir: Path) -> None:
    proc = mixtui(cli_env, "generate", "--model", tiny_moe_dir, "--prompt", "x",
                  "--max-tokens", "0", "--debug")
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "UsageError" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("mixtui: --max-tokens")


def test_system_prompt_and_seed_repeat(cli_env: dict[str, str], tiny_moe_dir: Path) -> None:
    args = ["generate", "--model", tiny_moe_dir, "--prompt", "w5 w6", "--system", "w7 w8",
            "--max-tokens", "8", "--temp", "0.9", "--seed", "11", "--json"]
    first, second = mixtui(cli_env, *args), mixtui(cli_env, *args)
    assert first.returncode == 0 and second.returncode == 0, first.stderr
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert a["token_ids"] == b["token_ids"] and len(a["token_ids"]) == 8
    # The template refuses a system role, so the system words were merged into the prompt.
    no_system = json.loads(mixtui(cli_env, *[x for x in args if x not in ("--system", "w7 w8")]
                                  ).stdout)
    assert a["prompt_tokens"] == no_system["prompt_tokens"] + 2
