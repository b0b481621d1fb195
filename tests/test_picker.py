"""The model picker driven by Pilot: filter, switch, Escape, and pins that survive a restart.

Slot 2 (mistral-7b-instruct) is a tiny dense model on disk (as in tests/test_tui.py), so
picking it runs a real second engine; the other real models are absent from the empty cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import register_in_slot_2
from test_tui import notices, ready, text_of, wait_for
from textual.widgets import DataTable, Input

from mixtui.app.settings import Settings, settings_from_dict
from mixtui.core.types import Sampling
from mixtui.registry.loader import load_registry
from mixtui.tui.app import MixtuiApp
from mixtui.tui.screens.picker import ModelPicker, matches

pytestmark = pytest.mark.usefixtures("empty_hf_cache", "fixed_budget")


def shown_keys(app: MixtuiApp) -> list[str]:
    screen = app.screen
    assert isinstance(screen, ModelPicker)
    return [row["key"] for row in screen.shown]


async def open_picker(pilot, app: MixtuiApp) -> ModelPicker:
    app.set_focus(None)  # single keys act outside the prompt
    await pilot.press("m")
    await wait_for(pilot, lambda: isinstance(app.screen, ModelPicker), timeout=5.0)
    screen = app.screen
    assert isinstance(screen, ModelPicker)
    return screen


async def test_picker_filters_switches_and_escape_changes_nothing(
        tiny_moe_dir: Path, tiny_dense_dir: Path, dense_config: dict,
        isolated_config_dir: Path) -> None:
    register_in_slot_2(isolated_config_dir, tiny_dense_dir, dense_config)
    app = MixtuiApp(str(tiny_moe_dir), Sampling(temperature=0.0, max_tokens=4))
    async with app.run_test(size=(140, 45)) as pilot:
        await ready(pilot, app)
        picker = await open_picker(pilot, app)
        registry = load_registry()
        assert shown_keys(app) == list(registry)  # every model, in registry order
        table = picker.query_one(DataTable)
        assert [str(c.label).strip() for c in table.columns.values()] == [
            "key", "family", "total / active", "size", "state", "fit"]
        qwen = next(r for r in picker.rows if r["key"] == "qwen3-30b-a3b-instruct")
        cells = [str(c).strip() for c in table.get_row("qwen3-30b-a3b-instruct")]
        assert cells[:4] == ["qwen3-30b-a3b-instruct", "qwen3_moe", "30.5 B / 3.4 B", "17.2 GB"]
        assert cells[4] == "absent" and cells[5] in ("fits", "tight", "too big")
        assert str(table.get_row("nano")[0]) == "1  nano "  # on key 1, not pinned
        assert qwen["state"] == "absent"
        # Escape: closed, nothing changed
        engine = app.engine
        await pilot.press(*"mixtral")
        assert shown_keys(app) == [  # nano is a Mixtral by name
            r["key"] for r in picker.rows
            if any("mixtral" in (r[f] or "").lower() for f in ("key", "name", "family"))]
        assert "mistral-7b-instruct" not in shown_keys(app) and "mixtral-8x22b" in shown_keys(app)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ModelPicker)
        assert app.engine is engine and app.model_name == str(tiny_moe_dir)
        # type to filter (case-insensitive, over key, name and family), Up/Down, Enter
        await open_picker(pilot, app)
        await pilot.press(*"MISTRAL")
        assert shown_keys(app) == ["mistral-7b-instruct"]  # its name is "Tiny dense"
        await pilot.press("backspace", *"l 7B")  # not a substring of anything: no rows
        assert shown_keys(app) == []
        await pilot.press("enter")  # nothing to choose: the picker stays
        assert isinstance(app.screen, ModelPicker)
        app.screen.query_one(Input).value = "dense"  # the family of slot 2's tiny model
        await pilot.pause()
        assert shown_keys(app) == ["mistral-7b-instruct"]
        app.screen.query_one(Input).value = "in"
        await pilot.pause()
        keys = shown_keys(app)
        await pilot.press("down", "down", "up")
        assert app.screen.highlighted == keys[1]
        app.screen.query_one(Input).value = "tiny"
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert not isinstance(app.screen, ModelPicker)
        assert "Switching to Tiny dense: a new conversation." in notices(app)
        await wait_for(pilot, lambda: app.info is not None and not app.info.is_moe)
        assert app.spec is not None and app.spec.key == "mistral-7b-instruct"


async def test_pins_go_on_the_number_keys_and_survive_a_restart(
        isolated_config_dir: Path) -> None:
    app = MixtuiApp()  # nano
    async with app.run_test(size=(140, 45)) as pilot:
        await ready(pilot, app)
        assert [s.key for s in app.main.entries][:2] == ["nano", "mistral-7b-instruct"]
        picker = await open_picker(pilot, app)
        picker.query_one(Input).value = "qwen3"
        await pilot.pause()
        await pilot.press("asterisk")  # pins the highlighted model, not typed into the filter
        assert picker.query_one(Input).value == "qwen3"
        assert app.settings.favourites == ["qwen3-30b-a3b-instruct"]
        assert [s.key for s in app.main.entries][0] == "qwen3-30b-a3b-instruct"
        assert "1: qwen3-30b-a3b-instruct" in text_of(picker.query_one("#picker-keys"))
        await pilot.press("escape")
        bar = text_of(app.query_one("#model-bar"))
        assert "1★" in bar and "★ pinned" in bar
    saved = json.loads((isolated_config_dir / "settings.json").read_text())
    assert saved["favourites"] == ["qwen3-30b-a3b-instruct"]
    again = MixtuiApp()
    async with again.run_test(size=(140, 45)) as pilot:
        await wait_for(pilot, lambda: bool(again.main.entries))
        assert again.settings.favourites == ["qwen3-30b-a3b-instruct"]
        assert [s.key for s in again.main.entries][:2] == ["qwen3-30b-a3b-instruct", "nano"]
        # unpinning gives the keys back to the registry's first models
        picker = await open_picker(pilot, again)
        picker.query_one(Input).value = "qwen3-30b"
        await pilot.pause()
        await pilot.press("asterisk")
        await pilot.press("escape")
        assert again.settings.favourites == []
        assert [s.key for s in again.main.entries][0] == "nano"


async def test_an_unknown_pinned_key_is_unpinned_with_a_notice(isolated_config_dir: Path
                                                               ) -> None:
    (isolated_config_dir / "settings.json").write_text(json.dumps(
        {"version": 1, "favourites": ["no-such-model", "mixtral-8x22b"]}))
    app = MixtuiApp()
    async with app.run_test(size=(140, 45)) as pilot:
        await wait_for(pilot, lambda: bool(app.main.entries))
        said = [n for n in notices(app) if "no-such-model" in n]
        assert len(said) == 1 and "not in the registry" in said[0]
        assert "settings.json.bad" in said[0]
        assert app.settings.favourites == ["mixtral-8x22b"]
        assert app.main.entries[0].key == "mixtral-8x22b"
    # nothing lost: the file as it was is kept beside the rewritten one
    kept = json.loads((isolated_config_dir / "settings.json.bad").read_text())
    assert kept["favourites"] == ["no-such-model", "mixtral-8x22b"]
    assert json.loads((isolated_config_dir / "settings.json").read_text())["favourites"] == [
        "mixtral-8x22b"]


def test_favourites_in_the_settings_file_are_checked() -> None:
    settings, problems = settings_from_dict({"favourites": ["a", 3, "a", "b", ""]})
    assert settings.favourites == ["a", "b"] and len(problems) == 2
    settings, problems = settings_from_dict({"favourites": "a"})
    assert settings == Settings() and problems == [
        'favourites must be a list of model keys, not "a"']


def test_the_filter_matches_key_name_and_family() -> None:
    row = {"key": "olmoe-1b-7b-instruct", "name": "OLMoE 1B-7B", "family": "olmoe"}
    assert matches(row, "") and matches(row, "OLMOE") and matches(row, "1b-7B")
    assert matches({"key": "x", "name": "y", "family": "qwen3_moe"}, "qwen3")
    assert not matches(row, "qwen")
