"""Routing over time (widgets/timeline.py): alone in a host app on synthetic top-1 arrays,
and in the real app on the bundled nano model, its answer streaming from a real engine."""

from __future__ import annotations

import time

import numpy as np
import pytest
from rich.style import Style
from rich.text import Text
from textual.app import App, ComposeResult
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widget import Widget

from mixtui.app.conversation import Conversation
from mixtui.core.types import Sampling
from mixtui.tui.app import MixtuiApp
from mixtui.tui.screens import HelpScreen
from mixtui.tui.widgets.heatmap import RoutingHeatmap, expert_colour
from mixtui.tui.widgets.timeline import GLYPHS, HUES, RoutingTimeline, glyph
from mixtui.tui.widgets.token_strip import PROMPT_SHADE, TokenStrip, top1_experts


class Host(App[None]):
    CSS = "RoutingTimeline { max-height: 100%; }"  # as in the app: capped, the rest scrolls

    def __init__(self, widget: Widget) -> None:
        super().__init__()
        self.widget = widget

    def compose(self) -> ComposeResult:
        yield self.widget


def cells(widget: RoutingTimeline, y: int) -> list[tuple[str, Style | None]]:
    """Painted line y as one (character, style) per cell, whatever the segments are."""
    return [(ch, segment.style) for segment in widget.render_line(y) for ch in segment.text]


def bg(style: Style | None) -> str | None:
    return None if style is None or style.bgcolor is None else \
        style.bgcolor.get_truecolor().hex


def darker(colour: str) -> str:
    return "#" + "".join(f"{round(int(colour[i:i + 2], 16) * (1 - PROMPT_SHADE)):02x}"
                         for i in (1, 3, 5))


def expected_bg(expert: int, prompt: bool) -> str:
    return darker(expert_colour(expert)) if prompt else expert_colour(expert)


def text_of(widget: Widget) -> str:
    content = widget.render()
    return content.plain if isinstance(content, Text) else str(content)


# -- the widget alone -----------------------------------------------------------------------
async def test_cells_are_the_top1_experts_colour_prompt_darker_unrouted_dim() -> None:
    timeline = RoutingTimeline()
    async with Host(timeline).run_test(size=(60, 8)) as pilot:
        timeline.set_layers((1, 3, 5), num_experts=8)
        top1 = np.array([[i % 8, (i + 3) % 8, (7 * i) % 8] for i in range(6)])  # (n, L)
        timeline.append([f"t{i}" for i in range(6)], ["prompt"] * 2 + ["generate"] * 4, top1)
        timeline.append(["x"], ["generate"], None)  # a token without routing
        await pilot.pause()
        lines = text_of(timeline).splitlines()
        assert [line[:3] for line in lines[1:]] == ["L1 ", "L3 ", "L5 "]  # the model's ids
        label = 3
        for r in range(3):
            row = cells(timeline, 1 + r)
            for i in range(6):
                char, style = row[label + i]
                assert bg(style) == expected_bg(int(top1[i, r]), i < 2), (r, i)
                assert char == " "  # 8 experts: the colour alone (ids 0-15 have no glyph)
            assert row[label + 6][0] == "·"  # on the panel's own background
            assert bg(row[label + 6][1]) not in {expected_bg(e, p) for e in range(HUES)
                                                 for p in (False, True)}
            assert all(ch == " " for ch, _ in row[label + 7:])  # nothing past the tokens
        assert timeline.border_subtitle == "newest 7/7 'x' answer · L1: no routing"
        timeline.cursor = 3
        await pilot.pause()
        assert timeline.border_subtitle == "token 4/7 't3' answer · L1: expert 3"
        char, style = cells(timeline, 1)[label + 3]  # the cursor cell, at the cursor layer
        assert char == "●" and style is not None and style.bold and style.underline
        assert bg(style) == expert_colour(3)
        assert cells(timeline, 0)[label + 3][0] == "▼"  # over the cursor column


async def test_many_experts_share_hues_but_not_glyphs_and_the_id_is_at_the_cursor() -> None:
    for experts in (64, 128, 512):
        timeline = RoutingTimeline()
        async with Host(timeline).run_test(size=(40, 6)) as pilot:
            timeline.set_layers((0, 1), num_experts=experts)
            # ids with the same hue (id mod 16 = 5) and ids of every hue
            ids = [e for e in range(5, experts, HUES)] + list(range(HUES))
            top1 = np.array([[e, (e * 7) % experts] for e in ids])
            n = len(ids)
            timeline.append(["w"] * n, ["generate"] * n, top1)
            timeline.cursor = 0  # from the first token: all of them fit up to 37 columns
            await pilot.pause()
            row = cells(timeline, 1)[3:3 + min(n, 37)]
            seen: dict[str, str] = {}
            for i, (char, style) in enumerate(row):
                expert = ids[i]
                assert bg(style) == expert_colour(expert % HUES)
                shown = "●" if i == 0 else char  # the cursor cell is marked
                if i:
                    assert shown == glyph(expert)
                    seen.setdefault(f"{bg(style)}{shown}", str(expert))
                    assert seen[f"{bg(style)}{shown}"] == str(expert)  # (hue, glyph): one id
            same_hue = [glyph(e) for e in range(5, experts, HUES)]
            assert len(set(same_hue)) == len(same_hue) == experts // HUES
            assert glyph(511) == GLYPHS[31] == "v"
            timeline.cursor = 2
            await pilot.pause()
            assert f"L0: expert {ids[2]}" in str(timeline.border_subtitle)
            timeline.layer_index = 1
            await pilot.pause()
            assert f"L1: expert {(ids[2] * 7) % experts}" in str(timeline.border_subtitle)


async def test_keys_click_and_scrolling_over_2000_tokens_and_56_layers() -> None:
    timeline = RoutingTimeline()
    async with Host(timeline).run_test(size=(44, 12)) as pilot:
        layers = tuple(range(56))
        rng = np.random.default_rng(0)
        top1 = rng.integers(0, 8, (2000, 56))
        timeline.set_layers(layers)
        for start in range(0, 2000, 40):  # in batches, as the screen's flush appends them
            timeline.append(["w"] * 40, ["generate"] * 40, top1[start:start + 40])
        await pilot.pause()
        assert timeline.token_count == 2000
        cols, rows = 44 - 4, 12 - 1  # label "L55 ", the axis row
        timeline.render()
        assert timeline.window == (2000 - cols, cols, 0, rows)  # follows the newest
        row = cells(timeline, 1)
        assert [bg(s) for _, s in row[4:]] == [expert_colour(int(e))
                                              for e in top1[2000 - cols:, 0]]
        timeline.focus()
        await pilot.press("left")  # from no cursor: the newest token
        assert timeline.cursor == 1999
        await pilot.press("home")
        assert timeline.cursor == 0
        timeline.render()
        assert timeline.window[0] == 0
        for _ in range(15):
            await pilot.press("down")
        assert timeline.layer_index == 15
        timeline.render()
        assert timeline.window[2] == 15 - rows + 1  # scrolled so that the cursor layer shows
        assert text_of(timeline).splitlines()[rows].startswith("L15")
        await pilot.press("pagedown")
        assert timeline.layer_index == 15 + rows
        await pilot.press("end", "pagedown", "pagedown", "pagedown", "pagedown")
        assert timeline.cursor == 1999 and timeline.layer_index == 55
        timeline.render()
        assert timeline.window == (2000 - cols, cols, 56 - rows, rows)
        # a click picks that cell's token and layer
        await pilot.click(RoutingTimeline, offset=(4 + 5, 3))
        assert timeline.cursor == 2000 - cols + 5
        assert timeline.layer_index == 56 - rows + 2
        # the wheel scrolls the layers (shift: the tokens) and leaves the cursor be
        await pilot.pause()
        cursor = timeline.cursor
        timeline._scroll(0, -3)
        timeline._scroll(-8, 0)
        timeline.render()
        assert timeline.window[2] == 56 - rows - 3 and timeline.window[0] == 2000 - cols - 8
        assert timeline.cursor == cursor


async def test_only_the_window_is_built() -> None:
    """2,000 x 56 is drawn from the cells on screen only (benchmarks/render_timeline.py
    measures the time); this catches a fall back to building every column."""
    timeline = RoutingTimeline()
    async with Host(timeline).run_test(size=(50, 16)) as pilot:
        timeline.set_layers(tuple(range(56)))
        timeline.append(["w"] * 2000, ["generate"] * 2000,
                        np.random.default_rng(1).integers(0, 8, (2000, 56)))
        await pilot.pause()
        strips = timeline.render_lines(Region(0, 0, 50, 16))
        assert len(strips) == 16 and all(s.cell_length == 50 for s in strips)
        # every cell is a lookup in the table of made segments: count them in a rebuild
        # (a crop of all 2,000 columns would still leave 50 cells a row: count the lookups)
        lookups = 0

        class Counting(list):
            def __getitem__(self, index):  # type: ignore[no-untyped-def]
                nonlocal lookups
                lookups += 1
                return super().__getitem__(index)

        timeline._table = Counting(timeline._table)
        timeline._rebuild(*timeline.size)
        cols, rows = timeline.window[1], timeline.window[3]
        assert 0 < lookups <= cols * rows < 50 * 16


async def test_dense_model_and_hint() -> None:
    timeline = RoutingTimeline()
    async with Host(timeline).run_test(size=(60, 6)) as pilot:
        await pilot.pause()
        assert "Send a prompt" in text_of(timeline)
        timeline.show_dense("Tiny dense")
        timeline.append(["a", "b"], ["prompt", "generate"])
        await pilot.pause()
        assert text_of(timeline).startswith("Tiny dense is dense")
        assert timeline.border_subtitle is None and timeline.token_count == 2
        with pytest.raises(ValueError):
            timeline.append(["x"], ["generate"], np.zeros((1, 4), int))


# -- in the app, on nano --------------------------------------------------------------------
async def wait_for(pilot: Pilot, condition, timeout: float = 60.0, step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the app"
        await pilot.pause(step)


def check_cells_against_routing(app: MixtuiApp) -> None:
    """Every painted cell of the timeline against the conversation's own routing."""
    timeline = app.query_one(RoutingTimeline)
    conversation = app.conversation
    routing = conversation.routing()
    assert routing is not None
    top1 = top1_experts(routing.experts, routing.weights)  # (n, L)
    first, tokens, top, layers = timeline.window
    assert tokens > 0 and layers > 0
    label = len(f"L{max(timeline.moe_layers)}") + 1
    for r in range(layers):
        row = cells(timeline, 1 + r)
        for j in range(tokens):
            i = first + j
            if i == timeline.cursor and top + r == timeline.layer_index:
                continue  # the cursor cell: checked by its subtitle
            assert bg(row[label + j][1]) == expected_bg(
                int(top1[i, top + r]), conversation.phases[i] == "prompt"), (i, r)


async def test_the_timeline_grows_as_nano_streams_shares_the_cursor_and_toggles(
        isolated_config_dir, tmp_path) -> None:
    # long enough (a second or two) that several 10 Hz ticks fall inside the answer
    app = MixtuiApp("nano", Sampling(temperature=0.0, max_tokens=300), persist=False)
    async with app.run_test(size=(140, 45)) as pilot:
        await wait_for(pilot, lambda: app.info is not None)
        timeline = app.query_one(RoutingTimeline)
        strip = app.query_one(TokenStrip)
        assert timeline.border_title == "routing over time" and timeline.display
        appended: list[tuple[int, bool]] = []  # (tokens, while the answer streamed)
        real_append = timeline.append

        def append(texts, phases, top1=None) -> None:
            appended.append((len(texts), app.generating))
            real_append(texts, phases, top1)

        timeline.append = append  # type: ignore[method-assign]
        app.query_one("#prompt").value = "It is a truth universally acknowledged"
        app.query_one("#prompt").focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.last_finish_reason is not None)
        await pilot.pause(0.2)
        n = len(app.conversation)
        assert timeline.token_count == strip.token_count == n
        assert sum(tokens for tokens, _ in appended) == n
        assert len(appended) < n  # in batches, never a call per token
        assert sum(streaming for _, streaming in appended) >= 2  # it grew as tokens came
        assert timeline.moe_layers == app.info.moe_layers  # type: ignore[union-attr]
        check_cells_against_routing(app)
        assert timeline.border_subtitle is not None
        assert timeline.border_subtitle.startswith(f"newest {n}/{n}")
        # the cursor: timeline -> strip -> heatmap
        await pilot.press("escape")  # leave the input
        await pilot.press("o")  # wide: shown already, so o focuses it
        assert timeline.display and app.focused is timeline
        await pilot.press("o")  # focused: hidden
        assert not timeline.display and app.main.over_time_shown is False
        await pilot.press("o")  # and back, focused
        assert timeline.display and app.focused is timeline
        await pilot.press("left", "left")
        assert timeline.cursor == strip.cursor == n - 2
        token = app.conversation.token(n - 2).text
        assert f"token {n - 2} {token!r}"[:12] in text_of(app.query_one(RoutingHeatmap))
        await pilot.press("down")
        assert timeline.layer_index == strip.layer_index == 1
        # strip -> timeline
        await pilot.press("t", "home")
        assert app.focused is strip and strip.cursor == timeline.cursor == 0
        await pilot.press("right_square_bracket")
        assert strip.layer_index == timeline.layer_index == 2
        await pilot.pause()
        timeline.render()
        assert timeline.window[0] == 0  # scrolled to the cursor
        top1 = top1_experts(*app.conversation.token(0).routing[:2])
        assert timeline.border_subtitle.endswith(  # type: ignore[union-attr]
            f"L{app.info.moe_layers[2]}: expert {int(top1[2])}")  # type: ignore[union-attr]
        check_cells_against_routing(app)
        await pilot.press("escape")  # no cursor: both follow the newest again
        assert strip.cursor is None and timeline.cursor is None
        # rebuilt from the conversation after a clear and a load
        saved = tmp_path / "conversation.json"
        app.conversation.save(saved)
        app.action_clear()
        await pilot.pause()
        assert timeline.token_count == 0 and "top-1" not in text_of(timeline)
        app.main.show_conversation(Conversation.load(saved))
        await pilot.pause()
        assert timeline.token_count == n
        check_cells_against_routing(app)
        # the key is listed, and offered in the palette
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Toggle routing over time" in titles
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert "routing over time" in text_of(app.screen.query_one("#help-keys"))


def disjoint(*regions: Region) -> bool:
    return all(not a.overlaps(b) for i, a in enumerate(regions) for b in regions[i + 1:])


async def test_layouts_at_80x24_and_140x45_do_not_overlap(isolated_config_dir) -> None:
    app = MixtuiApp("nano", Sampling(temperature=0.0, max_tokens=4), persist=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.info is not None)
        chat, timeline = app.query_one("#chat"), app.query_one(RoutingTimeline)
        strip, side = app.query_one(TokenStrip), app.query_one("#side")
        screen = Region(0, 0, 80, 24)
        # narrow: the strip, and the timeline in its place on key o
        assert strip.display and not timeline.display
        assert disjoint(chat.region, strip.region, side.region)
        app.set_focus(None)
        await pilot.press("o")
        await pilot.pause()
        assert timeline.display and not strip.display and app.focused is timeline
        app.set_focus(None)
        await pilot.press("t")  # the tokens' key reaches the panel in the strip's place
        assert app.focused is timeline
        assert disjoint(chat.region, timeline.region, side.region)
        assert screen.contains_region(timeline.region)
        assert timeline.region.width == 80 and timeline.region.y >= side.region.bottom
        assert chat.region.height >= 6 + 2  # six rows of chat inside its border
        assert timeline.region.height == 2 + 1 + 4  # border, axis, nano's four layers
        # wide: the strip under the chat, the timeline across the screen under them all
        await pilot.resize_terminal(140, 45)
        await pilot.pause(0.1)
        assert timeline.display and strip.display
        assert disjoint(chat.region, timeline.region, strip.region, side.region)
        assert chat.region.bottom <= strip.region.y
        assert max(strip.region.bottom, side.region.bottom) <= timeline.region.y
        assert timeline.region.width == 140
        assert Region(0, 0, 140, 45).contains_region(strip.region)
        # narrow again: still the timeline there (each layout keeps its choice)
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.1)
        assert timeline.display and not strip.display
        # the strip focused in the wide layout loses the focus where it goes
        await pilot.resize_terminal(140, 45)
        await pilot.pause(0.1)
        await pilot.press("t")
        assert app.focused is strip
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.1)
        assert app.focused is not strip
