"""The compare screen driven by Pilot: real benchmark runs of the bundled nano model (and of a
tiny model on disk in slot 2) in engine processes of their own, while the chat's engine
waits; a model absent from the (empty) Hugging Face cache fails in its row.

The machine's bandwidth figure is put in the bench cache beforehand: measuring it (an MLX copy
probe, `mixtui bench`'s, tested with it) would add about 15 s to every test here.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from conftest import keep_probe, register_in_slot_2
from test_tui import ask, process_gone, ready, text_of, wait_for
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, SelectionList

from mixtui.app.bench.report import COLUMNS, cells
from mixtui.core.errors import UsageError
from mixtui.core.types import Sampling
from mixtui.tui.app import MixtuiApp
from mixtui.tui.screens.compare import (
    SHOWN,
    CompareScreen,
    bar,
    chart,
    export_format,
    in_screen_words,
    parse_request,
)
from mixtui.tui.screens.dialogs import AskScreen

pytestmark = pytest.mark.usefixtures("empty_hf_cache", "fixed_budget", "cached_bandwidth")

ABSENT = "mixtral-8x7b-instruct"  # a registry model that is not in the empty cache


@pytest.fixture
def cached_bandwidth(isolated_config_dir: Path) -> None:
    keep_probe(1.0)


# -- the pure parts ------------------------------------------------------------------------------
def test_bars_are_scaled_to_the_largest_in_eighths() -> None:
    assert bar(10, 10, width=4) == "████"
    assert bar(5, 10, width=4) == "██"
    assert bar(1, 8, width=1) == "▏"
    assert bar(3, 16, width=2) == "▍"  # 3/16 of 16 eighths: 3 eighths
    assert bar(0.001, 10, width=4) == "▏"  # a measured row never shows as nothing
    assert bar(None, 10) == "" and bar(0, 10) == "" and bar(5, 0) == ""


def test_fields_become_a_request_or_one_sentence_in_the_screens_words() -> None:
    request = parse_request(["nano", "mixtral-8x22b"], True, "2", "1, 2,2 4", "4", "")
    assert request.models == ("nano", "mixtral-8x22b") and request.synthetic
    assert request.layers == 2 and request.experts_per_token == (1, 2, 4)
    assert request.gen_tokens == 4 and request.runs == 2  # blank: the screen's default
    with pytest.raises(UsageError) as bad:
        parse_request(["nano"], False, "", "", "1", "1")
    assert str(bad.value).startswith("“Generated tokens” must be at least 2")
    assert "--" not in str(bad.value)
    with pytest.raises(UsageError) as bad:
        parse_request(["nano"], False, "2", "", "4", "1")
    assert str(bad.value) == ("“Layers” runs part of a synthetic model; tick “synthetic”, or "
                              "leave “layers” out to time the model on disk.")
    with pytest.raises(UsageError) as bad:
        parse_request(["nano"], False, "", "two", "4", "1")
    assert "“Experts per token” takes whole numbers" in str(bad.value)
    with pytest.raises(UsageError) as bad:
        parse_request([], False, "", "", "4", "1")
    assert str(bad.value).startswith("Pick at least one model")
    assert in_screen_words("--runs must be at least 1, not 0.") == (
        "“Runs” must be at least 1, not 0.")


def test_the_screen_shows_columns_of_the_report() -> None:
    assert set(SHOWN) <= set(COLUMNS) and SHOWN[:5] == (
        "model", "k", "decode tok/s", "peak mem", "300-token wait")


def test_the_format_comes_from_the_suffix() -> None:
    assert [export_format(p) for p in ("a.md", "b.CSV", " c.json ", "d.txt", "e.pdf", "f")] \
        == ["md", "csv", "json", "table", None, None]


def test_the_chart_places_and_labels_each_point_on_a_log_axis() -> None:
    from rich.text import Text

    points = [("nano", 1.5e6, 150.0), ("mixtral-8x7b", 12.9e9, 6.0)]
    plain = Text.from_ansi(chart(points, "active", (1.5e6, 46.7e9), 70)).plain
    lines = plain.splitlines()
    assert "decode tok/s against active parameters" in lines[0]
    assert "1 M" in plain and "100 B" in plain  # a tick per decade, 1e6 to 1e11
    nano = next(i for i, line in enumerate(lines) if "nano" in line)
    mixtral = next(i for i, line in enumerate(lines) if "mixtral-8x7b" in line)
    assert nano < mixtral  # the faster model is higher up
    assert lines[nano].index("●") < lines[mixtral].index("●")  # and further left
    assert plain.count("●") == 2


# -- the screen ----------------------------------------------------------------------------------
def compare(app: MixtuiApp) -> CompareScreen:
    screen = app.screen
    assert isinstance(screen, CompareScreen)
    return screen


async def open_by_key(pilot: Pilot, app: MixtuiApp) -> CompareScreen:
    app.set_focus(None)  # single keys act outside the prompt
    await pilot.press("c")
    await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen), timeout=5.0)
    return compare(app)


def tick(screen: CompareScreen, *keys: str) -> None:
    """Only `keys` ticked, in this order (the order they run in)."""
    models = screen.query_one("#compare-models", SelectionList)
    models.deselect_all()
    for key in keys:
        models.select(key)


def fill(screen: CompareScreen, gen: str, runs: str) -> None:
    screen.query_one("#compare-gen", Input).value = gen
    screen.query_one("#compare-runs", Input).value = runs


async def run_to_end(pilot: Pilot, screen: CompareScreen, timeout: float = 90.0) -> None:
    await pilot.press("ctrl+r")
    await wait_for(pilot, lambda: screen.running, timeout=5.0)
    await wait_for(pilot, lambda: not screen.running, timeout=timeout)


def table_rows(screen: CompareScreen) -> list[list[str]]:
    table = screen.query_one("#compare-table", DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


async def export_to(pilot: Pilot, app: MixtuiApp, path: str) -> None:
    await pilot.press("ctrl+e")
    await wait_for(pilot, lambda: isinstance(app.screen, AskScreen), timeout=5.0)
    assert app.screen.query_one(Input).value == "mixtui-compare.md"  # the default
    app.screen.query_one(Input).value = path
    await pilot.press("enter")
    await pilot.pause(0.1)


async def test_a_run_shows_rows_findings_and_chart_exports_and_keeps_the_chat(
        tmp_path: Path) -> None:
    app = MixtuiApp(sampling=Sampling(temperature=0.0, max_tokens=4))  # nano
    async with app.run_test(size=(140, 45)) as pilot:
        await ready(pilot, app)
        await ask(pilot, app, "It is a truth universally")
        await wait_for(pilot, lambda: app.last_finish_reason is not None)
        turns, ids = list(app.conversation.turns), list(app.conversation.ids)
        chat_engine = app.engine
        assert chat_engine is not None and chat_engine.pid is not None
        screen = await open_by_key(pilot, app)
        assert screen.query_one("#compare-models", SelectionList).selected == ["nano"]
        # bad input: one sentence, nothing runs, the chat's engine untouched
        fill(screen, "1", "1")
        await pilot.press("ctrl+r")
        assert screen.message_text.startswith("“Generated tokens” must be at least 2")
        assert not screen.running and app.engine is chat_engine and app.info is not None
        # a model that is not here fails in its row; the next one still runs
        tick(screen, ABSENT, "nano")
        fill(screen, "4", "1")
        await run_to_end(pilot, screen)
        assert process_gone(chat_engine.pid)  # the chat's engine was ended for the run
        report = screen.report
        assert report is not None and not report.cancelled
        assert [r.model for r in report.rows] == [ABSENT, "nano"]
        failed, nano = report.rows
        assert not failed.ok and "not on this machine" in (failed.error or "")
        assert nano.ok and nano.decode_tps is not None and nano.decode_tps.median > 0
        rows = table_rows(screen)
        assert [r[0] for r in rows] == [ABSENT, "nano"]
        assert rows[0][-1].startswith("failed: ") and "not on this machine" in rows[0][-1]
        assert rows[1][2].startswith(cells(nano)[COLUMNS.index("decode tok/s")] + " ")
        assert "████████" in rows[1][2]  # the largest (only) row: a full bar
        assert "█" in rows[1][3] and "█" in rows[1][4]  # memory, 300-token answer
        findings = text_of(screen.query_one("#compare-findings"))
        assert "nano (bundled) decodes at" in findings and "300-token answer" in findings
        assert f"{ABSENT}: failed: " in findings
        charts = screen.chart_text()
        assert "against active parameters" in charts and "against total parameters" in charts
        assert charts.count("nano") == 2 and charts.count("●") == 2
        assert screen.message_text.startswith("Done: 1 of 2 rows measured")
        # the chat's engine comes back with the same model; the conversation is kept
        await wait_for(pilot, lambda: app.info is not None, timeout=30.0)
        assert app.engine is not None and app.engine.pid != chat_engine.pid
        assert app.model_name == "nano" and app.conversation.turns == turns
        assert list(app.conversation.ids) == ids
        assert app.chat.texts("user") == ["It is a truth universally"]
        # export: the format from the suffix; read back
        for suffix in ("md", "csv", "json"):
            await export_to(pilot, app, str(tmp_path / f"out.{suffix}"))
            assert compare(app).message_text == (
                f"Exported 2 rows to {tmp_path / f'out.{suffix}'}.")
        md = (tmp_path / "out.md").read_text()
        assert "| nano | 2 |" in md and f"| {ABSENT} |" in md and "failed: " in md
        records = list(csv.DictReader(io.StringIO((tmp_path / "out.csv").read_text())))
        assert [r["model"] for r in records] == [ABSENT, "nano"]
        assert float(records[1]["decode_tps"]) == pytest.approx(nano.decode_tps.median)
        assert records[0]["decode_tps"] == "" and records[0]["error"]
        data = json.loads((tmp_path / "out.json").read_text())
        assert [r["model"] for r in data["rows"]] == [ABSENT, "nano"]
        assert data["rows"][1]["decode_tps"] > 0 and data["findings"] == list(report.findings)
        # a suffix of no format is refused in the dialog; an unwritable path in one sentence
        await export_to(pilot, app, str(tmp_path / "out.pdf"))
        assert isinstance(app.screen, AskScreen)
        assert "End the file name in .md" in text_of(app.screen.query_one("#error"))
        await pilot.press("escape")
        blocker = tmp_path / "a-file"
        blocker.write_text("")
        await export_to(pilot, app, str(blocker / "out.md"))
        assert compare(app).message_text.startswith(f"Not exported: {blocker / 'out.md'} "
                                                    "cannot be written (")
        assert compare(app).message_text.endswith("give a path in a folder you can write to.")
        assert len(table_rows(compare(app))) == 2  # the results stay
        # Esc closes; the palette's action opens it again
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, CompareScreen), timeout=5.0)
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        await pilot.press(*"Compare models")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen), timeout=5.0)
        await pilot.press("1")  # the main screen's keys wait: no model switch under it
        await pilot.pause(0.1)
        assert isinstance(app.screen, CompareScreen) and app.model_name == "nano"


async def test_cancel_stops_the_run_within_a_second_and_keeps_the_finished_rows(
        tiny_moe_dir: Path, moe_config: dict, isolated_config_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    register_in_slot_2(isolated_config_dir, tiny_moe_dir, moe_config, name="Tiny MoE")
    # The UI thread keeps the normal priority here: at the lowest one, on two cores shared
    # with a decoding engine (and other tests), it may not see the progress (nor the Esc)
    # until nano's run is over, and then there is nothing left to cancel.
    monkeypatch.setattr("mixtui.tui.app._lower_ui_thread_priority", lambda: None)
    app = MixtuiApp()  # the chat on nano
    async with app.run_test(size=(80, 24)) as pilot:  # the smallest screen works too
        await ready(pilot, app)
        chat_engine = app.engine
        assert chat_engine is not None
        before = {c.pid for c in _children()}
        screen = await open_by_key(pilot, app)
        # the tiny model first (done in seconds), then nano, which takes far longer
        tick(screen, "mistral-7b-instruct", "nano")
        fill(screen, "3000", "1")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: len(screen.rows) == 1 and screen.progress is not None
                       and screen.progress.model == "nano"
                       and screen.progress.stage in ("warm-up", "run"), timeout=90.0)
        await pilot.pause(0.3)  # decoding
        engine_pids = {c.pid for c in _children()} - before  # nano's bench engine
        assert engine_pids
        await pilot.press("escape")
        await wait_for(pilot, lambda: not screen.running, timeout=15.0)
        # from the cancel to the end of the run (how long the UI takes to see the key, with
        # the engine on both cores, is not counted)
        assert screen.cancel_asked is not None and screen.run_returned is not None
        stopped = screen.run_returned - screen.cancel_asked
        assert stopped < 1.5, f"the run took {stopped:.1f} s to stop"
        assert isinstance(app.screen, CompareScreen)  # Esc cancelled; it did not close
        report = screen.report
        assert report is not None and report.cancelled
        assert [r.model for r in report.rows] == ["mistral-7b-instruct"] and report.rows[0].ok
        assert [r[0] for r in table_rows(screen)] == ["mistral-7b-instruct"]
        assert screen.message_text == "Cancelled; the 1 finished row is kept."
        assert "mistral-7b-instruct" in screen.chart_text()
        await wait_for(pilot, lambda: all(process_gone(p) for p in engine_pids), timeout=5.0)
        # the chat's engine comes back
        await wait_for(pilot, lambda: app.info is not None, timeout=30.0)
        assert app.engine is not None and app.engine.pid != chat_engine.pid
        await pilot.press("escape")  # idle now: Esc closes
        await wait_for(pilot, lambda: not isinstance(app.screen, CompareScreen), timeout=5.0)


def _children() -> list:
    import psutil

    return psutil.Process().children(recursive=True)
