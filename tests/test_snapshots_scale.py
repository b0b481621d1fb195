"""SVG snapshots of the main screen on a 128-expert model and on a model with shared experts
and a dense layer (pytest-textual-snapshot).

A tiny random Qwen3-MoE (3 layers, the middle one dense, 128 experts, 8 per token) is model
2; the conversation shown is loaded from a file whose routing is fixed (tests/test_snapshots.py
builds it), so the compact routing rows, the load strips and the token strip's colours for
the most frequent experts are the same on every machine. Update with
`pytest tests/test_snapshots_scale.py --snapshot-update`, and look at the new SVG.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import register_config_in_slot_2, register_in_slot_2
from test_snapshots import fixed_conversation
from textual.pilot import Pilot

from mixtui.app.conversation import Conversation
from mixtui.tui.app import MixtuiApp

pytestmark = pytest.mark.usefixtures("empty_hf_cache", "fixed_budget")


@pytest.fixture(scope="session")
def qwen3_128_config() -> dict:
    from mixtui.engine.synthetic import synthetic_config

    return synthetic_config("qwen3_moe", experts=128, experts_per_token=8, layers=3,
                            dense_layers=(1,), vocab=256)


@pytest.fixture(scope="session")
def qwen3_128_dir(tmp_path_factory: pytest.TempPathFactory, qwen3_128_config: dict) -> Path:
    """About 6 MB of float32 weights: built once per session."""
    from mixtui.engine.synthetic import make_model_dir

    return make_model_dir(tmp_path_factory.mktemp("models") / "qwen3-128", qwen3_128_config,
                          chat=True)


def test_main_screen_128_experts_140x45(snap_compare, qwen3_128_dir: Path,
                                        qwen3_128_config: dict, isolated_config_dir: Path,
                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXTUI_BLAS", "bundled")  # the same device label everywhere
    register_in_slot_2(isolated_config_dir, qwen3_128_dir, qwen3_128_config,
                       name="Tiny Qwen3 128")
    app = MixtuiApp("mistral-7b-instruct", mask_live_figures=True)
    saved = tmp_path / "conversation.json"

    async def run_before(pilot: Pilot) -> None:
        while app.info is None:
            await pilot.pause(0.05)
        assert app.info.num_experts == 128 and app.info.moe_layers == (0, 2)
        app.main.show_conversation(Conversation.load(fixed_conversation(saved, app.info)))
        app.set_focus(None)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(140, 45), run_before=run_before)


def test_main_screen_shared_experts_140x45(snap_compare, tiny_family_dir,
                                           isolated_config_dir: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # a tiny DeepSeek-V2: 16 experts, 3 per token, 2 shared experts, layer 0 dense
    import json

    model_dir = tiny_family_dir("deepseek_v2")
    config = json.loads((model_dir / "config.json").read_text())
    monkeypatch.setenv("MIXTUI_BLAS", "bundled")  # the same device label everywhere
    register_config_in_slot_2(isolated_config_dir, model_dir, config, name="Tiny DeepSeek-V2")
    app = MixtuiApp("mistral-7b-instruct", mask_live_figures=True)
    saved = tmp_path / "conversation.json"

    async def run_before(pilot: Pilot) -> None:
        while app.info is None:
            await pilot.pause(0.05)
        assert app.info.shared_experts == 2 and app.info.moe_layers == (1, 2)
        app.main.show_conversation(Conversation.load(fixed_conversation(saved, app.info)))
        app.set_focus(None)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(140, 45), run_before=run_before)
