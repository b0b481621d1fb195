"""The TUI driven by Pilot against real engine processes and tiny random models.

Slot 2 of the model bar (mistral-7b-instruct) is overridden in the user's models.toml with a
tiny dense model on disk, so switching runs two real engines; the other real models are
absent from the (empty) Hugging Face cache, as on a fresh machine.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from conftest import register_in_slot_2
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Input, Static

from mixtui.app.chat import State
from mixtui.app.trace import read_trace
from mixtui.core.types import Sampling
from mixtui.tui.app import MixtuiApp
from mixtui.tui.screens import AskScreen, HelpScreen, SamplingScreen
from mixtui.tui.widgets.heatmap import RoutingHeatmap
from mixtui.tui.widgets.token_strip import TokenStrip

pytestmark = pytest.mark.usefixtures("empty_hf_cache", "fixed_budget")

LONG = Sampling(temperature=0.0, max_tokens=5000)  # this random model never says EOS


async def wait_for(pilot: Pilot, condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the app"
        await pilot.pause(0.05)


def text_of(widget) -> str:
    content = widget.render()
    return content.plain if isinstance(content, Text) else str(content)


def process_gone(pid: int) -> bool:
    """Ended, as the system sees it (a zombie waiting to be collected counts as ended)."""
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def notices(app: MixtuiApp) -> list[str]:
    return app.chat.texts("notice")


async def ready(pilot: Pilot, app: MixtuiApp) -> None:
    await wait_for(pilot, lambda: app.info is not None)


async def ask(pilot: Pilot, app: MixtuiApp, prompt: str) -> None:
    app.query_one("#prompt", Input).value = prompt
    app.query_one("#prompt", Input).focus()
    await pilot.press("enter")


@pytest.fixture
async def answered(tiny_moe_dir: Path):
    """The app on the tiny MoE model at 140x45: ready, "w5 w6 w7" asked, the answer (8
    tokens, greedy) finished. Yields (app, pilot)."""
    app = MixtuiApp(str(tiny_moe_dir), Sampling(temperature=0.0, max_tokens=8))
    async with app.run_test(size=(140, 45)) as pilot:
        await ready(pilot, app)
        await ask(pilot, app, "w5 w6 w7")
        await wait_for(pilot, lambda: app.last_finish_reason is not None)
        yield app, pilot


# -- chat, routing, stats --------------------------------------------------------------------
async def test_prompt_streams_text_routing_and_stats(tiny_moe_dir: Path) -> None:
    app = MixtuiApp(str(tiny_moe_dir), Sampling(temperature=0.0, max_tokens=24))
    async with app.run_test(size=(140, 45)) as pilot:
        await ready(pilot, app)
        assert "8 experts, 2 per token" in text_of(app.query_one("#model-bar"))
        assert app.focused is app.query_one("#prompt", Input)
        await pilot.press(*"w5 w6 w7")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.last_finish_reason is not None)
        assert not app.generating
        assert app.chat.texts("user") == ["w5 w6 w7"]
        assert app.conversation.turns[-1][0] == "assistant"
        assert app.chat.texts("answer")[-1] == app.conversation.turns[-1][1] != ""
        conversation = app.conversation
        stats = conversation.stats[-1]
        assert len(conversation) == stats.prompt_tokens + stats.generation_tokens
        routing = conversation.routing()
        assert routing is not None and len(routing) == len(conversation)
        heatmap = text_of(app.query_one(RoutingHeatmap))
        assert "L0" in heatmap and "L1" in heatmap and "uniform" in heatmap
        strip = app.query_one(TokenStrip)
        assert "layer L0" in text_of(strip)
        panel = "\n".join(text_of(w) for w in app.query_one("#stats").query(Static))
        assert "TTFT" in panel and "tok/s" in panel
        # the engine process's own memory, read while it runs
        engine_row = next(line for line in panel.splitlines() if line.startswith("engine"))
        assert engine_row.rstrip().endswith("RSS"), engine_row
        shares = app.query_one(RoutingHeatmap).shares
        assert shares is not None
        turn, whole = shares
        assert whole.sum() == len(conversation) * 2 * 2  # tokens x layers x k
        assert (whole == conversation.counts()).all()
        assert (turn == conversation.counts(request=0)).all()


async def test_escape_stops_generation_and_keeps_partial_answer(tiny_moe_dir: Path) -> None:
    app = MixtuiApp(str(tiny_moe_dir), LONG)
    async with app.run_test(size=(140, 45)) as pilot:
        await ready(pilot, app)
        await ask(pilot, app, "w5 w6 w7 w8 w9 w10 w11 w12")
        await wait_for(pilot, lambda: app.controller.answer_text != "")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.generating, timeout=2.0)
        assert app.last_finish_reason == "cancelled"
        role, text = app.conversation.turns[-1]
        assert role == "assistant" and text and len(text.split()) < 5000
        assert any("partial answer is kept" in n for n in notices(app))
        # the next prompt goes on from there
        app.settings.sampling = Sampling(temperature=0.0, max_tokens=3)
        await ask(pilot, app, "w9")
        await wait_for(pilot, lambda: app.last_finish_reason == "length")
        assert [r for r, _ in app.conversation.turns] == ["user", "assistant"] * 2


# -- keys ------------------------------------------------------------------------------------
async def test_single_keys_act_only_outside_the_input(answered, isolated_config_dir: Path
                                                      ) -> None:
    app, pilot = answered
    prompt = app.query_one("#prompt", Input)
    strip = app.query_one(TokenStrip)
    # in the input, keys are text
    await pilot.press("e", "1", "right_square_bracket")
    assert prompt.value == "e1]" and strip.colouring is True and strip.layer_index == 0
    prompt.value = ""
    await pilot.press("escape")  # idle: leaves the input
    assert app.focused is not prompt
    await pilot.press("right_square_bracket")
    assert strip.layer_index == 1 and "layer L1" in text_of(strip)
    await pilot.press("right_square_bracket")  # clamped at the last MoE layer
    assert strip.layer_index == 1
    await pilot.press("left_square_bracket")
    assert strip.layer_index == 0
    await pilot.press("e")
    assert strip.colouring is False
    saved = json.loads((isolated_config_dir / "settings.json").read_text())
    assert saved["expert_colouring"] is False
    await pilot.press("e")
    assert strip.colouring is True
    # the token cursor shows that token's routing
    await pilot.press("t")
    assert app.focused is strip
    await pilot.press("home")
    assert strip.cursor == 0
    first = app.conversation.token(0).text
    assert repr(first)[1:-1][:6] in text_of(app.query_one(RoutingHeatmap))
    await pilot.press("right")
    assert strip.cursor == 1
    await pilot.press("end")
    assert strip.cursor == len(app.conversation) - 1
    await pilot.press("question_mark")
    assert isinstance(app.screen, HelpScreen)
    help_text = text_of(app.screen.query_one("#help-keys"))
    for key in ("Esc", "ctrl+q", "ctrl+p", "[  ]", "1 … 5", "e", "?"):
        assert key in help_text
    await pilot.press("1")  # single keys do nothing under a dialog
    assert isinstance(app.screen, HelpScreen) and app.engine is not None
    await pilot.press("escape")
    assert not isinstance(app.screen, HelpScreen)
    await pilot.press("i")
    assert app.focused is prompt
    await pilot.press("escape")
    await pilot.press("enter")
    assert app.focused is prompt


async def test_fault_19_ctrl_q_during_an_answer_quits_and_ends_the_engine(
        tiny_moe_dir: Path) -> None:
    app = MixtuiApp(str(tiny_moe_dir), LONG)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        await ask(pilot, app, "w5 w6")
        await wait_for(pilot, lambda: app.controller.answer_text != "")
        engine = app.engine
        assert engine is not None
        started = time.monotonic()
        await pilot.press("ctrl+q")
    assert time.monotonic() - started < 3.0  # the app is gone (the terminal is back)
    # and so is the engine: the app ends it on the way out (a busy 2-core CI machine can
    # make that take a little longer than on a desktop)
    assert engine.pid is not None
    while not process_gone(engine.pid) and time.monotonic() - started < 5.0:
        time.sleep(0.05)
    gone_after = time.monotonic() - started
    assert process_gone(engine.pid), f"engine alive {gone_after:.1f} s after ctrl+q"


# -- models ----------------------------------------------------------------------------------
async def test_switching_models_ends_the_old_engine(tiny_moe_dir: Path, tiny_dense_dir: Path,
                                                    dense_config: dict,
                                                    isolated_config_dir: Path) -> None:
    register_in_slot_2(isolated_config_dir, tiny_dense_dir, dense_config)
    app = MixtuiApp(str(tiny_moe_dir), LONG)
    async with app.run_test(size=(140, 45)) as pilot:
        await ready(pilot, app)
        bar = text_of(app.query_one("#model-bar"))
        assert "bundled" in bar and "on disk" in bar and "not here" in bar
        # while answering, a model key stops the answer first, then switches
        await ask(pilot, app, "w5 w6 w7")
        await wait_for(pilot, lambda: app.controller.answer_text != "")
        old = app.engine
        assert old is not None
        await pilot.press("escape")  # stops
        await wait_for(pilot, lambda: not app.generating, timeout=2.0)
        await pilot.press("escape")  # leaves the input
        await pilot.press("2")
        # the chat shows only the new conversation (the old one used to stay above)
        assert app.chat.texts("user") == [] and app.chat.texts("answer") == []
        assert notices(app) == ["Switching to Tiny dense: a new conversation."]
        await wait_for(pilot, lambda: app.info is not None and not app.info.is_moe)
        assert app.engine is not old
        await wait_for(pilot, lambda: not old.process.is_alive(), timeout=5.0)
        assert "dense model" in text_of(app.query_one(RoutingHeatmap))
        assert app.conversation.turns == []
        # settings remember the model for the next launch
        saved = json.loads((isolated_config_dir / "settings.json").read_text())
        assert saved["last_model"] == "mistral-7b-instruct"
        # a model that is not on disk: a message with its size and what to do, nothing stops
        dense_engine = app.engine
        await pilot.press("3")
        await pilot.pause(0.1)
        assert app.engine is dense_engine
        assert any("is not on this machine" in n and "GB" in n for n in notices(app))
        await pilot.press("1")  # the bundled nano model
        await wait_for(pilot, lambda: app.info is not None and app.info.name == "nano")
    again = MixtuiApp()
    assert again.model_name == "nano"


async def test_switch_while_generating_stops_then_switches(tiny_moe_dir: Path,
                                                           tiny_dense_dir: Path,
                                                           dense_config: dict,
                                                           isolated_config_dir: Path) -> None:
    register_in_slot_2(isolated_config_dir, tiny_dense_dir, dense_config)
    app = MixtuiApp(str(tiny_moe_dir), LONG)
    async with app.run_test(size=(140, 45)) as pilot:
        await ready(pilot, app)
        await ask(pilot, app, "w5 w6 w7")
        await wait_for(pilot, lambda: app.controller.answer_text != "")
        app.set_focus(None)
        await pilot.press("2")  # no Esc first: the switch stops the answer itself
        await wait_for(pilot, lambda: app.info is not None and not app.info.is_moe)
        assert app.last_finish_reason == "cancelled"


async def test_a_model_that_does_not_fit_is_refused(tiny_moe_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXTUI_MEMORY_BUDGET", "100MB")
    app = MixtuiApp(str(tiny_moe_dir))
    async with app.run_test(size=(140, 45)) as pilot:
        await wait_for(pilot, lambda: bool(notices(app)))
        assert app.engine is None
        message = notices(app)[0]
        assert "needs" in message and "GB" in message and "smaller model" in message
        assert "too big" in text_of(app.query_one("#model-bar"))


# -- faults ----------------------------------------------------------------------------------
async def test_fault_16_killed_engine_is_reported_and_reloaded(tiny_moe_dir: Path) -> None:
    app = MixtuiApp(str(tiny_moe_dir), LONG)
    async with app.run_test(size=(140, 45)) as pilot:
        await ready(pilot, app)
        await ask(pilot, app, "w5 w6 w7")
        await wait_for(pilot, lambda: app.controller.answer_text != "")
        assert app.engine is not None and app.engine.pid is not None
        os.kill(app.engine.pid, signal.SIGKILL)
        await wait_for(pilot, lambda: app.engine is None, timeout=5.0)
        assert any("exited (code -9)" in n and "press r" in n.lower() for n in notices(app))
        assert "code -9" in text_of(app.query_one("#model-bar"))
        assert app.main.engine_state is State.EXITED and not app.controller.running
        turns = list(app.conversation.turns)
        assert [r for r, _ in turns] == ["user", "assistant"]  # the partial answer stays
        history = list(app.conversation.ids)
        strip = app.query_one(TokenStrip)
        assert strip.token_count == len(history)
        app.set_focus(None)
        await pilot.press("r")
        await ready(pilot, app)
        assert app.conversation.turns == turns
        assert app.main.engine_state is State.IDLE
        assert strip.token_count == len(history)
        app.settings.sampling = Sampling(temperature=0.0, max_tokens=3)
        await ask(pilot, app, "w8")
        await wait_for(pilot, lambda: app.last_finish_reason == "length")
        conversation = app.conversation
        assert len(conversation.turns) == 4
        # The new engine ran the whole history again as prompt tokens: the log (and so the
        # strip) holds it once, followed by the new turn's tokens only.
        stats = conversation.stats[-1]
        start, stop = conversation.request_range(1)
        assert start == len(history) and list(conversation.ids[:start]) == history
        assert stats.prompt_tokens > len(history) > conversation.phases[start:stop].count("prompt")
        assert conversation.phases[start:stop].count("generate") == 3
        assert strip.token_count == len(conversation)


# -- palette actions and dialogs -------------------------------------------------------------
async def test_palette_offers_every_action(tiny_moe_dir: Path) -> None:
    app = MixtuiApp(str(tiny_moe_dir))
    async with app.run_test(size=(140, 45)) as pilot:
        await ready(pilot, app)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert any(t.startswith("Switch model: nano") for t in titles)
        for title in ("Clear conversation", "System prompt…",
                      "Sampling settings…", "Experts per token…", "Save conversation…",
                      "Load conversation…", "Export trace…", "Toggle expert colouring",
                      "Reload engine", "Keys"):
            assert title in titles
        strip = app.query_one(TokenStrip)
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        await pilot.press(*"Toggle expert")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: strip.colouring is False, timeout=5.0)


async def test_dialogs_set_system_prompt_sampling_and_experts(tiny_moe_dir: Path,
                                                              isolated_config_dir: Path) -> None:
    app = MixtuiApp(str(tiny_moe_dir))
    async with app.run_test(size=(140, 45)) as pilot:
        await ready(pilot, app)
        app.action_system_prompt()
        await pilot.pause(0.1)
        assert isinstance(app.screen, AskScreen)
        app.screen.query_one(Input).value = "Be brief."
        await pilot.press("enter")
        assert app.settings.system_prompt == "Be brief."
        app.action_sampling()
        await pilot.pause(0.1)
        assert isinstance(app.screen, SamplingScreen)
        app.screen.query_one("#f-temperature", Input).value = "hot"
        await pilot.press("enter")
        assert isinstance(app.screen, SamplingScreen)  # refused, with a sentence
        assert "emperature" in text_of(app.screen.query_one("#error"))
        app.screen.query_one("#f-temperature", Input).value = "0"
        app.screen.query_one("#f-max_tokens", Input).value = "5"
        await pilot.press("enter")
        assert not isinstance(app.screen, SamplingScreen)
        assert (app.settings.sampling.temperature, app.settings.sampling.max_tokens) == (0.0, 5)
        app.action_experts_per_token()
        await pilot.pause(0.1)
        app.screen.query_one(Input).value = "9"
        await pilot.press("enter")
        assert isinstance(app.screen, AskScreen)  # out of range: refused
        app.screen.query_one(Input).value = "1"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.info is not None and app.info.top_k == 1)
        await ask(pilot, app, "w5")
        await wait_for(pilot, lambda: app.last_finish_reason is not None)
        routing = app.conversation.routing()
        assert routing is not None and routing.experts.shape[-1] == 1
        saved = json.loads((isolated_config_dir / "settings.json").read_text())
        assert saved["system_prompt"] == "Be brief."
        assert saved["sampling"]["max_tokens"] == 5
        assert list(saved["experts_per_token"].values()) == [1]
    # a new launch starts from the saved settings
    again = MixtuiApp()
    assert again.settings.sampling.max_tokens == 5 and again.settings.system_prompt == "Be brief."


async def test_save_load_and_export(answered, tmp_path: Path) -> None:
    app, pilot = answered
    before = app.conversation
    saved = tmp_path / "talk.json"
    app.action_save_conversation()
    await pilot.pause(0.1)
    app.screen.query_one(Input).value = str(saved)
    await pilot.press("enter")
    assert saved.is_file()
    trace = tmp_path / "talk.jsonl"
    app.action_export_trace()
    await pilot.pause(0.1)
    app.screen.query_one(Input).value = str(trace)
    await pilot.press("enter")
    header, tokens, summary = read_trace(trace)
    assert header["num_experts"] == 8 and len(tokens) == len(before)
    assert summary is not None and summary["text"] == before.turns[-1][1]
    app.action_clear()
    await pilot.pause(0.1)
    assert len(app.conversation) == 0 and not app.chat.texts("user")
    app.action_load_conversation()
    await pilot.pause(0.1)
    app.screen.query_one(Input).value = str(saved)
    await pilot.press("enter")
    await pilot.pause(0.1)
    after = app.conversation
    assert after.turns == before.turns and len(after) == len(before)
    a, b = after.routing(), before.routing()
    assert a is not None and b is not None and (a.probs == b.probs).all()
    assert len(app.chat.texts("user")) == 1
    assert app.query_one(TokenStrip).token_count == len(before)
    # a file that is not a conversation: one sentence, nothing lost
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    app.action_load_conversation()
    await pilot.pause(0.1)
    app.screen.query_one(Input).value = str(bad)
    await pilot.press("enter")
    await pilot.pause(0.1)
    assert any(n.startswith("Not loaded:") for n in notices(app))
    assert app.conversation is after


async def test_small_terminal_and_resizes(tiny_moe_dir: Path) -> None:
    app = MixtuiApp(str(tiny_moe_dir), Sampling(temperature=0.0, max_tokens=8))
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        assert app.screen.has_class("narrow")
        await ask(pilot, app, "w5")
        await wait_for(pilot, lambda: app.last_finish_reason is not None)
        for size in ((140, 45), (60, 20), (80, 24), (200, 60)):
            await pilot.resize_terminal(*size)
            await pilot.pause(0.05)
        assert not app.screen.has_class("narrow")
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.05)
        assert app.screen.has_class("narrow")


async def test_fault_17_a_conversation_longer_than_the_context_keeps_everything(
        tiny_moe_dir: Path) -> None:
    from mixtui.app.settings import Settings

    settings = Settings(max_kv_size=24, sampling=Sampling(temperature=0.0, max_tokens=2))
    app = MixtuiApp(str(tiny_moe_dir), settings=settings, persist=False)
    async with app.run_test(size=(140, 45)) as pilot:
        await ready(pilot, app)
        await ask(pilot, app, "w5 w6")
        await wait_for(pilot, lambda: app.last_finish_reason is not None)
        turns = list(app.conversation.turns)
        assert len(turns) == 2
        long = " ".join(f"w{i % 50 + 5}" for i in range(40))
        await ask(pilot, app, long)
        await wait_for(pilot, lambda: any("but the context holds 24" in n for n in notices(app)))
        await wait_for(pilot, lambda: not app.generating)
        said = next(n for n in notices(app) if "but the context holds 24" in n)
        assert said.endswith("raise the context size (max_kv_size in settings.json).")  # TUI words
        assert app.conversation.turns == turns  # the earlier turns stay
        assert app.query_one("#prompt", Input).value == long  # the question is not lost
        assert app.chat.texts("user") == ["w5 w6"]


async def test_fault_20_a_malformed_user_models_toml_is_reported_once_and_set_aside(
        isolated_config_dir: Path) -> None:
    user = isolated_config_dir / "models.toml"
    user.write_text('[models.mine]\nname = "Mine"\nrepo = "me/mine"\n')
    app = MixtuiApp("nano", Sampling(temperature=0.0, max_tokens=2), persist=False)
    async with app.run_test(size=(140, 45)) as pilot:
        await ready(pilot, app)  # the bundled model still works
        bad = [n for n in notices(app) if str(user) in n]
        assert bad == [f"{user}, line 1: model 'mine' needs a [geometry] table (model_type, "
                       "layers, hidden, ...); fix the entry or remove it; until then mixtui "
                       "uses its built-in models."]
        assert "nano" in text_of(app.query_one("#model-bar"))


async def test_fault_14_a_merged_system_prompt_is_said_once(tiny_moe_dir: Path) -> None:
    from mixtui.app.settings import Settings

    settings = Settings(system_prompt="w7 w8", sampling=Sampling(temperature=0.0, max_tokens=2))
    app = MixtuiApp(str(tiny_moe_dir), settings=settings, persist=False)
    async with app.run_test(size=(140, 45)) as pilot:
        await ready(pilot, app)
        for prompt in ("w5", "w6"):
            await ask(pilot, app, prompt)
            await wait_for(pilot, lambda: app.last_finish_reason is not None)
        said = [n for n in notices(app) if "has no system role" in n]
        assert len(said) == 1
        assert all(s.system_merged for s in app.conversation.stats)


# -- defects ---------------------------------------------------------------------------------
async def test_the_palettes_screenshot_is_saved_here_and_said(answered, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    app, pilot = answered
    monkeypatch.chdir(tmp_path)
    await pilot.press("ctrl+p")
    await pilot.pause(0.2)
    await pilot.press(*"Screenshot")
    await pilot.pause(0.5)
    await pilot.press("enter")
    await wait_for(pilot, lambda: any(n.startswith("Screenshot") for n in notices(app)),
                   timeout=5.0)
    shots = list(tmp_path.glob("*.svg"))
    assert len(shots) == 1 and "<svg" in shots[0].read_text()
    assert notices(app)[-1] == f"Screenshot saved to {shots[0]}."


def test_a_screenshot_goes_to_the_config_folder_where_the_cwd_is_read_only(
        tmp_path: Path, isolated_config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mixtui.tui import actions

    monkeypatch.chdir(tmp_path)
    assert actions.screenshot_dir() == tmp_path
    real_access = os.access
    # root may write anywhere, so the read-only folder is the answer os.access gives
    monkeypatch.setattr(actions.os, "access", lambda path, mode: (
        False if Path(path) == tmp_path else real_access(path, mode)))
    assert actions.screenshot_dir() == isolated_config_dir


async def test_a_broken_settings_file_is_said_at_start(isolated_config_dir: Path) -> None:
    (isolated_config_dir / "settings.json").write_text("{broken")
    app = MixtuiApp("nano")
    async with app.run_test(size=(140, 45)) as pilot:
        await ready(pilot, app)  # on the default settings
        said = [n for n in notices(app) if "settings.json is not valid JSON" in n]
        assert len(said) == 1 and "default settings are in use" in said[0]
