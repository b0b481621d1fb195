"""The display widgets, each mounted alone in a small host app: what they draw and post."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import pytest
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.app import App, ComposeResult
from textual.message import Message
from textual.widget import Widget

from mixtui.core.types import ModelInfo, Stats
from mixtui.tui.widgets.heatmap import EXPERT_COLOURS, RoutingHeatmap, expert_colour
from mixtui.tui.widgets.model_bar import BarEntry, ModelBar, name_forms
from mixtui.tui.widgets.stats import StatsPanel, human_bytes, human_count, sparkline
from mixtui.tui.widgets.token_strip import TokenStrip, display_text, top1_experts

WIDGET_MODULES = ["mixtui.tui.widgets.heatmap", "mixtui.tui.widgets.token_strip",
                  "mixtui.tui.widgets.stats", "mixtui.tui.widgets.model_bar",
                  "mixtui.tui.widgets.timeline"]


class Host(App[None]):
    """Mounts the given widgets and keeps the messages they post."""

    def __init__(self, *widgets: Widget) -> None:
        super().__init__()
        self.widgets = widgets
        self.posted: list[Message] = []

    def compose(self) -> ComposeResult:
        yield from self.widgets

    def on_token_strip_cursor_moved(self, message: TokenStrip.CursorMoved) -> None:
        self.posted.append(message)

    def on_model_bar_selected(self, message: ModelBar.Selected) -> None:
        self.posted.append(message)


def lines_of(widget: Widget) -> list[str]:
    rendered = widget.render()
    return (rendered.plain if isinstance(rendered, Text) else str(rendered)).splitlines()


def segment_with(widget: Widget, y: int, text: str) -> Segment:
    """The segment of painted line y whose text is `text`."""
    found = [s for s in widget.render_line(y) if s.text == text]
    assert found, f"no segment {text!r} in line {y}: {[s.text for s in widget.render_line(y)]}"
    return found[0]


# -- heatmap --------------------------------------------------------------------------------------
LAYERS = (0, 1, 2, 31)


def token_routing() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    experts = np.array([[1, 6], [0, 7], [3, 2], [5, 4]], dtype=np.int32)  # (L, k)
    weights = np.array([[0.7, 0.3], [0.55, 0.45], [0.9, 0.1], [0.5, 0.5]], dtype=np.float32)
    probs = np.full((4, 8), 0.01, dtype=np.float32)  # (L, E)
    np.put_along_axis(probs, experts.astype(np.int64), weights * 0.9, axis=1)
    return experts, weights, probs


def cell(line: str, expert: int, label_width: int = 4, width: int = 4) -> str:
    start = label_width + expert * width
    return line[start:start + width].strip()


async def test_heatmap_token_map_rows_labels_and_chosen_numbers() -> None:
    heatmap = RoutingHeatmap()
    async with Host(heatmap).run_test(size=(44, 60)) as pilot:
        heatmap.show_token(LAYERS, *token_routing(), label=" the", index=12)
        await pilot.pause()
        lines = lines_of(heatmap)
        assert lines[0].strip() == "token 12 ' the'"
        assert "gate weight %" in lines[1]
        assert lines[2].split() == [str(e) for e in range(8)]
        rows = {line.split()[0]: line for line in lines[3:]}
        assert list(rows) == ["L0", "L1", "L2", "L31"]
        # Chosen experts carry their gate weight in %, every other cell is blank: the
        # difference reads without colour.
        assert [cell(rows["L0"], e) for e in range(8)] == ["", "70", "", "", "", "", "30", ""]
        assert [cell(rows["L2"], e) for e in range(8)] == ["", "", "10", "90", "", "", "", ""]
        assert [cell(rows["L31"], e) for e in range(8)] == ["", "", "", "", "50", "50", "", ""]
        # Chosen cells are bright and bold, the others dark.
        chosen = segment_with(heatmap, 3, " 70 ").style
        other = heatmap.render_line(3)._segments[1].style
        assert chosen is not None and other is not None and chosen.bold
        assert chosen.bgcolor and other.bgcolor
        assert sum(chosen.bgcolor.get_truecolor()) > 2 * sum(other.bgcolor.get_truecolor())
        # What is painted on screen is the same.
        screen = pilot.app.export_screenshot()
        assert "L31" in screen and "token&#160;12" in screen


async def test_heatmap_title_escapes_and_cuts_the_token() -> None:
    heatmap = RoutingHeatmap()
    async with Host(heatmap).run_test(size=(44, 30)) as pilot:
        heatmap.show_token(LAYERS, *token_routing(), label="\n")
        await pilot.pause()
        assert lines_of(heatmap)[0].strip() == r"token '\n'"
        heatmap.show_token(LAYERS, *token_routing(), label="x" * 80, index=3)
        await pilot.pause()
        title = lines_of(heatmap)[0].strip()
        assert title.startswith("token 3 'xxx") and title.endswith("…'") and len(title) < 40


async def test_heatmap_another_model_relabels_the_rows() -> None:
    heatmap = RoutingHeatmap()
    async with Host(heatmap).run_test(size=(44, 30)) as pilot:
        heatmap.show_token(LAYERS, *token_routing(), label="a")
        heatmap.show_shares(LAYERS, counts(4), counts(4))
        await pilot.pause()
        heatmap.show_token((4, 5, 6, 7), *token_routing(), label="b")
        await pilot.pause()
        lines = lines_of(heatmap)
        assert [line.split()[0] for line in lines[3:]] == ["L4", "L5", "L6", "L7"]
        assert not any("share" in line for line in lines)  # the old model's shares went
        screen = pilot.app.export_screenshot()
        assert "L7" in screen and "L31" not in screen


def counts(layers: int) -> np.ndarray:
    c = np.zeros((layers, 8))
    c[:, 0] = 50  # 50 % of the assignments: far above uniform
    c[:, 1:7] = 50 / 6  # about 8 %: a little below
    return c  # expert 7: 0 %


async def test_heatmap_shares_against_uniform_with_token_kept() -> None:
    heatmap = RoutingHeatmap()
    async with Host(heatmap).run_test(size=(44, 60)) as pilot:
        heatmap.show_token(LAYERS, *token_routing(), label="a", index=0)
        turn = counts(4)
        turn[2] = 0  # a layer without assignments yet
        heatmap.show_shares(LAYERS, turn, counts(4))
        await pilot.pause()
        text = "\n".join(lines_of(heatmap))
        assert text.count("uniform = 12.5 %") == 2
        assert "this turn: share of assignments" in text
        assert "whole conversation: share of assignments" in text
        assert "token 0 'a'" in text  # the token map stays above the shares
        lines = lines_of(heatmap)
        start = next(i for i, line in enumerate(lines) if line.startswith("whole"))
        row = lines[start + 3]
        assert row.startswith("L0") and [cell(row, e) for e in range(8)] == \
            ["50", "8", "8", "8", "8", "8", "8", "0"]
        turn_row_l2 = lines[lines.index(next(x for x in lines if x.startswith("this"))) + 5]
        assert turn_row_l2.startswith("L2") and cell(turn_row_l2, 0) == "·"
        # Diverging: above uniform red, below blue.
        above = segment_with(heatmap, start + 3, " 50 ").style
        below = segment_with(heatmap, start + 3, "  0 ").style
        assert above and below and above.bgcolor and below.bgcolor
        ar, _, ab = above.bgcolor.get_truecolor()
        br, _, bb = below.bgcolor.get_truecolor()
        assert ar > ab and bb > br
        # A new token leaves the shares in place.
        heatmap.show_token(LAYERS, *token_routing(), label="b", index=1)
        await pilot.pause()
        text = "\n".join(lines_of(heatmap))
        assert "token 1 'b'" in text and "whole conversation: share of assignments" in text


async def test_heatmap_dense_model_and_message_show_no_experts() -> None:
    heatmap = RoutingHeatmap()
    async with Host(heatmap).run_test(size=(44, 30)) as pilot:
        heatmap.show_token(LAYERS, *token_routing(), label="a")
        heatmap.show_dense("Mistral 7B Instruct")
        await pilot.pause()
        text = " ".join(" ".join(lines_of(heatmap)).split())
        assert "Mistral 7B Instruct is a dense model" in text
        assert "no experts to show" in text
        assert "L0" not in text and "gate weight" not in text and "share" not in text
        heatmap.show_message("Send a prompt: each token's experts appear here.")
        await pilot.pause()
        assert " ".join(" ".join(lines_of(heatmap)).split()) == \
            "Send a prompt: each token's experts appear here."


async def test_heatmap_narrow_panel_56_layers() -> None:
    heatmap = RoutingHeatmap()
    layers = tuple(range(56))
    rng = np.random.default_rng(0)
    experts = np.argsort(rng.random((56, 8)), axis=1)[:, :2].astype(np.int32)
    weights = np.tile(np.array([0.6, 0.4], np.float32), (56, 1))
    probs = rng.dirichlet(np.ones(8), size=56).astype(np.float32)
    async with Host(heatmap).run_test(size=(30, 24)) as pilot:
        heatmap.show_token(layers, experts, weights, probs, "x", 7)
        heatmap.show_shares(layers, rng.integers(0, 9, (56, 8)), rng.integers(0, 99, (56, 8)))
        await pilot.pause()
        lines = lines_of(heatmap)
        assert all(len(line) <= 30 for line in lines)
        assert sum(line.startswith("L55 ") for line in lines) == 3  # token, turn, conversation
        row = next(line for line in lines if line.startswith("L0 "))
        expected = ["60" if e == experts[0, 0] else "40" if e == experts[0, 1] else ""
                    for e in range(8)]
        assert [cell(row, e, width=3) for e in range(8)] == expected  # 3-wide cells
        assert heatmap.size.height == len(lines)  # it grows; its container scrolls


async def test_heatmap_refresh_builds_quickly() -> None:
    """A full update for 56 x 8 is a few ms (benchmarks/render_heatmap.py measures it);
    this only catches a fall back to a slow path (per-cell markup costs ~20x more)."""
    heatmap = RoutingHeatmap()
    layers = tuple(range(56))
    rng = np.random.default_rng(1)
    async with Host(heatmap).run_test(size=(44, 40)) as pilot:
        await pilot.pause()
        times = []
        for i in range(20):
            experts = np.argsort(rng.random((56, 8)), axis=1)[:, :2].astype(np.int32)
            probs = rng.dirichlet(np.ones(8), size=56).astype(np.float32)
            start = time.perf_counter()
            heatmap.show_token(layers, experts, np.full((56, 2), 0.5, np.float32), probs, "t", i)
            heatmap.show_shares(layers, rng.integers(0, 9, (56, 8)), rng.integers(0, 99, (56, 8)))
            times.append(time.perf_counter() - start)
        assert statistics.median(times) < 0.025


def test_expert_colours_are_distinct() -> None:
    assert len(set(EXPERT_COLOURS)) == len(EXPERT_COLOURS)
    assert expert_colour(3) == expert_colour(3 + len(EXPERT_COLOURS))


# -- token strip ----------------------------------------------------------------------------------
def test_top1_is_the_largest_gate_weight_not_the_first_slot() -> None:
    experts = np.array([[[3, 5], [2, 1]]], dtype=np.int32)  # (n=1, L=2, k=2)
    weights = np.array([[[0.2, 0.8], [0.6, 0.4]]], dtype=np.float32)
    assert top1_experts(experts, weights).tolist() == [[5, 2]]


def test_token_text_is_shown_visibly() -> None:
    assert display_text("a\nb") == "a⏎b"
    assert display_text("\t") == "⇥"
    assert display_text("") == "·"
    assert display_text("\x1b") == "\u241b"


def strip_with_tokens(n: int = 6) -> tuple[TokenStrip, np.ndarray]:
    strip = TokenStrip()
    strip.set_layers((1, 3, 5))
    top1 = np.array([[i % 8, (i + 1) % 8, (i + 2) % 8] for i in range(n)])  # (n, L)
    strip.append([f"t{i} " for i in range(n)], ["prompt"] * 2 + ["generate"] * (n - 2), top1)
    return strip, top1


async def test_token_strip_keys_move_the_cursor_and_post_messages() -> None:
    strip, _ = strip_with_tokens(6)
    app = Host(strip)
    async with app.run_test(size=(60, 8)) as pilot:
        strip.focus()
        await pilot.press("left", "left", "home", "left", "right", "end", "right")
        await pilot.pause()
        # left from no cursor: the last token; clamped at both ends (no message: no move).
        assert [m.index for m in app.posted] == [5, 4, 0, 1, 5]  # type: ignore[attr-defined]
        assert strip.cursor == 5
        assert "token 6/6" in lines_of(strip)[0]
        cursor = segment_with(strip, 1, "t5 ").style
        assert cursor is not None and cursor.reverse and cursor.underline


async def test_token_strip_click_puts_the_cursor_on_a_token() -> None:
    strip, _ = strip_with_tokens(6)
    app = Host(strip)
    async with app.run_test(size=(60, 8)) as pilot:
        await pilot.pause()
        assert lines_of(strip)[1].startswith("t0 t1 t2 t3 t4 t5")
        await pilot.click(TokenStrip, offset=(10, 1))  # the 4th token: "t3 " at 9..11
        await pilot.pause()
        assert strip.cursor == 3
        assert [m.index for m in app.posted] == [3]  # type: ignore[attr-defined]
        assert app.focused is strip
        await pilot.click(TokenStrip, offset=(50, 1))  # past the last token: nothing
        await pilot.pause()
        assert strip.cursor == 3


async def test_token_strip_layers_clamp_and_colour_by_top1() -> None:
    strip, top1 = strip_with_tokens(6)
    async with Host(strip).run_test(size=(60, 8)) as pilot:
        await pilot.pause()
        assert lines_of(strip)[0].startswith("layer L1 ")
        generated = segment_with(strip, 1, "t3 ").style
        assert generated and generated.bgcolor
        assert generated.bgcolor.get_truecolor().hex == expert_colour(int(top1[3, 0]))
        prompt = segment_with(strip, 1, "t0 ").style
        assert prompt and prompt.italic and prompt.bgcolor  # prompt: still coloured, italic
        for _ in range(5):
            strip.next_layer()
        await pilot.pause()
        assert strip.layer_index == 2 and strip.shown_layer == 5
        assert lines_of(strip)[0].startswith("layer L5 ")
        style = segment_with(strip, 1, "t3 ").style
        assert style and style.bgcolor
        assert style.bgcolor.get_truecolor().hex == expert_colour(int(top1[3, 2]))
        for _ in range(5):
            strip.previous_layer()
        assert strip.layer_index == 0
        strip.focus()
        await pilot.press("down")
        assert strip.layer_index == 1
        strip.set_layers((1, 3, 5))  # the same model again: colours kept
        await pilot.pause()
        kept = segment_with(strip, 1, "t3 ").style
        assert kept and kept.bgcolor
        assert kept.bgcolor.get_truecolor().hex == expert_colour(int(top1[3, 1]))
        strip.colouring = False
        await pilot.pause()
        plain = segment_with(strip, 1, "t3 ").style
        assert plain is None or plain.bgcolor is None or \
            plain.bgcolor.get_truecolor().hex != expert_colour(int(top1[3, 1]))
        assert "colours off" in lines_of(strip)[0]


async def test_token_strip_thousands_of_tokens_render_only_what_shows() -> None:
    strip = TokenStrip()
    strip.set_layers((0,))
    async with Host(strip).run_test(size=(80, 6)) as pilot:
        for batch in range(500):  # 5000 tokens in batches, as the app appends them
            strip.append([f"w{batch * 10 + i} " if i != 9 else "\n" for i in range(10)],
                         ["generate"] * 10, np.full((10, 1), batch % 8))
        await pilot.pause()
        assert strip.token_count == 5000
        lines = lines_of(strip)
        assert len(lines) == 6  # the legend and the five last lines: no more is built
        assert "w4998 ⏎" in lines[-1]
        await pilot.pause()
        start = time.perf_counter()
        strip.append(["more "], ["generate"], np.zeros((1, 1), int))
        strip.render()  # rebuilds the screen's lines
        assert time.perf_counter() - start < 0.05
        strip.action_cursor_first()
        await pilot.pause()
        assert lines_of(strip)[1].startswith("w0 w1 ")


async def test_token_strip_dense_model_says_there_is_nothing_to_colour() -> None:
    strip = TokenStrip()
    async with Host(strip).run_test(size=(60, 6)) as pilot:
        strip.show_dense()
        strip.append(["Hello", " world"], ["prompt", "generate"])
        await pilot.pause()
        lines = lines_of(strip)
        assert "no experts to colour tokens by" in lines[0]
        assert lines[1].startswith("Hello world")
        with pytest.raises(ValueError):
            strip.append(["x"], ["generate"], np.zeros((1, 4), int))


# -- stats ----------------------------------------------------------------------------------------
INFO = ModelInfo(name="Mixtral 8x7B Instruct", path="/m", model_type="mixtral", num_layers=32,
                 moe_layers=tuple(range(32)), num_experts=8, top_k=2, default_top_k=2,
                 total_params=46_700_000_000, active_params=12_900_000_000,
                 weight_bytes=26_300_000_000, kv_bytes_per_token=131_072, max_kv_size=4096,
                 chat_template=True, vocab_size=32000, device="gpu")
STATS = Stats(prompt_tokens=120, cached_tokens=30, generation_tokens=40, ttft_s=0.234,
              prompt_tps=456.7, generation_tps=12.3, peak_memory_bytes=27 * 2**30,
              kv_cache_bytes=12 * 2**20, finish_reason="stop")


def stats_text(panel: StatsPanel) -> list[str]:
    return [line for child in panel.children for line in lines_of(child)]


async def test_stats_model_and_finished_answer() -> None:
    panel = StatsPanel(system_interval=None)
    async with Host(panel).run_test(size=(46, 40)) as pilot:
        empty = stats_text(panel)
        panel.set_model(INFO)
        panel.set_finished(STATS)
        await pilot.pause()
        lines = stats_text(panel)
        assert len(lines) == len(empty)  # every figure has its row from the start
        rows = {line[:10].strip(): line[10:] for line in lines}
        assert rows["params"] == "12.9 B active of 46.7 B"
        assert rows["device"] == "gpu"
        assert rows["weights"] == "24.49 GiB"
        assert rows["context"] == "4,096 tokens, 128.0 KiB/token"
        assert rows["TTFT"] == "234 ms"
        assert rows["prompt"] == "456.7 tok/s"
        assert rows["decode"] == "12.3 tok/s"
        assert rows["tokens"] == "120 in (30 cached), 40 out"
        assert rows["KV cache"] == "12.0 MiB"
        assert rows["MLX peak"] == "27.00 GiB"
        assert rows["status"] == "done (stop)"


async def test_stats_live_speed_and_a_new_answer() -> None:
    panel = StatsPanel(system_interval=None)
    async with Host(panel).run_test(size=(46, 40)) as pilot:
        panel.set_model(INFO)
        panel.set_finished(STATS)
        panel.set_live(0, None)  # a new answer: the last one's figures go
        await pilot.pause()
        rows = {line[:10].strip(): line[10:] for line in stats_text(panel)}
        assert rows["TTFT"] == "—" and rows["decode"] == "—" and rows["status"] == "generating"
        for i in range(1, 11):
            panel.set_live(i, float(i))
        await pilot.pause()
        rows = {line[:10].strip(): line[10:] for line in stats_text(panel)}
        assert rows["decode"] == "10.0 tok/s" and rows["tokens"] == "10 out"
        assert rows["speed"] == "▂▂▃▄▅▅▆▇▇█"  # i / 10 of the top block, rounded


async def test_stats_system_figures_never_raise() -> None:
    panel = StatsPanel(system_interval=None)
    async with Host(panel).run_test(size=(46, 40)) as pilot:
        rows = {line[:10].strip(): line[10:] for line in stats_text(panel)}
        assert rows["memory"] == rows["swap"] == "—"  # not read before the first frame
        panel.refresh_system()
        await pilot.pause()
        rows = {line[:10].strip(): line[10:] for line in stats_text(panel)}
        assert rows["engine"] == "—"
        assert "%" in rows["memory"] and " / " in rows["swap"]
        panel.set_engine_pid(os.getpid())
        await pilot.pause()
        rows = {line[:10].strip(): line[10:] for line in stats_text(panel)}
        assert rows["engine"].endswith("RSS") and "B" in rows["engine"]
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        panel.set_engine_pid(gone.pid)
        await pilot.pause()
        rows = {line[:10].strip(): line[10:] for line in stats_text(panel)}
        assert rows["engine"] == "—"


def test_human_figures() -> None:
    assert human_bytes(512) == "512 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(3 * 2**30) == "3.00 GiB"
    assert human_bytes(None) == "—"
    assert human_count(3_900_000) == "3.9 M" and human_count(140_600_000_000) == "140.6 B"
    assert sparkline([0.0, 2.0, 7.0], 3) == "▁▃█"
    assert len(sparkline([float(i) for i in range(100)], 10)) == 10


# -- model bar ------------------------------------------------------------------------------------
ENTRIES = [BarEntry(1, "nano", "nano (bundled)", "bundled", "15 MB"),
           BarEntry(2, "mistral-7b-instruct", "Mistral 7B Instruct v0.3", "downloaded", "4.1 GB"),
           BarEntry(3, "mixtral-8x7b-instruct", "Mixtral 8x7B Instruct v0.1", "not downloaded",
                    "26.3 GB"),
           BarEntry(4, "mixtral-8x22b", "Mixtral 8x22B (base)", "does not fit", "79.1 GB"),
           BarEntry(5, "mixtral-8x22b-instruct", "Mixtral 8x22B Instruct v0.1", "does not fit",
                    "79.1 GB")]


def test_model_names_shorten() -> None:
    assert name_forms("Mixtral 8x7B Instruct v0.1") == ("Mixtral 8x7B Instruct",
                                                        "Mixtral-8x7B-it", "8x7B-it")
    assert name_forms("nano (bundled)") == ("nano", "nano", "nano")
    assert name_forms("mlx-community/Mixtral-8x22B-4bit")[1] == "Mixtral-8x22B"


async def test_model_bar_fits_80_columns_on_one_line() -> None:
    bar = ModelBar()
    async with Host(bar).run_test(size=(80, 5)) as pilot:
        bar.set_entries(ENTRIES)
        bar.set_active("mixtral-8x7b-instruct", "loading weights 12/33")
        await pilot.pause()
        lines = lines_of(bar)
        assert len(lines) == 1 and bar.size.height == 1 and len(lines[0]) <= 78
        line = lines[0]
        assert line.startswith("1 nano")
        assert all(f"{n} " in line for n in range(1, 6))
        assert "▶3" in line and line.endswith("loading weights 12/33")
        assert line.count("✗") == 2 and line.count("↓") == 1 and line.count("✓") == 2
        rendered = bar.render()
        active = [s.style for s in rendered.spans if s.start == line.index("▶")]
        assert active and isinstance(active[0], Style) and active[0].reverse


async def test_model_bar_two_lines_when_wide_and_reflows() -> None:
    bar = ModelBar()
    app = Host(bar)
    async with app.run_test(size=(140, 5)) as pilot:
        bar.set_entries(ENTRIES)
        bar.set_active("nano", "ready")
        await pilot.pause()
        lines = lines_of(bar)
        assert len(lines) == 2 and bar.size.height == 2
        assert "1 nano bundled" in lines[0] and "on disk" in lines[0]
        assert "not here" in lines[0] and lines[0].count("too big") == 2
        assert lines[1].startswith("▶ nano: ready")
        await pilot.resize_terminal(80, 5)
        await pilot.pause()
        assert bar.size.height == 1 and len(lines_of(bar)) == 1
        assert lines_of(bar)[0].endswith("ready")
        await pilot.click(ModelBar, offset=(3, 0))  # "1 nano" (after the padding)
        await pilot.pause()
        assert [m.key for m in app.posted] == ["nano"]  # type: ignore[attr-defined]


# -- hygiene --------------------------------------------------------------------------------------
def test_widgets_import_no_mlx() -> None:
    code = (f"import json, sys; [__import__(m) for m in {WIDGET_MODULES!r}]; "
            "print(json.dumps(sorted(sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    modules = set(json.loads(proc.stdout))
    assert set(WIDGET_MODULES) <= modules
    assert not {m for m in modules if m.split(".")[0] in ("mlx", "mlx_lm", "transformers")}
