"""`mixtui bench`: the arithmetic of its rows (derived fields, the extrapolation, the
sentences), its four formats, and real runs of the bundled nano through the command: the
fields, a failed model, perplexity against experts per token, a cancelled run."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import keep_probe

from mixtui.app.bench import figures as b
from mixtui.app.bench.machine import Machine, measured_speed, speed_note
from mixtui.app.bench.report import FIELDS, render
from mixtui.core.errors import UsageError
from mixtui.engine.messages import RunFigures
from mixtui.registry.loader import load_registry

MIXTUI = [sys.executable, "-m", "mixtui"]


def _runs(ttft: list[float], tps: list[float], peak: int = 10**9, prompt: int = 100
          ) -> list[RunFigures]:
    return [RunFigures(t, prompt / t, d, peak, prompt, 32) for t, d in zip(ttft, tps, strict=True)]


def _machine(gbps: float | None = 100.0) -> Machine:
    return Machine("Linux x86_64", "a CPU", 2, 24 * 2**30, "MLX on the CPU",
                   {"mixtui": "0", "mlx": "0", "mlx-lm": "0"}, gbps)


@pytest.fixture
def probed(isolated_config_dir: Path) -> Path:
    """This machine's bandwidth already cached, so that a test run does not probe again."""
    return keep_probe(2.0)


# -- arithmetic ----------------------------------------------------------------------------------
def test_extrapolate_recovers_a_linear_cost() -> None:
    # fixed 10 ms + 3 ms a layer: measured at 2 and 4 layers, asked at 32
    assert b.extrapolate(0.016, 0.022, 2, 4, 32) == pytest.approx(0.010 + 32 * 0.003)
    # unequal layers: units are bytes, not counts
    assert b.extrapolate(1.0 + 5 * 0.1, 1.0 + 12 * 0.1, 5, 12, 100) == pytest.approx(11.0)
    # noise making the deeper run faster: the layers cost nothing more, not less
    assert b.extrapolate(0.020, 0.019, 2, 4, 32) == pytest.approx(0.020)
    with pytest.raises(ValueError):
        b.extrapolate(1, 2, 4, 4, 8)


def test_depths_run_n_and_half_of_n_unless_n_is_the_whole_model() -> None:
    assert b.Depths.of(32, 2) == b.Depths(32, 2, 1)
    assert b.Depths.of(32, 5) == b.Depths(32, 5, 2)
    assert b.Depths.of(32, 2).runs == (2, 1) and b.Depths.of(32, 2).extrapolated
    assert b.Depths.of(32, None) == b.Depths(32, 32, None)
    assert b.Depths.of(4, 4) == b.Depths(4, 4, None) == b.Depths.of(4, 9)
    assert b.Depths.of(4, 4).runs == (4,) and not b.Depths.of(4, 4).extrapolated


def test_scale_memory_knows_the_weights_and_extends_the_rest_by_layer() -> None:
    # 2 and 4 of 32 layers: weights 1,000 a layer + 300 outside; the rest (cache,
    # activations) 50 + 10 a layer
    peaks = (2_300 + 70, 4_300 + 90)
    assert b.scale_memory(peaks, (2_300, 4_300, 32_300), (2, 4, 32)) == 32_300 + 50 + 320


def test_row_figures_derive_bandwidth_roofline_and_the_wait() -> None:
    spec = load_registry()["mixtral-8x7b-instruct"]
    row = b.row_figures(spec, 2, b.Depths(32, 32), True,
                        {32: _runs([2.0, 1.0, 3.0], [20.0, 25.0, 10.0])}, 100, 64, 400.0)
    assert row.decode_tps == b.Spread(20.0, 10.0, 25.0)
    assert row.ttft_s == b.Spread(2.0, 1.0, 3.0)
    assert row.prompt_tps == b.Spread(50.0, 100 / 3, 100.0)
    # one decoded token reads the active weights (2 of 8 experts) and the KV cache so far
    active = spec.inventory.active_weight_bytes(spec.quantization, 2,
                                                spec.family.quant_overrides, 2)
    assert active == pytest.approx(7.25e9, rel=0.01)  # "about 7.3 GB" (reference)
    assert row.bytes_per_token == active + spec.cache_bytes(100 + 32)
    assert row.bandwidth_gbps == pytest.approx(row.bytes_per_token * 20.0 / 1e9)
    assert row.roofline_fraction == pytest.approx(row.bandwidth_gbps / 400.0)
    assert row.answer_300_s == pytest.approx(2.0 + 300 / 20.0)
    assert (row.total_params, row.active_params) == (spec.total_params(), spec.active_params(2))
    assert row.ok and not row.extrapolated and row.own_k


def test_an_extrapolated_row_scales_time_and_memory_to_the_full_depth() -> None:
    spec = load_registry()["mixtral-8x7b-instruct"]
    per_layer, fixed = 0.004, 0.010  # seconds a decode step
    w2, w4 = (b.spec_at(spec, n).weight_bytes() for n in (2, 4))
    # beyond the weights: 60 MB, and 20 MB a layer (its KV cache, the prompt's activations)
    half = _runs([0.5, 0.5], [1 / (fixed + 2 * per_layer)] * 2, peak=w2 + 100 * 10**6)
    run = _runs([0.9, 0.9], [1 / (fixed + 4 * per_layer)] * 2, peak=w4 + 140 * 10**6)
    row = b.row_figures(spec, 2, b.Depths(32, 4, 2), True, {2: half, 4: run}, 100, 64, None)
    assert row.extrapolated and row.layers_run == 4 and row.layers_total == 32
    assert row.decode_tps.median == pytest.approx(1 / (fixed + 32 * per_layer))
    assert row.ttft_s.median == pytest.approx(0.1 + 32 * 0.2)
    assert row.peak_memory_bytes == pytest.approx(spec.weight_bytes() + 60e6 + 32 * 20e6,
                                                  abs=2)
    assert row.roofline_fraction is None  # no bandwidth figure: no fraction


def _row(key: str, k: int | None, tps: float, peak: int, ppl: float | None = None
         ) -> b.BenchRow:
    spec = load_registry()[key]
    row = b.row_figures(spec, k, b.Depths(spec.geometry.layers, spec.geometry.layers), True,
                        {spec.geometry.layers: _runs([1.0], [tps], peak=peak)}, 100, 64, 100.0)
    return dataclasses.replace(row, perplexity=ppl)


def test_the_sentence_compares_each_model_with_the_dense_one() -> None:
    dense = _row("mistral-7b-instruct", None, 20.0, 4 * 10**9)
    moe = _row("mixtral-8x7b-instruct", 2, 11.2, 26 * 10**9)
    said = b.findings([moe, dense])
    spec_d, spec_m = (load_registry()[k] for k in ("mistral-7b-instruct",
                                                    "mixtral-8x7b-instruct"))
    active = spec_d.active_params() / spec_m.active_params(2)
    total = spec_d.total_params() / spec_m.total_params()
    assert said[0] == (f"{moe.name} decodes at 0.56 × {dense.name}'s speed (active "
                       f"parameters predict {active:.2f}, total parameters {total:.2f}) and "
                       "needs 6.50 × its memory.")
    assert 0.5 < active < 0.6 and 0.1 < total < 0.2  # the papers' claim, as figures


def test_the_sentence_weighs_experts_per_token_against_perplexity() -> None:
    two = _row("nano", 2, 200.0, 10**7, ppl=36.3)
    one = _row("nano", 1, 250.0, 10**7, ppl=52.0)
    said = b.findings([two, one])
    assert any(s.startswith("With 1 expert per token nano (bundled) decodes at 1.25 × its "
                            "speed with 2") and "perplexity is 52.00 against 36.30" in s
               for s in said), said


def test_no_measured_row_says_so() -> None:
    spec = load_registry()["nano"]
    row = b.failed_row(spec, "nano", 2, "it broke.", False)
    assert b.findings([row]) == ("No model was measured; the rows above say why.",)


@pytest.mark.parametrize("fmt", ["table", "md", "csv", "json"])
def test_every_format_carries_every_row(fmt: str) -> None:
    rows = (_row("mistral-7b-instruct", None, 20.0, 4 * 10**9),
            _row("mixtral-8x7b-instruct", 2, 11.0, 26 * 10**9),
            b.failed_row(load_registry()["mixtral-8x22b"], "mixtral-8x22b", 2,
                         "Mixtral 8x22B does not fit.", True))
    report = b.BenchReport(_machine(), 100, 64, 3, "random token ids", rows, b.findings(rows))
    text = render(report, fmt)  # type: ignore[arg-type]
    if fmt == "json":
        data = json.loads(text)
        assert [r["model"] for r in data["rows"]] == [r.model for r in rows]
        assert list(data["rows"][0]) == list(FIELDS)
        assert data["rows"][1]["decode_tps"] == 11.0 and data["rows"][2]["decode_tps"] is None
        assert data["rows"][2]["error"] == "Mixtral 8x22B does not fit."
        assert data["versions"]["mlx"] == "0" and data["backend"] == "MLX on the CPU"
        assert data["findings"] == list(report.findings)
    elif fmt == "csv":
        table = list(csv.DictReader(io.StringIO(text)))
        assert [r["model"] for r in table] == [r.model for r in rows]
        assert float(table[0]["decode_tps"]) == 20.0 and table[2]["decode_tps"] == ""
    else:
        for row in rows:
            assert row.model in text
        assert "mixtral-8x22b failed: Mixtral 8x22B does not fit." in text
        assert "failed ↓" in text
        assert "perplexity" not in text.splitlines()[4]  # no row has one: no column
        assert report.findings[0] in text
        assert "machine: Linux x86_64" in text
        if fmt == "md":
            assert sum(line.startswith("| ") for line in text.splitlines()) == 4


def test_bad_requests_are_refused_before_anything_runs() -> None:
    for request, words in [
        (b.BenchRequest(("nano",), layers=2), "--layers runs part of a synthetic model"),
        (b.BenchRequest(("nano",), synthetic=True, layers=1), "--layers must be at least 2"),
        (b.BenchRequest(("nano",), gen_tokens=1), "--gen-tokens must be at least 2"),
        (b.BenchRequest(("nano",), runs=0), "--runs must be at least 1"),
        (b.BenchRequest((), synthetic=True), "--models names no model"),
        (b.BenchRequest(("nano",), experts_per_token=(0,)), "--experts-per-token must be"),
    ]:
        with pytest.raises(UsageError, match=words.replace("-", "\\-")):
            b.check_request(request)


def test_cli_usage_errors_exit_2(cli_env: dict[str, str]) -> None:
    out = subprocess.run([*MIXTUI, "bench", "--models", "nano", "--layers", "2"],
                         capture_output=True, text=True, env=cli_env, timeout=60)
    assert out.returncode == 2
    assert "--layers runs part of a synthetic model; add --synthetic" in out.stderr
    out = subprocess.run([*MIXTUI, "bench", "--models", "nano", "--experts-per-token", "1,x",
                          "--format", "json"], capture_output=True, text=True, env=cli_env,
                         timeout=60)
    assert out.returncode == 2 and json.loads(out.stdout)["error"]["code"] == "bad-option"


# -- real runs ------------------------------------------------------------------------------
def test_nano_as_json_has_every_field(cli_env: dict[str, str], probed: Path) -> None:
    out = subprocess.run([*MIXTUI, "bench", "--models", "nano", "--format", "json", "--runs",
                          "2", "--gen-tokens", "8", "--prompt-tokens", "40"],
                         capture_output=True, text=True, env=cli_env, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["prompt_tokens"] == 40 and data["gen_tokens"] == 8 and data["runs"] == 2
    assert data["bandwidth_gbps"] == 2.0  # the cached probe
    assert data["versions"]["mlx-lm"] and data["device"] == "cpu"
    (row,) = data["rows"]
    spec = load_registry()["nano"]
    assert row["model"] == "nano" and row["experts_per_token"] == 2 and row["error"] is None
    assert row["decode_tps_min"] <= row["decode_tps"] <= row["decode_tps_max"]
    assert row["decode_tps"] > 0 and row["prompt_tps"] > 0 and row["ttft_s"] > 0
    assert row["weight_bytes"] > 0 and row["peak_memory_bytes"] >= row["weight_bytes"]
    assert (row["total_params"], row["active_params"]) == (spec.total_params(),
                                                           spec.active_params())
    assert row["bandwidth_gbps"] == pytest.approx(row["bytes_per_token"] * row["decode_tps"]
                                                  / 1e9)
    assert row["roofline_fraction"] == pytest.approx(row["bandwidth_gbps"] / 2.0)
    assert row["answer_300_s"] == pytest.approx(row["ttft_s"] + 300 / row["decode_tps"])
    assert row["synthetic"] is False and row["extrapolated"] is False
    assert row["layers_run"] == row["layers_total"] == 4
    assert "nano (bundled) decodes at" in data["findings"][0]
    # what the model bar and `mixtui models` show for it afterwards
    assert measured_speed("nano")["decode_tps"] == pytest.approx(row["decode_tps"])
    assert speed_note("nano").endswith("tok/s here, measured")


def test_a_failed_model_says_why_in_its_row(cli_env: dict[str, str], probed: Path) -> None:
    out = subprocess.run([*MIXTUI, "bench", "--models", "mixtral-8x7b-instruct,nano",
                          "--format", "md", "--runs", "1", "--gen-tokens", "4"],
                         capture_output=True, text=True, env=cli_env, timeout=120)
    assert out.returncode == 1, out.stderr  # a row failed
    lines = [line for line in out.stdout.splitlines() if line.startswith("| mixtral")]
    assert len(lines) == 1 and "failed ↓" in lines[0]
    (said,) = [line for line in out.stdout.splitlines() if line.startswith("- mixtral")]
    assert said.startswith("- mixtral-8x7b-instruct failed: Mixtral 8x7B Instruct v0.1 "
                           "(mlx-community") and "is not on this machine" in said
    assert said.endswith("or time it without the download with --synthetic.")
    assert "| nano |" in out.stdout and "nano (bundled) decodes at" in out.stdout


def test_perplexity_against_experts_per_token(cli_env: dict[str, str], probed: Path,
                                              tmp_path: Path) -> None:
    text = tmp_path / "emma.txt"
    text.write_text("Emma Woodhouse, handsome, clever, and rich, with a comfortable home and "
                    "happy disposition, seemed to unite some of the best blessings of "
                    "existence; and had lived nearly twenty-one years in the world with very "
                    "little to distress or vex her. " * 6)
    out = subprocess.run([*MIXTUI, "bench", "--models", "nano", "--experts-per-token", "1,2,8",
                          "--perplexity", str(text), "--format", "json", "--runs", "1",
                          "--gen-tokens", "4", "--perplexity-tokens", "300"],
                         capture_output=True, text=True, env=cli_env, timeout=180)
    assert out.returncode == 0, out.stderr
    rows = {r["experts_per_token"]: r for r in json.loads(out.stdout)["rows"]}
    assert sorted(rows) == [1, 2, 8]
    assert all(math.isfinite(r["perplexity"]) and r["perplexity"] > 1 for r in rows.values())
    assert "300 tokens in windows of 256" in rows[2]["perplexity_note"]
    # nano was trained with 2 experts a token: 1 loses quality (deterministic: no sampling)
    assert rows[1]["perplexity"] > rows[2]["perplexity"]
    assert rows[1]["active_params"] < rows[2]["active_params"] < rows[8]["active_params"]
    assert sum(1 for r in rows.values() if r["error"] is None) == 3


def test_ctrl_c_stops_within_a_second_with_the_rows_so_far(cli_env: dict[str, str],
                                                           probed: Path) -> None:
    proc = subprocess.Popen([*MIXTUI, "bench", "--models", "nano,nano", "--runs", "10",
                             "--gen-tokens", "32", "--format", "csv"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env)
    assert proc.stderr is not None
    seen = ""
    deadline = time.monotonic() + 120
    while "[2/2] nano" not in seen and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen += line
    assert "[2/2] nano" in seen, seen  # the first model's row is finished
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - start < 3.0  # well within a second here, but the CI is shared
    assert proc.returncode == 130
    assert "interrupted; the rows above are the ones finished" in stderr
    rows = list(csv.DictReader(io.StringIO(stdout)))
    assert len(rows) == 1 and float(rows[0]["decode_tps"]) > 0


def test_a_synthetic_model_runs_part_of_its_depth_and_says_so(cli_env: dict[str, str],
                                                              probed: Path,
                                                              tmp_path: Path) -> None:
    text = tmp_path / "t.txt"
    text.write_text("It is a truth universally acknowledged. " * 20)
    out = subprocess.run([*MIXTUI, "bench", "--synthetic", "--models", "nano", "--layers", "2",
                          "--format", "json", "--runs", "1", "--gen-tokens", "4",
                          "--perplexity", str(text)],
                         capture_output=True, text=True, env=cli_env, timeout=180)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    (row,) = data["rows"]
    spec = load_registry()["nano"]
    assert row["synthetic"] and row["extrapolated"]
    assert (row["layers_run"], row["layers_total"]) == (2, 4)
    assert row["weight_bytes"] == spec.weight_bytes()  # the full model's, not the 2 layers'
    assert row["decode_tps"] > 0 and row["peak_memory_bytes"] > 0
    assert row["perplexity"] is None
    assert row["perplexity_note"] == "left out: random weights make perplexity meaningless"
    assert data["prompt"] == "random token ids"
    assert any("Extrapolated rows ran their first N layers" in s for s in data["findings"])
    assert "[1/1] nano (2 of 4 layers)" in out.stderr and "(1 of 4 layers)" in out.stderr
    # the model bar's and the models list's figure: a synthetic run's
    assert speed_note("nano", synthetic_only=True).endswith("tok/s here, synthetic")


def _record(model: str, tps: float, synthetic: bool) -> None:
    from mixtui.app.bench.machine import record_speeds

    record_speeds([{"model": model, "decode_tps": tps, "synthetic": synthetic,
                    "extrapolated": synthetic, "layers_run": 2, "layers_total": 32,
                    "measured_at": "2026-12-01T12:00:00Z"}])


def test_speeds_are_kept_per_kind_and_read_back(isolated_config_dir: Path) -> None:
    assert speed_note("mixtral-8x7b-instruct") == ""
    _record("mixtral-8x7b-instruct", 4.24, True)
    assert speed_note("mixtral-8x7b-instruct") == "≈ 4.2 tok/s here, synthetic"
    _record("mixtral-8x7b-instruct", 23.4, False)  # a real run later: kept apart
    assert measured_speed("mixtral-8x7b-instruct", synthetic=True)["decode_tps"] == 4.24
    assert speed_note("mixtral-8x7b-instruct", synthetic_only=True) == \
        "≈ 4.2 tok/s here, synthetic"
    (isolated_config_dir / "bench" / "speeds.json").write_text("{not json")
    assert speed_note("mixtral-8x7b-instruct") == ""  # a damaged cache is no figure


def test_models_list_shows_the_speed_measured_here(cli_env: dict[str, str]) -> None:
    _record("mixtral-8x22b", 1.93, True)
    out = subprocess.run([*MIXTUI, "models"], capture_output=True, text=True, env=cli_env,
                         timeout=60)
    line = next(x for x in out.stdout.splitlines() if x.startswith("mixtral-8x22b "))
    assert line.rstrip().endswith("≈ 1.9 tok/s (synthetic)")
    out = subprocess.run([*MIXTUI, "models", "--json"], capture_output=True, text=True,
                         env=cli_env, timeout=60)
    rows = {r["key"]: r for r in json.loads(out.stdout)}
    assert rows["mixtral-8x22b"]["measured"]["decode_tps"] == 1.93
    assert rows["nano"]["measured"] is None


@pytest.mark.usefixtures("empty_hf_cache", "fixed_budget")
async def test_the_model_bar_shows_a_synthetic_speed_for_a_model_not_here(
        tiny_moe_dir: Path) -> None:
    from test_tui import ready

    from mixtui.core.types import Sampling
    from mixtui.tui.app import MixtuiApp
    from mixtui.tui.widgets.model_bar import ModelBar

    _record("mixtral-8x7b-instruct", 4.24, True)
    app = MixtuiApp(str(tiny_moe_dir), Sampling(temperature=0.0, max_tokens=4))
    async with app.run_test(size=(140, 45)) as pilot:
        await ready(pilot, app)
        bar = app.main.query_one(ModelBar)
        entry = next(e for e in bar.entries if e.key == "mixtral-8x7b-instruct")
        assert entry.speed == "≈ 4.2 tok/s here, synthetic"
        assert "Decode: ≈ 4.2 tok/s here, synthetic (mixtui bench)." in entry.fit_reason
        assert "Mixtral-8x7B-it not here ≈ 4.2 tok/s" in str(bar.render())  # at 140 columns
        nano = next(e for e in bar.entries if e.key == "nano")
        assert nano.speed == ""  # bundled: on disk, its own speed is what runs


def test_apple_silicon_shows_the_chips_published_bandwidth_beside_the_probe() -> None:
    from mixtui.app.bench.machine import APPLE_BANDWIDTH_GBPS, apple_chip

    assert apple_chip("Apple M2 Max") == "M2 Max" and apple_chip("Apple M4") == "M4"
    assert apple_chip("AMD EPYC 7B13 64-Core Processor") is None
    assert APPLE_BANDWIDTH_GBPS["M2 Max"] == 400 and APPLE_BANDWIDTH_GBPS["M4 Max"] == 546
    mac = dataclasses.replace(_machine(351.2), chip="M2 Max", published_gbps=400.0)
    assert mac.summary.endswith("bandwidth 351.2 GB/s measured (400 GB/s published for the "
                                "M2 Max)")
    assert _machine(None).summary.endswith("MLX on the CPU")


def test_an_extrapolated_spread_keeps_its_median_inside() -> None:
    spec = load_registry()["mistral-7b-instruct"]
    half = _runs([0.5, 0.6, 0.4], [2.0, 2.5, 1.5])
    deep = _runs([0.9, 1.3, 0.8], [1.4, 1.1, 1.6])
    row = b.row_figures(spec, None, b.Depths(32, 2, 1), True, {1: half, 2: deep}, 100, 64,
                        None)
    for spread in (row.decode_tps, row.ttft_s, row.prompt_tps):
        assert spread.low <= spread.median <= spread.high
    # the median: the two depths' medians, extended
    assert 1 / row.decode_tps.median == pytest.approx(b.extrapolate(1 / 2.0, 1 / 1.4, *(
        sum(v for i, v in spec.inventory.layer_active_bytes(
            spec.quantization, 2, spec.family.quant_overrides).items() if 0 <= i < n)
        for n in (1, 2, 32))))
