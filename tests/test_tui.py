"""The TUI driven by Pilot against a real engine process and a tiny random Mixtral."""

from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Input, Static

from mixtui.engine.messages import Sampling
from mixtui.tui.app import MixtuiApp
from mixtui.tui.widgets.heatmap import RoutingHeatmap


async def wait_for(pilot: Pilot, condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the app"
        await pilot.pause(0.05)


def text_of(widget: Static) -> str:
    content = widget.render()
    return content.plain if isinstance(content, Text) else str(content)


async def test_prompt_streams_text_routing_and_stats(tiny_moe_dir: Path) -> None:
    app = MixtuiApp(str(tiny_moe_dir))
    async with app.run_test(size=(140, 45)) as pilot:
        await wait_for(pilot, lambda: app.info is not None)
        assert "8 experts, 2 per token" in text_of(app.query_one("#model-bar", Static))
        assert app.focused is app.query_one(Input)
        await pilot.press(*"w5 w6 w7")
        await pilot.press("enter")
        # The tiny model may finish between two polls: wait for its Finished, not the flag.
        await wait_for(pilot, lambda: app.last_finish_reason is not None)
        assert not app.generating
        user, answer = app.query(".turn-user").first(Static), app.query(".turn-model").last(Static)
        assert text_of(user) == "w5 w6 w7"
        assert app.turns[-1][0] == "assistant" and app.turns[-1][1]
        assert text_of(answer) == app.turns[-1][1]
        heatmap = text_of(app.query_one(RoutingHeatmap))
        assert "L0" in heatmap and "L1" in heatmap and "share of assignments" in heatmap
        assert app._counts is not None and app._counts.sum() > 0
        stats = text_of(app.query_one("#stats", Static))
        assert "TTFT" in stats and "tok/s" in stats and "MLX peak" in stats


async def test_escape_stops_generation_and_keeps_partial_answer(tiny_moe_dir: Path) -> None:
    # Greedy decoding of this random model runs for thousands of tokens without an EOS.
    app = MixtuiApp(str(tiny_moe_dir), Sampling(temperature=0.0, max_tokens=5000))
    async with app.run_test(size=(140, 45)) as pilot:
        await wait_for(pilot, lambda: app.info is not None)
        app.query_one(Input).value = "w5 w6 w7 w8 w9 w10 w11 w12"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app._answer_text != "")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.generating, timeout=2.0)
        assert app.turns[-1][0] == "assistant" and app.turns[-1][1]
        assert app.last_finish_reason == "cancelled"
        assert len(app.turns[-1][1].split()) < 5000


async def test_missing_model_is_reported_not_crashed(empty_hf_cache: Path) -> None:
    app = MixtuiApp("mixtral-8x7b-instruct")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        notices = [text_of(w) for w in app.query(".notice").results(Static)]
        assert any("is not on this machine" in n for n in notices)
        assert app.engine is None
