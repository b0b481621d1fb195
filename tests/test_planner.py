"""The memory planner: weights from safetensors headers, verdicts against budgets, what would
fit instead, the macOS wired-limit hint, and the refusal before any engine starts."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from registry_keys import BEFORE_FAMILIES, KEYS
from textual.pilot import Pilot

from mixtui import planner
from mixtui.core.units import parse_size
from mixtui.planner import Budget, Fit, ModelTooBig, plan, safetensors_weight_bytes
from mixtui.registry.loader import load_registry
from mixtui.registry.local import resolve
from mixtui.registry.spec import ModelSpec


def budget(text: str) -> Budget:
    return Budget(parse_size(text), "MIXTUI_MEMORY_BUDGET", "override")


@pytest.fixture(scope="module")
def registry() -> dict[str, ModelSpec]:
    return load_registry()


def mixtui(env: dict[str, str], *args: object, timeout: float = 60
           ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mixtui", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)


def tensor_bytes_loaded(path: Path) -> int:
    import mlx.core as mx

    return sum(a.nbytes for a in mx.load(str(path)).values())


def data_bytes(path: Path) -> int:
    """A safetensors file's size less its 8-byte length and its JSON header."""
    with path.open("rb") as f:
        length = int.from_bytes(f.read(8), "little")
    return path.stat().st_size - 8 - length


# -- weights from the safetensors headers ---------------------------------------------------
def test_header_bytes_match_the_tensors(tiny_moe_dir: Path) -> None:
    file = tiny_moe_dir / "model.safetensors"
    measured = safetensors_weight_bytes(tiny_moe_dir)
    assert measured == tensor_bytes_loaded(file) == data_bytes(file)
    spec = resolve(str(tiny_moe_dir))
    fit = plan(spec, budget=budget("64GB"))
    assert fit.weights_source == "safetensors" and fit.weight_bytes == measured
    assert "from the safetensors headers" in fit.reason
    # float32 and unquantized: the geometry's arithmetic is exact here too
    assert spec.weight_bytes() == measured


def test_header_bytes_of_a_quantized_model(tmp_path: Path, moe_config: dict) -> None:
    from mixtui.engine.synthetic import make_model_dir

    model_dir = make_model_dir(tmp_path / "q4", moe_config, bits=4, group_size=32)
    file = model_dir / "model.safetensors"
    assert safetensors_weight_bytes(model_dir) == tensor_bytes_loaded(file) == data_bytes(file)
    fit = plan(resolve(str(model_dir)), budget=budget("64GB"))
    assert fit.weights_source == "safetensors"
    assert fit.weight_bytes == tensor_bytes_loaded(file)


def test_shards_named_by_the_index_only(tmp_path: Path, tiny_moe_dir: Path) -> None:
    import mlx.core as mx

    weights = mx.load(str(tiny_moe_dir / "model.safetensors"))
    names = sorted(weights)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half],
              "model-00002-of-00002.safetensors": names[half:]}
    model_dir = tmp_path / "sharded"
    model_dir.mkdir()
    for shard, keys in shards.items():
        mx.save_safetensors(str(model_dir / shard), {k: weights[k] for k in keys})
    (model_dir / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {k: s for s, keys in shards.items() for k in keys}}))
    # a stray file the index does not name is not loaded, so it is not counted
    mx.save_safetensors(str(model_dir / "consolidated.safetensors"), {"x": mx.zeros((1000,))})
    assert safetensors_weight_bytes(model_dir) == sum(a.nbytes for a in weights.values())


def test_unreadable_headers_fall_back_to_the_geometry(tmp_path: Path,
                                                      tiny_moe_dir: Path) -> None:
    model_dir = tmp_path / "broken"
    shutil.copytree(tiny_moe_dir, model_dir)
    file = model_dir / "model.safetensors"
    with file.open("r+b") as f:  # an interrupted download: the tensors are cut short
        f.truncate(file.stat().st_size // 2)
    assert safetensors_weight_bytes(model_dir) is None
    spec = resolve(str(model_dir))
    fit = plan(spec, budget=budget("64GB"))
    assert fit.weights_source == "geometry" and fit.weight_bytes == spec.weight_bytes()
    assert "estimated from the geometry" in fit.reason
    file.write_bytes(b"\xff" * 8 + b"{}")  # a header length no file could hold
    assert safetensors_weight_bytes(model_dir) is None
    # an index naming a shard that is not there
    file.unlink()
    (model_dir / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "model-00001-of-00001.safetensors"}}))
    assert safetensors_weight_bytes(model_dir) is None
    assert safetensors_weight_bytes(tmp_path / "nowhere") is None


# -- verdicts through the real CLI ----------------------------------------------------------
EXPECTED = {  # budget: verdict per model, at the default 4096-token context
    "1GB": ["fits", "does-not-fit", "does-not-fit", "does-not-fit", "does-not-fit",
            "does-not-fit"],
    "16GB": ["fits", "fits", "does-not-fit", "does-not-fit", "does-not-fit", "does-not-fit"],
    "32GB": ["fits", "fits", "tight", "does-not-fit", "does-not-fit", "fits"],
    "64GB": ["fits", "fits", "fits", "does-not-fit", "does-not-fit", "fits"],
    "512GB": ["fits", "fits", "fits", "fits", "fits", "fits"],
}
# the families' entries, needing (GB): qwen3-next 49.5, gpt-oss-20b 13.4, gpt-oss-120b 69.7,
# glm-4.5-air 66.9, deepseek-v2-lite 10.9, olmoe 4.8, granite 7.5, phi 26.4, qwen1.5 9.7
NO, FITS = "does-not-fit", "fits"
EXPECTED["1GB"] += [NO] * 9
EXPECTED["16GB"] += [NO, FITS, NO, NO, FITS, FITS, FITS, NO, FITS]
EXPECTED["32GB"] += [NO, FITS, NO, NO, FITS, FITS, FITS, FITS, FITS]
EXPECTED["64GB"] += [FITS, FITS, NO, NO, FITS, FITS, FITS, FITS, FITS]
EXPECTED["512GB"] += [FITS] * 9


@pytest.mark.parametrize("size", list(EXPECTED))
def test_models_json_verdicts_follow_the_budget(cli_env: dict[str, str], size: str) -> None:
    proc = mixtui(dict(cli_env, MIXTUI_MEMORY_BUDGET=size), "models", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    # the first keys stay first; the MoE families' entries follow (their verdicts: below)
    assert [r["key"] for r in rows][:len(KEYS)] == KEYS
    rows = rows[:len(KEYS)]
    assert [r["fit"] for r in rows] == EXPECTED[size]
    for row in rows:
        assert row["budget_bytes"] == parse_size(size)
        assert row["weights_source"] == ("safetensors" if row["key"] == "nano" else "geometry")
        reason = row["fit_reason"]
        words = {"fits": " fits: ", "tight": " is a tight fit: ",
                 "does-not-fit": " does not fit: "}[row["fit"]]
        assert reason.startswith(row["name"] + words), reason
        assert f"{row['need_bytes'] / 1e9:.1f} GB" in reason or row["need_bytes"] < 1e8
        assert f"{parse_size(size) / 1e9:.1f} GB" in reason and "MIXTUI_MEMORY_BUDGET" in reason
        assert reason.count(". ") == 0 and reason.endswith(".")  # one sentence


def test_models_table_has_a_need_column(cli_env: dict[str, str]) -> None:
    proc = mixtui(dict(cli_env, MIXTUI_MEMORY_BUDGET="16GB"), "models")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["key", "params", "active", "weights", "KV/token", "need",
                                "state", "fit", "decode", "here"]
    row = next(line for line in lines if line.startswith("mixtral-8x7b-instruct"))
    assert "29.4 GB (184%)" in row and row.endswith("does-not-fit")
    assert "memory budget: 16.0 GB (MIXTUI_MEMORY_BUDGET)" in proc.stdout


# -- what would fit instead -----------------------------------------------------------------
def test_a_shorter_context_is_suggested(registry: dict[str, ModelSpec]) -> None:
    spec, limit = registry["mixtral-8x7b-instruct"], budget("40GB")
    fit = plan(spec, context=131072, budget=limit)
    assert fit.verdict == "does-not-fit"
    n = fit.fits_at_context
    assert n is not None and n % 1024 == 0 and 4096 < n < 131072
    assert plan(spec, context=n, budget=limit).verdict == "fits"
    assert plan(spec, context=n + 1024, budget=limit).verdict != "fits"
    assert fit.smaller == ()  # a shorter context is enough: no other model is named
    reason = fit.error().message
    assert f"it would fit with a context of {n} tokens (--max-kv-size {n})" in reason
    assert reason.endswith("; --force loads it anyway.")
    assert "131072 tokens" in reason and "40.0 GB" in reason
    # only a tight context left: it says so
    tight = plan(spec, context=65536, budget=budget("32GB"))
    assert tight.fits_at_context_verdict == "tight"
    assert plan(spec, context=tight.fits_at_context or 0, budget=budget("32GB")).verdict == \
        "tight"
    assert "it would just fit (tight) with a context of" in tight.reason


def test_the_shortest_context_suggested_is_512(registry: dict[str, ModelSpec]) -> None:
    spec = registry["mixtral-8x7b-instruct"]
    weights = spec.weight_bytes()
    need_512 = weights + max(weights // 10, 256 * 2**20) + 512 * spec.kv_bytes_per_token()
    fit = plan(spec, 65536, Budget(int(need_512 / 0.85) + 1, "test", "override"))
    assert fit.verdict == "does-not-fit" and fit.fits_at_context == 512
    assert fit.fits_at_context_verdict == "fits"
    below = plan(spec, 65536, Budget(need_512 - 1, "test", "override"))
    assert below.fits_at_context is None


def test_smaller_models_are_suggested(registry: dict[str, ModelSpec]) -> None:
    # the registry as it was before the MoE families of issue 10: its suggestions stay stable
    registry = {k: v for k, v in registry.items() if k in BEFORE_FAMILIES}
    fit = plan(registry["mixtral-8x22b-instruct"], budget=budget("16GB"), registry=registry)
    assert fit.fits_at_context is None
    assert fit.smaller == ("nano", "mistral-7b-instruct")
    assert fit.reason.endswith("even at 512 tokens of context it would not fit, but smaller "
                               f"models do: {', '.join(fit.smaller)}.")
    one = plan(registry["mixtral-8x7b-instruct"], budget=budget("1GB"), registry=registry)
    assert one.reason.endswith("but a smaller model does: nano.")
    none = plan(registry["nano"], budget=budget("100MB"), registry=registry)
    assert none.verdict == "does-not-fit" and none.smaller == ()
    assert none.reason.endswith("and no smaller model in the registry fits either.")


def test_fits_and_tight_sentences(registry: dict[str, ModelSpec]) -> None:
    fits = plan(registry["mixtral-8x7b-instruct"], budget=budget("64GB"))
    assert fits.reason == (
        "Mixtral 8x7B Instruct v0.1 fits: it needs 29.4 GB (26.3 GB of weights estimated from "
        "the geometry + 0.5 GB of KV cache at 4096 tokens + 2.6 GB working margin) of the "
        "64.0 GB budget (MIXTUI_MEMORY_BUDGET).")
    tight = plan(registry["mixtral-8x7b-instruct"], budget=budget("32GB"))
    assert tight.verdict == "tight"
    assert "is a tight fit: it needs 29.4 GB" in tight.reason
    assert "92 % of the 32.0 GB budget" in tight.reason


# -- macOS: the GPU's wired-memory limit ------------------------------------------------------
def on_a_mac(monkeypatch: pytest.MonkeyPatch, total: int) -> None:
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    monkeypatch.setattr(platform, "machine", lambda: "arm64")
    monkeypatch.setattr(planner, "_total_memory", lambda: total)


def test_macos_hint_for_the_gpu_working_set(monkeypatch: pytest.MonkeyPatch,
                                            registry: dict[str, ModelSpec]) -> None:
    import mlx.core as mx

    spec = registry["mixtral-8x7b-instruct"]
    on_a_mac(monkeypatch, 64 * 2**30)
    monkeypatch.delenv("MIXTUI_MEMORY_BUDGET", raising=False)
    monkeypatch.setattr(mx, "device_info",
                        lambda: {"max_recommended_working_set_size": 24 * 10**9})
    gpu = planner.memory_budget()
    assert gpu.kind == "gpu" and gpu.bytes == 24 * 10**9 and "iogpu.wired_limit_mb" in gpu.source
    fit = plan(spec, budget=gpu, registry=registry)
    assert fit.verdict == "does-not-fit" and fit.hint is not None
    text = fit.sentence()
    assert text == f"{fit.reason} {fit.hint}"
    assert text.count(". ") == 1  # one sentence and one hint sentence
    limit = int(fit.hint.split("iogpu.wired_limit_mb=")[1].split("`")[0])
    assert limit % 1024 == 0 and fit.need_bytes <= 0.85 * limit * 2**20
    assert "reboot" in fit.hint and "less memory for the system" in fit.hint
    assert "64 GB" in fit.hint
    # raised to what it suggests, the model fits
    assert plan(spec, budget=Budget(limit * 2**20, gpu.source, "gpu")).verdict == "fits"
    # a Mac too small for the model even with the limit raised: no hint
    on_a_mac(monkeypatch, 16 * 2**30)
    assert plan(spec, budget=gpu, registry=registry).hint is None
    # the limit is not the GPU's working set: no hint
    on_a_mac(monkeypatch, 64 * 2**30)
    assert plan(spec, budget=budget("24GB"), registry=registry).hint is None


def test_no_macos_hint_elsewhere(monkeypatch: pytest.MonkeyPatch,
                                 registry: dict[str, ModelSpec]) -> None:
    monkeypatch.setattr(platform, "system", lambda: "Linux")
    monkeypatch.setattr(planner, "_total_memory", lambda: 64 * 2**30)
    fit = plan(registry["mixtral-8x7b-instruct"],
               budget=Budget(24 * 10**9, "the GPU's recommended working set", "gpu"))
    assert fit.hint is None and fit.sentence() == fit.reason


# -- refusing before the engine starts ------------------------------------------------------
HUGE_CONTEXT = 10_000_000


def test_fault_15_model_plus_kv_over_budget(cli_env: dict[str, str], tiny_moe_dir: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A tiny model with a huge context (KV cache 5 GB) and a 1 GB budget: refused with the
    numbers and exit code 2 before any engine process starts; with --force it runs."""
    from mixtui.cli import main
    from mixtui.engine import client

    spec = resolve(str(tiny_moe_dir))
    fit = plan(spec, context=HUGE_CONTEXT, budget=budget("1GB"))
    assert fit.verdict == "does-not-fit" and fit.kv_bytes > 5 * 10**9 > fit.weight_bytes
    args = ["generate", "--model", str(tiny_moe_dir), "--prompt", "w5 w6 w7",
            "--max-tokens", "3", "--temp", "0", "--max-kv-size", str(HUGE_CONTEXT)]

    # In-process: an engine started at all would fail the test.
    started: list[object] = []
    monkeypatch.setattr(client, "EngineProcess", lambda *a, **k: started.append(a))
    monkeypatch.setenv("MIXTUI_MEMORY_BUDGET", "1GB")
    assert main.main(args) == ModelTooBig.exit_code == 2
    assert started == []
    assert capsys.readouterr().err == f"mixtui: {fit.error().message}\n"

    # The real command: the same sentence, quickly, and nothing on stdout.
    env = dict(cli_env, MIXTUI_MEMORY_BUDGET="1GB")
    t0 = time.monotonic()
    proc = mixtui(env, *args)
    assert proc.returncode == 2, proc.stderr
    assert time.monotonic() - t0 < 20
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    line, = proc.stderr.splitlines()
    n = fit.fits_at_context
    assert n is not None
    assert line.startswith(f"mixtui: {spec.name} does not fit: it needs "
                           f"{fit.need_bytes / 1e9:.1f} GB")
    assert f"{fit.kv_bytes / 1e9:.1f} GB of KV cache at {HUGE_CONTEXT} tokens" in line
    assert "but the budget is 1.0 GB (MIXTUI_MEMORY_BUDGET)" in line
    assert f"--max-kv-size {n}" in line and line.endswith("--force loads it anyway.")

    forced = mixtui(env, *args, "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    assert len(json.loads(forced.stdout)["token_ids"]) == 3
    warning, = forced.stderr.splitlines()
    assert warning.startswith("mixtui: warning: ") and "does not fit" in warning
    assert warning.endswith("loading it anyway (--force).")


def test_tight_warns_once_and_goes_on(tiny_moe_dir: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The loader policy's verdicts as `mixtui generate` acts on them (a warning line for a
    tight fit, nothing for a fit, a refusal for no fit)."""
    from mixtui.app.loader import Refused, Start, decide
    from mixtui.cli.wording import say

    spec = resolve(str(tiny_moe_dir))
    need = plan(spec, budget=budget("64GB")).need_bytes
    monkeypatch.setenv("MIXTUI_MEMORY_BUDGET", str(int(need / 0.95)))
    tight = decide(str(tiny_moe_dir), context=4096)
    assert isinstance(tight, Start) and tight.warn
    assert say(tight).startswith("warning: ") and "is a tight fit" in say(tight)
    assert "\n" not in say(tight)
    monkeypatch.setenv("MIXTUI_MEMORY_BUDGET", "64GB")
    fits = decide(str(tiny_moe_dir), context=4096)
    assert isinstance(fits, Start) and not fits.warn
    monkeypatch.setenv("MIXTUI_MEMORY_BUDGET", "100MB")
    refused = decide(str(tiny_moe_dir), context=4096)
    assert isinstance(refused, Refused) and isinstance(refused.fit.error(), ModelTooBig)


def test_force_flag_parses_at_both_levels() -> None:
    from mixtui.cli.main import build_parser

    parser = build_parser()
    assert parser.parse_args([]).force is False
    assert parser.parse_args(["--force"]).force is True
    gen = ["generate", "--model", "nano", "--prompt", "x"]
    assert parser.parse_args(gen).force is False
    assert parser.parse_args([*gen, "--force"]).force is True
    assert parser.parse_args(["--force", *gen]).force is True


# -- the TUI: the bar and the refusal say the same; --force loads ---------------------------
async def test_tui_refusal_and_bar_share_the_fit_and_force_loads(
        tiny_moe_dir: Path, monkeypatch: pytest.MonkeyPatch, empty_hf_cache: Path) -> None:
    from mixtui.tui.app import MixtuiApp
    from mixtui.tui.widgets.model_bar import ModelBar
    from mixtui.tui.wording import say

    async def wait_for(pilot: Pilot, condition: Callable[[], bool],
                       timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "timed out waiting for the app"
            await pilot.pause(0.05)

    monkeypatch.setenv("MIXTUI_MEMORY_BUDGET", "100MB")
    app = MixtuiApp(str(tiny_moe_dir))
    async with app.run_test(size=(140, 45)) as pilot:
        await wait_for(pilot, lambda: bool(app.chat.texts("notice")))
        assert app.engine is None
        refusal = app.chat.texts("notice")[0]
        fit: Fit = plan(resolve(str(tiny_moe_dir)), context=app.settings.max_kv_size)
        assert refusal == say(fit)
        assert refusal.endswith("; `mixtui --force` loads it anyway.")
        entries = {e.key: e for e in app.query_one(ModelBar).entries}
        big = entries["mixtral-8x7b-instruct"]
        assert big.state == "does not fit"
        assert big.fit_reason == say(plan(load_registry()["mixtral-8x7b-instruct"],
                                          context=app.settings.max_kv_size))
        assert "does not fit: it needs 29.4 GB" in big.fit_reason

    app = MixtuiApp(str(tiny_moe_dir), force=True)
    async with app.run_test(size=(140, 45)) as pilot:
        await wait_for(pilot, lambda: app.info is not None)
        assert any(n.endswith("loading it anyway (--force).")
                   for n in app.chat.texts("notice"))
