"""`mixtui analyze` on real traces of the bundled nano model (written by `mixtui generate
--trace`), its figures checked against the trace's own records, and each refusal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import keep_probe

from mixtui.cli.main import main

PROMPT = "It is a truth universally acknowledged that a single man"


def generate(path: Path, config: Path, *extra: str) -> Path:
    env = dict(os.environ, MIXTUI_CONFIG_DIR=str(config))
    done = subprocess.run(
        [sys.executable, "-m", "mixtui", "generate", "--model", "nano", "--prompt", PROMPT,
         "--max-tokens", "20", "--temp", "0", "--trace", str(path), *extra],
        capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return path


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two greedy runs of one prompt on nano: its own two experts per token, and one."""
    folder = tmp_path_factory.mktemp("traces")
    return {"k2": generate(folder / "k2.jsonl", folder / "config"),
            "k1": generate(folder / "k1.jsonl", folder / "config",
                           "--experts-per-token", "1")}


def analyze(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main(["analyze", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys: pytest.CaptureFixture[str], *args: object) -> str:
    """The one line of a refusal with exit code 2 (nothing on stdout, no traceback)."""
    code, out, err = analyze(capsys, *args)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mixtui: ") and out == "", err
    return lines[0]


def records(path: Path) -> tuple[dict, list[dict]]:
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    return lines[0], [r for r in lines if r["type"] == "token"]


def top1(rec: dict, layer: int) -> int:
    """The chosen expert with the largest weight (the trace's order is argpartition's)."""
    experts, weights = rec["experts"][layer], rec["weights"][layer]
    return experts[int(np.argmax(weights))]


# -- the figures, against the records ----------------------------------------------------------
def test_json_figures_match_the_trace(traces: dict[str, Path],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = analyze(capsys, traces["k2"], "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    header, toks = records(traces["k2"])
    assert report["model"] == "nano" and report["tokens"] == len(toks)
    assert report["prompt_tokens"] == sum(t["phase"] == "prompt" for t in toks)
    assert report["num_experts"] == 8 and report["top_k"] == 2
    assert report["topk_baseline"] == pytest.approx(1 - 15 / 28)
    assert [la["layer"] for la in report["layers"]] == header["moe_layers"] == [0, 1, 2, 3]
    assert report["capacities"] == [2, 3, 4, 5, 6, 7, 8]
    for j, la in enumerate(report["layers"]):
        firsts = [top1(t, j) for t in toks]
        sets = [set(t["experts"][j]) for t in toks]
        pairs = len(toks) - 1
        assert la["top1_repeat_rate"] == pytest.approx(
            sum(a == b for a, b in zip(firsts, firsts[1:], strict=False)) / pairs)
        assert la["topk_repeat_rate"] == pytest.approx(
            sum(bool(a & b) for a, b in zip(sets, sets[1:], strict=False)) / pairs)
        shares = np.bincount(firsts, minlength=8) / len(toks)
        assert la["load"]["all"]["top1_share"] == pytest.approx(shares.tolist())
        cache = {(p["policy"], p["capacity"]): p["hit_rate"] for p in la["cache"]}
        assert set(cache) == {(p, c) for p in ("lru", "lfu", "optimal") for c in range(2, 9)}
        # with room for every expert only first uses miss
        used = len(set().union(*sets))
        for policy in ("lru", "lfu", "optimal"):
            assert cache[policy, 8] == pytest.approx(1 - used / (2 * len(toks)))
            assert 0 <= cache[policy, 2] <= cache[policy, 8]
        for c in range(2, 9):
            assert cache["lru", c] <= cache["optimal", c] + 1e-12
        assert set(la["repeat_by_phase"]) == {"prompt", "generate"}
    assert report["offload"] is not None  # nano is in the registry: its own expert size
    assert report["compare"] is None


def test_table_prints_the_baselines_and_the_paper(traces: dict[str, Path],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = analyze(capsys, traces["k2"])
    assert code == 0, err
    assert out.startswith("nano: 4 MoE layers, 8 experts, top-2")
    # the random baselines above the layers' rates: 1/E, 1 - C(6,2)/C(8,2), c/E
    random = [line.split() for line in out.splitlines() if line.startswith("random")]
    assert random[0][:5] == ["random", "12.5%", "46.4%", "12%/46%", "12%/46%"]
    assert random[1] == ["random", "(c/E)", "25%", "38%", "50%", "62%", "75%", "88%", "100%"]
    # the paper's ranges beside the first, middle and last layer only
    assert "L0: 13.6–14.9 / 44.9–49.9" in out and "L15: 23.6–28.4 / 61.6–67.0" in out
    assert "L31: 19.7–26.3 / 44.5–53.6" in out
    rows = [line for line in out.splitlines() if line[:1].isdigit()]
    assert [r.split()[0] for r in rows[:4]] == ["0", "1", "2", "3"]
    assert "lru (mean)" in out and "optimal (mean)" in out and "lru L3" in out
    # 140 columns, but for the first line, which names the trace's path (as long as it is)
    assert max(len(line) for line in out.splitlines()[1:]) <= 140


def test_markdown_and_out(traces: dict[str, Path], capsys: pytest.CaptureFixture[str],
                          tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    code, out, err = analyze(capsys, traces["k2"], "--format", "md", "--out", target)
    assert code == 0 and out == "" and "the report is in" in err
    text = target.read_text()
    assert "### Expert cache" in text and "| layer |" in text and "| 0 |" in text


def test_layers_choose_what_is_shown(traces: dict[str, Path],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    for choice, shown in (("first,last", [0, 3]), ("0-1", [0, 1]), ("2", [2])):
        code, out, _ = analyze(capsys, traces["k2"], "--layers", choice, "--format", "json")
        assert code == 0 and [la["layer"] for la in json.loads(out)["layers"]] == shown
    line = refused(capsys, traces["k2"], "--layers", "7")
    assert "Layer 7 is not one of the trace's MoE layers (0–3)" in line
    assert "--layers" in refused(capsys, traces["k2"], "--layers", "middle,x")


def test_projection_onto_mixtral_experts(traces: dict[str, Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = analyze(capsys, traces["k2"], "--expert-model", "mixtral-8x7b-instruct",
                             "--cache-bandwidth", 5, "--memory-bandwidth", 100,
                             "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    off = report["offload"]
    # one expert of Mixtral 8x7B at 4 bits, groups of 64 with a float16 scale and bias:
    # three 4096 x 14336 matrices
    params = 3 * 4096 * 14336
    assert off["expert_bytes"] == pytest.approx(params / 2 + params / 64 * 4)
    assert off["moe_layers"] == 32 and off["cache_gbps"] == 5 and off["memory_gbps"] == 100
    mean = {(p["policy"], p["capacity"]): p for p in report["cache"]}
    for point in off["points"]:
        misses = mean[point["policy"], point["capacity"]]["misses_per_token"]
        moved = misses * off["expert_bytes"] * 32
        assert point["miss_bytes_per_token"] == pytest.approx(moved)
        assert point["tokens_per_s"] == pytest.approx(
            1 / (off["resident_bytes_per_token"] / 100e9 + moved / 5e9))
    assert any("4 MoE layers" in n and "32" in n for n in report["notes"])
    code, out, _ = analyze(capsys, traces["k2"], "--expert-model", "mixtral-8x7b-instruct",
                           "--cache-bandwidth", 5)
    assert code == 0 and "tokens/s" in out and "99.1 MB per expert" in out


# -- compare -----------------------------------------------------------------------------------
def test_compare_two_experts_per_token_settings(traces: dict[str, Path],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = analyze(capsys, traces["k2"], "--compare", traces["k1"], "--format",
                             "json")
    assert code == 0, err
    compare = json.loads(out)["compare"]
    assert (compare["a_top_k"], compare["b_top_k"]) == (2, 1)
    _, a = records(traces["k2"])
    _, b = records(traces["k1"])
    ids_a, ids_b = [t["id"] for t in a], [t["id"] for t in b]
    same = next((i for i, (x, y) in enumerate(zip(ids_a, ids_b, strict=False)) if x != y),
                min(len(a), len(b)))
    assert compare["tokens"] == same >= sum(t["phase"] == "prompt" for t in a)
    layer0 = compare["layers"][0]
    # the first layer sees the same input under both settings: the same choice
    assert layer0["top1_agree"] == 1.0 and layer0["topk_agree"] == 1.0
    agree = [top1(x, 2) == y["experts"][2][0] for x, y in zip(a[:same], b[:same], strict=True)]
    assert compare["layers"][2]["top1_agree"] == pytest.approx(sum(agree) / same)
    code, out, _ = analyze(capsys, traces["k2"], "--compare", traces["k1"])
    assert code == 0 and "(top-2 vs top-1)" in out and f"{same} tokens compared" in out


def test_compare_refuses_other_texts_and_geometries(traces: dict[str, Path],
                                                    capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    header, toks = records(traces["k2"])
    other = tmp_path / "other.jsonl"
    changed = [dict(t, id=t["id"] + 1) if t["i"] == 1 else t for t in toks]
    other.write_text("\n".join(json.dumps(r) for r in [header, *changed]) + "\n")
    assert "different texts" in refused(capsys, traces["k2"], "--compare", other)
    narrow = tmp_path / "three-layers.jsonl"
    cut = [dict(t, experts=t["experts"][:3], weights=t["weights"][:3], probs=t["probs"][:3])
           for t in toks]
    narrow.write_text("\n".join(json.dumps(r) for r in
                                [dict(header, moe_layers=[0, 1, 2], num_layers=3), *cut]))
    assert "different geometries" in refused(capsys, traces["k2"], "--compare", narrow)


# -- refusals ------------------------------------------------------------------------------------
def test_refuses_a_file_that_is_not_a_trace(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    line = refused(capsys, text)
    assert "line 1" in line and "not a mixtui trace" in line
    other = tmp_path / "other.jsonl"
    other.write_text('{"type": "header", "format": "something-else"}\n')
    assert "line 1" in refused(capsys, other)
    assert "does not exist" in refused(capsys, tmp_path / "absent.jsonl")


def test_refuses_a_truncated_trace_naming_the_line(traces: dict[str, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    lines = traces["k2"].read_text().splitlines()
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(lines[:10]) + "\n" + lines[10][:40])
    line = refused(capsys, cut)
    assert "line 11" in line and "not JSON" in line


def test_refuses_an_unknown_version(traces: dict[str, Path], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    text = traces["k2"].read_text().replace('"version": 2', '"version": 7', 1)
    newer = tmp_path / "v7.jsonl"
    newer.write_text(text)
    line = refused(capsys, newer)
    assert "line 1" in line and "version 7" in line and "reads versions 1, 2" in line


def test_refuses_a_record_of_the_wrong_shape(traces: dict[str, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    header, toks = records(traces["k2"])
    cut = dict(toks[4], experts=toks[4]["experts"][:3])
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(json.dumps(r) for r in [header, *toks[:4], cut, *toks[5:]]) + "\n")
    line = refused(capsys, bad)
    assert "line 6" in line and "4 MoE layers" in line
    # a whole record with a gap in the indices: the index check, not the shape check
    gap = dict(toks[4], i=9)
    bad.write_text("\n".join(json.dumps(r) for r in [header, *toks[:4], gap, *toks[5:]]) + "\n")
    line = refused(capsys, bad)
    assert "line 6" in line and "has index 9" in line


def test_refuses_a_trace_without_routing(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    trace = generate(tmp_path / "bare.jsonl", tmp_path / "config", "--no-routing")
    line = refused(capsys, trace)
    assert "no routing" in line and "--no-routing" in line


def test_refuses_an_expert_model_of_another_geometry(traces: dict[str, Path],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(capsys, traces["k1"], "--expert-model", "mixtral-8x7b-instruct")
    assert "2 of 8 experts and the trace to 1 of 8" in line
    assert "--expert-model" in refused(capsys, traces["k2"], "--expert-model", "no-such-model")
    assert "--cache-bandwidth" in refused(capsys, traces["k2"], "--cache-bandwidth", "0")


def test_the_command_loads_no_mlx(traces: dict[str, Path]) -> None:
    code = ("import sys; from mixtui.cli.main import main; "
            f"rc = main(['analyze', {str(traces['k2'])!r}, '--format', 'json']); "
            "print(rc, any(m.split('.')[0] in ('mlx', 'mlx_lm') for m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "0 False"


def test_a_conversation_whose_experts_per_token_changed(traces: dict[str, Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    """As a TUI export: answers at k = 2 then k = 1, and tokens processed without routing."""
    from mixtui.app.analysis.tracefile import read_routing

    header, first = records(traces["k2"])
    _, second = records(traces["k1"])
    bare = [dict(t, experts=[], weights=[], probs=[]) for t in second[:3]]
    joined = [dict(t, i=i) for i, t in enumerate(first + second + bare)]
    path = tmp_path / "conversation.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [header, *joined]) + "\n")
    routing = read_routing(path).routing
    assert routing.experts.shape == (len(joined), 4, 2) and routing.top_k == 2
    assert (routing.experts[len(first):len(first) + len(second), :, 1] == -1).all()
    code, out, err = analyze(capsys, path, "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["tokens"] == len(first) + len(second) and report["skipped_tokens"] == 3
    lookups = 2 * len(first) + len(second)  # padding is not a lookup
    for j, la in enumerate(report["layers"]):
        used = len({e for t in first + second for e in t["experts"][j]})
        eight = next(p for p in la["cache"] if p["policy"] == "lru" and p["capacity"] == 8)
        assert eight["hit_rate"] == pytest.approx(1 - used / lookups)
    assert any("3 tokens without routing" in n for n in report["notes"])


def test_expert_sizes_from_the_registry() -> None:
    from mixtui.app.analysis.sizes import expert_size
    from mixtui.registry.loader import load_registry

    registry = load_registry(include_user=False)
    qwen = expert_size(registry["qwen3-30b-a3b-instruct"])
    params = 3 * 2048 * 768  # gate, up and down of one 768-wide expert, hidden 2048, 4-bit/64
    assert qwen.expert_bytes == pytest.approx(params / 2 + params / 64 * 4)
    assert (qwen.num_experts, qwen.top_k, qwen.moe_layers) == (128, 8, 48)
    mixtral = expert_size(registry["mixtral-8x7b-instruct"])
    one = expert_size(registry["mixtral-8x7b-instruct"], k=1)
    # a token at k = 2 reads one expert per layer more than at k = 1
    assert mixtral.resident_bytes_per_token - one.resident_bytes_per_token == pytest.approx(
        32 * mixtral.expert_bytes, rel=1e-6)


def test_the_memory_bandwidth_defaults_to_the_bench_probe(
        traces: dict[str, Path], isolated_config_dir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    keep_probe(12.5)
    code, out, err = analyze(capsys, traces["k2"], "--cache-bandwidth", 2, "--format", "json")
    assert code == 0, err
    off = json.loads(out)["offload"]
    assert off["memory_gbps"] == 12.5 and "measured" in off["memory_source"]
    first = off["points"][0]
    assert first["tokens_per_s"] == pytest.approx(
        1 / (off["resident_bytes_per_token"] / 12.5e9 + first["miss_bytes_per_token"] / 2e9))
