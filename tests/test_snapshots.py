"""SVG snapshots of the main screen (pytest-textual-snapshot), live figures masked.

The app runs a real engine on a tiny random Mixtral registered as model 2, then shows a
conversation loaded from a file whose routing is fixed here, so that every shade on screen
is the same on every machine. Timing- and machine-dependent figures (speeds, memory, the
device) are masked by the stats panel. Update after a deliberate change of the screen with
`pytest tests/test_snapshots.py --snapshot-update`, and look at the new SVGs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import register_in_slot_2
from textual.pilot import Pilot

from mixtui.app.conversation import Conversation
from mixtui.core.routing import RoutingBatch
from mixtui.core.types import ModelInfo, Stats
from mixtui.engine.messages import Finished, Tokens
from mixtui.tui.app import MixtuiApp

pytestmark = pytest.mark.usefixtures("empty_hf_cache", "fixed_budget")

SENTENCE = ("It is a truth universally acknowledged , that a single man in possession of "
            "a good fortune , must be in want of a wife .")
WORDS = SENTENCE.split(" ")


def fixed_routing(n: int, layers: int, experts: int, k: int, seed: int) -> RoutingBatch:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, layers, experts)).astype(np.float32)
    logits[:, :, seed % experts] += 1.0  # one favourite expert, so the shares are uneven
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    chosen = np.argsort(-probs, axis=-1)[..., :k].astype(np.int32)
    top = np.take_along_axis(probs, chosen, axis=-1)
    return RoutingBatch(chosen, (top / top.sum(-1, keepdims=True)).astype(np.float32),
                        probs.astype(np.float32))


def fixed_conversation(path: Path, info: ModelInfo) -> Path:
    conversation = Conversation("mistral-7b-instruct", info)
    layers, experts, k = len(info.moe_layers), info.num_experts, info.top_k
    prompt, answer = WORDS[:4], WORDS[4:]
    conversation.add_user(" ".join(prompt))
    conversation.add_tokens(Tokens(1, "prompt", 0, tuple(range(4)),
                                   tuple(f" {w}" for w in prompt),
                                   fixed_routing(len(prompt), layers, experts, k, 1)))
    conversation.add_tokens(Tokens(1, "generate", 0, tuple(range(len(answer))),
                                   tuple(f" {w}" for w in answer),
                                   fixed_routing(len(answer), layers, experts, k, 2)))
    conversation.finish(Finished(1, "".join(f" {w}" for w in answer), Stats(
        len(prompt), 0, len(answer), 0.01, 100.0, 100.0, 1, 1, "stop")))
    conversation.save(path)
    return path


@pytest.fixture
def snapshot_app(tiny_moe_dir: Path, moe_config: dict, isolated_config_dir: Path,
                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MIXTUI_BLAS", "bundled")  # the same device label everywhere
    register_in_slot_2(isolated_config_dir, tiny_moe_dir, moe_config, name="Tiny MoE")
    app = MixtuiApp("mistral-7b-instruct", mask_live_figures=True)
    saved = tmp_path / "conversation.json"

    async def run_before(pilot: Pilot) -> None:
        while app.info is None:
            await pilot.pause(0.05)
        app.main.show_conversation(Conversation.load(fixed_conversation(saved, app.info)))
        app.set_focus(None)
        await pilot.pause(0.2)

    return app, run_before


def test_main_screen_140x45(snap_compare, snapshot_app) -> None:
    app, run_before = snapshot_app
    assert snap_compare(app, terminal_size=(140, 45), run_before=run_before)


def test_main_screen_80x24(snap_compare, snapshot_app) -> None:
    app, run_before = snapshot_app
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
