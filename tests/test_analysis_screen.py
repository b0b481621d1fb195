"""The analysis screen driven by Pilot on the bundled nano model (real MLX answers in a real
engine process): the figures it shows are `analyze`'s on the conversation's routing, it
follows a streaming answer, projects offloading at the bandwidth set, exports a report that
parses, compares with a trace (and refuses one of another text), and reads at 80x24.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import keep_probe
from rich.text import Text
from test_tui import ask, ready, text_of, wait_for
from textual.pilot import Pilot
from textual.widgets import Input, Select, Static

from mixtui.app.analysis.report import paper_positions
from mixtui.app.analysis.stats import Load, Routing, analyze
from mixtui.core.types import Sampling
from mixtui.tui.app import MixtuiApp
from mixtui.tui.screens.analysis import REFRESH_S, AnalysisScreen
from mixtui.tui.screens.dialogs import AskScreen
from mixtui.tui.screens.main import MainScreen
from mixtui.tui.widgets.analysis import (
    SSD_GBPS,
    binned,
    export_format,
    hit_chart,
    load_text,
    parse_gbps,
    percent,
    share_bar,
)

pytestmark = pytest.mark.usefixtures("empty_hf_cache", "fixed_budget")

PROMPT = "It is a truth universally acknowledged"


# -- the pure parts ------------------------------------------------------------------------------
def test_a_share_bar_is_scaled_and_marks_the_uniform_share() -> None:
    bar = share_bar(0.5, 0.125, 0.5, width=8)
    assert bar.plain == "█" * 8
    assert [s.style for s in bar.spans if s.start == 1] == ["yellow"]  # the 1/E cell, passed
    short = share_bar(0.0625, 0.125, 0.5, width=8)
    assert short.plain == "█│      "  # it stops short of the uniform mark
    assert share_bar(0.0, 0.125, 0.5, width=4).plain == "│   "


def test_many_experts_bin_into_a_strip_and_list_only_the_busiest() -> None:
    shares = [0.0] * 128
    shares[5], shares[70] = 0.5, 0.25
    strip, size = binned(shares, 32)
    assert size == 4 and len(strip) == 32
    assert strip[1] == "█" and strip[17] == "▅" and strip.count(" ") == 30
    even = [1 / 128] * 128
    load = Load(tokens=10, top1_share=tuple(shares), topk_share=tuple(shares),
                top1_entropy_bits=1.5, topk_entropy_bits=1.5, top1_imbalance=64.0,
                topk_imbalance=64.0)
    text = load_text(load, 128, 70).plain
    rows = [line for line in text.splitlines() if line.startswith("e")]
    assert len(rows) == 10 and rows[0].startswith("e5 ") and rows[1].startswith("e70")
    assert "… 118 others" in text and "1 char = 3 experts" in text
    assert "imbalance 64.00×" in text
    flat = Load(10, tuple(even), tuple(even), 7.0, 7.0, 1.0, 1.0)
    assert "entropy 7.00 bits of 7.00" in load_text(flat, 128, 70).plain


def test_the_cache_chart_of_many_experts_is_on_a_log_axis_with_every_tick_readable() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    tokens, layers, experts, k = 40, 2, 64, 4
    chosen = np.stack([np.stack([rng.choice(experts, k, replace=False) for _ in range(layers)])
                       for _ in range(tokens)]).astype(np.int32)
    routing = Routing(chosen, np.full(chosen.shape, 1 / k, np.float32),
                      np.full((tokens, layers, experts), 1 / experts, np.float32),
                      np.arange(tokens) >= 10, (0, 1), experts, k)
    result = analyze(routing)
    assert result.capacities_bounded
    lines = Text.from_ansi(hit_chart(result, None, 70)).plain.splitlines()
    assert "cache hit rate % against c (mean over layers, log c)" in lines[0]
    ticks = lines[-1].split()
    assert ticks[0] == "4" and ticks[-1] == "64"  # c = k .. E
    assert all(int(t) in result.capacities for t in ticks)
    assert ticks == sorted(ticks, key=int) and len(ticks) >= 5
    one = Text.from_ansi(hit_chart(result, 1, 70)).plain
    assert "(layer L1" in one


def test_fields_and_suffixes() -> None:
    assert parse_gbps(" 7 ", "miss bandwidth", blank_ok=False) == 7.0
    assert parse_gbps("", "memory GB/s", blank_ok=True) is None
    for bad, said in (("fast", "takes a number of GB/s"), ("0", "must be more than 0"),
                      ("", "Give “miss bandwidth” in GB/s")):
        with pytest.raises(ValueError, match=said):
            parse_gbps(bad, "miss bandwidth", blank_ok=False)
    assert [export_format(p) for p in ("a.md", "b.JSON", "c.txt", "d.csv")] == [
        "md", "json", "table", None]
    # our layers beside the paper's first, middle and last, on the screen and in the export
    assert paper_positions(32) == {0: 0, 15: 1, 31: 2}
    assert paper_positions(4) == {0: 0, 1: 1, 3: 2}
    assert paper_positions(2) == {0: 0, 1: 2} and paper_positions(1) == {0: 0}


# -- the screen ----------------------------------------------------------------------------------
def analysis(app: MixtuiApp) -> AnalysisScreen:
    screen = app.screen
    assert isinstance(screen, AnalysisScreen)
    return screen


async def open_by_key(pilot: Pilot, app: MixtuiApp, runs: int = 1) -> AnalysisScreen:
    app.set_focus(None)  # single keys act outside the prompt
    await pilot.press("a")
    await wait_for(pilot, lambda: isinstance(app.screen, AnalysisScreen), timeout=5.0)
    screen = analysis(app)
    await wait_for(pilot, lambda: screen.runs >= runs, timeout=20.0)
    await pilot.pause(0.1)
    return screen


def expected(app: MixtuiApp):
    """`analyze` run here on the conversation's routing: what the screen must show."""
    conversation = app.conversation
    info = app.info
    assert info is not None
    batch = conversation.routing()
    assert batch is not None
    routing = Routing.from_batch(batch, list(conversation.phases), info.moe_layers,
                                 info.num_experts, scoring=info.scoring,
                                 ids=list(conversation.ids))
    return routing, analyze(routing)


def plain(screen: AnalysisScreen, ident: str) -> str:
    return text_of(screen.query_one(f"#{ident}", Static))


@pytest.fixture
async def nano_answered():
    """nano at 140x45, asked PROMPT, the (greedy, 24-token) answer finished."""
    app = MixtuiApp("nano", Sampling(temperature=0.0, max_tokens=24), persist=False)
    async with app.run_test(size=(140, 45)) as pilot:
        await ready(pilot, app)
        await ask(pilot, app, PROMPT)
        await wait_for(pilot, lambda: app.last_finish_reason is not None)
        yield app, pilot


async def test_key_a_shows_analyze_s_figures_of_the_answer(nano_answered) -> None:
    app, pilot = nano_answered
    tokens = len(app.conversation)
    screen = await open_by_key(pilot, app)
    _, want = expected(app)
    got = screen.analysis
    assert got is not None and got.tokens == want.tokens == tokens
    assert (got.prompt_tokens, got.generated_tokens) == (want.prompt_tokens,
                                                         want.generated_tokens)
    assert got.generated_tokens == app.conversation.stats[-1].generation_tokens
    for mine, theirs in zip(got.layers, want.layers, strict=True):
        assert mine.load["all"] == theirs.load["all"]
        assert mine.top1_repeat_rate == theirs.top1_repeat_rate
        assert mine.cache == theirs.cache
    head = plain(screen, "analysis-head")
    assert (f"{tokens} tokens ({want.prompt_tokens} prompt, {want.generated_tokens} generated)"
            in head)
    assert "8 experts, 2 per token" in head
    # the load bars of layer L0: every expert's top-1 share, entropy and imbalance
    load = want.layers[0].load["all"]
    bars = plain(screen, "analysis-load")
    for e in range(8):
        assert f"e{e:<4}" in bars
        assert f"{100 * load.top1_share[e]:5.1f}%" in bars
    assert f"imbalance {load.top1_imbalance:.2f}×" in bars
    assert "uniform 1/E = 12.5%" in bars
    # Table 5: each layer's two rates, the baselines (1/8; 1 - C(6,2)/C(8,2) = 46.4 %)
    table = plain(screen, "analysis-table5")
    assert "12.5%" in table and "46.4%" in table
    for layer in want.layers:
        assert (f"L{layer.layer:<6}{percent(layer.top1_repeat_rate):>13}"
                f"{percent(layer.topk_repeat_rate):>17}") in table
    assert f"{'mean':<7}{percent(want.top1_repeat_rate):>13}" in table
    prompt_rates = want.layers[0].repeat_by_phase["prompt"]
    assert f"prompt {percent(prompt_rates[0])} / {percent(prompt_rates[1])}" in table
    assert "Mixtral paper" in table and "first" in table and "last" in table
    assert "L31" in table  # the paper's last layer, beside ours
    # ] and ↓ pick the next layer, [ the previous; p the phase
    await pilot.press("right_square_bracket")
    assert screen.layer_index == 1
    assert f"layer L{want.layers[1].layer}" in str(screen.query_one("#analysis-load")
                                                   .border_title)
    await pilot.press("down")  # the load bars have the focus: ↓ is the next layer
    assert screen.layer_index == 2
    await pilot.press("left_square_bracket", "left_square_bracket")
    assert screen.layer_index == 0
    await pilot.press("p")
    assert screen.phase == "prompt"
    prompt_load = want.layers[0].load["prompt"]
    assert f"imbalance {prompt_load.top1_imbalance:.2f}×" in plain(screen, "analysis-load")
    assert f"{prompt_load.tokens} tokens" in plain(screen, "analysis-load")
    # Esc closes it; the conversation and the engine are as they were
    await pilot.press("escape")
    await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), timeout=5.0)
    assert len(app.conversation) == tokens and app.engine is not None
    # the palette offers it too
    await pilot.press("ctrl+p")
    await pilot.pause(0.2)
    await pilot.press(*"Analyze routing")
    await pilot.pause(0.5)
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, AnalysisScreen), timeout=5.0)


@pytest.fixture
def kept_probe(isolated_config_dir: Path) -> float:
    """A memory bandwidth `mixtui bench` measured and kept (measuring takes an engine)."""
    keep_probe(40.0)
    return 40.0


async def test_the_cache_chart_and_the_projection_follow_the_bandwidth(kept_probe: float,
                                                                       nano_answered) -> None:
    app, pilot = nano_answered
    screen = await open_by_key(pilot, app)
    # the memory bandwidth comes from the kept probe, and says so
    memory = screen.query_one("#analysis-memory", Input)
    await wait_for(pilot, lambda: memory.value == "40", timeout=5.0)
    assert "measured" in text_of(screen.query_one("#analysis-memory-hint"))
    with_memory = screen.projection
    memory.value = ""  # the misses' time alone: faster than with the rest of the reads
    await pilot.pause(0.2)
    assert all(b.tokens_per_s > a.tokens_per_s  # type: ignore[operator]
               for a, b in zip(with_memory, screen.projection, strict=True))
    _, want = expected(app)
    chart = plain(screen, "analysis-chart")
    assert "cache hit rate % against c (mean over layers)" in chart
    assert "LRU" in chart and "optimal (Belady)" in chart and "c: experts cached" in chart
    for c in want.capacities:  # c = k..E along x
        assert str(c) in chart.splitlines()[-3]
    assert screen.query_one("#analysis-gbps", Input).value == str(SSD_GBPS)
    speed = plain(screen, "analysis-speed")
    assert f"misses at {SSD_GBPS:g} GB/s" in speed and "tok/s" in speed
    slow = screen.projection
    assert [p.capacity for p in slow] == list(want.capacities)
    assert all(p.policy == "lru" for p in slow)
    assert [p.hit_rate for p in slow] == [want.hit_rate("lru", c) for c in want.capacities]
    lru = f"{100 * want.hit_rate('lru', want.capacities[0]):.1f}%"
    assert lru in speed
    # ten times the bandwidth: every c with misses gets faster
    screen.query_one("#analysis-gbps", Input).value = str(10 * SSD_GBPS)
    await pilot.pause(0.2)
    fast = screen.projection
    for a, b in zip(slow, fast, strict=True):
        assert a.tokens_per_s is not None and b.tokens_per_s is not None
        if a.miss_bytes_per_token > 0:
            assert b.tokens_per_s > a.tokens_per_s
    assert f"misses at {10 * SSD_GBPS:g} GB/s" in plain(screen, "analysis-speed")
    # a bandwidth that is not one is said, not raised
    screen.query_one("#analysis-gbps", Input).value = "fast"
    await pilot.pause(0.2)
    assert screen.projection == ()
    assert "takes a number of GB/s" in plain(screen, "analysis-speed")
    screen.query_one("#analysis-gbps", Input).value = str(SSD_GBPS)
    # another registry model's experts (same 8 and 2): Mixtral 8x7B's are far larger
    sizes = screen.query_one("#analysis-size", Select)
    assert "mixtral-8x7b-instruct" in [value for _, value in sizes._options]
    nano_bytes = screen.sizes.expert_bytes if screen.sizes else 0
    sizes.value = "mixtral-8x7b-instruct"
    await pilot.pause(0.2)
    assert screen.sizes is not None and screen.sizes.expert_bytes > 100 * nano_bytes > 0
    assert "offloading Mixtral" in plain(screen, "analysis-speed")
    # the curve of one layer
    screen.query_one("#analysis-cache-layer", Select).value = "1"
    await pilot.pause(0.2)
    assert screen.cache_layer == 1
    assert f"(layer L{want.layers[1].layer})" in plain(screen, "analysis-chart")


async def test_export_writes_a_report_that_parses(nano_answered, tmp_path: Path) -> None:
    app, pilot = nano_answered
    screen = await open_by_key(pilot, app)
    _, want = expected(app)
    for name in ("report.json", "report.md"):
        target = tmp_path / name
        await pilot.press("ctrl+e")
        await wait_for(pilot, lambda: isinstance(app.screen, AskScreen), timeout=5.0)
        app.screen.query_one(Input).value = str(target)
        await pilot.press("enter")
        await wait_for(pilot, lambda t=target: screen.message_text == (
            f"Exported the analysis to {t}."), timeout=10.0)
    record = json.loads((tmp_path / "report.json").read_text())
    layers = record["layers"]
    assert [la["layer"] for la in layers] == [la.layer for la in want.layers]
    assert layers[0]["top1_repeat_rate"] == pytest.approx(want.layers[0].top1_repeat_rate)
    cache = {(c["policy"], c["capacity"]): c["hit_rate"] for c in layers[0]["cache"]}
    assert cache[("lru", 2)] == pytest.approx(want.layers[0].hit_rate("lru", 2))
    assert "|" in (tmp_path / "report.md").read_text()  # a Markdown table
    # a name without a known suffix is refused in the dialog
    await pilot.press("ctrl+e")
    await wait_for(pilot, lambda: isinstance(app.screen, AskScreen), timeout=5.0)
    app.screen.query_one(Input).value = str(tmp_path / "report.pdf")
    await pilot.press("enter")
    assert "End the file name in .md" in text_of(app.screen.query_one("#error"))


async def test_compare_with_a_trace_agrees_with_itself_and_refuses_another_text(
        nano_answered, tmp_path: Path) -> None:
    app, pilot = nano_answered
    screen = await open_by_key(pilot, app)
    same = tmp_path / "same.jsonl"
    app.conversation.export_trace(same, app.info)
    await pilot.press("ctrl+t")
    await wait_for(pilot, lambda: isinstance(app.screen, AskScreen), timeout=5.0)
    app.screen.query_one(Input).value = str(same)
    await pilot.press("enter")
    await wait_for(pilot, lambda: screen.agreement is not None, timeout=10.0)
    agree = screen.agreement
    assert agree is not None and agree.tokens == len(app.conversation)
    assert [la.top1_agree for la in agree.layers] == [1.0] * len(app.info.moe_layers)
    box = plain(screen, "analysis-compare")
    assert f"{agree.tokens} tokens compared" in box and "100.0%" in box
    # another text: its first token differs
    lines = same.read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if json.loads(line).get("type") == "token")
    record = json.loads(lines[first])
    record["id"] = (record["id"] + 1) % 100
    lines[first] = json.dumps(record)
    other = tmp_path / "other.jsonl"
    other.write_text("\n".join(lines) + "\n")
    screen.compare(str(other))
    await wait_for(pilot, lambda: screen.message_text.startswith("Not compared"), timeout=10.0)
    said = screen.message_text
    assert said.count(". ") == 0 and said.endswith(".") and "Traceback" not in said
    # not a trace at all: one sentence naming the line
    junk = tmp_path / "junk.jsonl"
    junk.write_text("hello\n")
    screen.compare(str(junk))
    await wait_for(pilot, lambda: screen.message_text != said
                   and screen.message_text.startswith("Not compared"), timeout=10.0)
    assert screen.message_text.startswith("Not compared") and "line 1" in screen.message_text


async def test_the_view_follows_a_streaming_answer_at_most_once_a_second() -> None:
    app = MixtuiApp("nano", Sampling(temperature=0.0, max_tokens=3000), persist=False)
    async with app.run_test(size=(140, 45)) as pilot:
        await ready(pilot, app)
        await ask(pilot, app, PROMPT)
        await wait_for(pilot, lambda: app.controller.generated > 0)
        screen = await open_by_key(pilot, app)
        first, runs = screen.analysis, screen.runs  # on a busy machine runs may be past 1
        assert first is not None
        await wait_for(pilot, lambda: screen.runs >= runs + 2 or not app.generating,
                       timeout=30.0)
        assert screen.runs >= runs + 1
        later = screen.analysis
        assert later is not None and later.tokens > first.tokens
        gaps = [b - a for a, b in zip(screen.started_at, screen.started_at[1:], strict=False)]
        assert min(gaps) >= REFRESH_S - 0.05
        # keys act while it streams and analyses (3,000 tokens: it is still streaming)
        assert app.generating and "live" in plain(screen, "analysis-head")
        await pilot.press("right_square_bracket")
        assert screen.layer_index == 1
        # the final figures are the whole answer's
        app.controller.stop()
        await wait_for(pilot, lambda: not app.generating, timeout=10.0)
        await wait_for(pilot, lambda: screen.analysis is not None
                       and screen.analysis.tokens == len(app.conversation), timeout=10.0)
        assert screen.analysis.tokens == expected(app)[1].tokens
        await wait_for(pilot, lambda: "live" not in plain(screen, "analysis-head"), timeout=2.0)


async def test_at_80x24_the_panels_stack_and_scroll(tmp_path: Path) -> None:
    app = MixtuiApp("nano", Sampling(temperature=0.0, max_tokens=8), persist=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        screen = await open_by_key(pilot, app, runs=0)  # no tokens yet: said
        assert "No tokens yet" in plain(screen, "analysis-head")
        await pilot.press("escape")
        await ask(pilot, app, PROMPT)
        await wait_for(pilot, lambda: app.last_finish_reason is not None)
        screen = await open_by_key(pilot, app)
        assert screen.has_class("narrow")
        head = screen.query_one("#analysis-head")
        assert head.region.y == 0 and "tokens" in plain(screen, "analysis-head")
        load = screen.query_one("#analysis-load")
        table = screen.query_one("#analysis-table5")
        assert load.region.right <= 80 and table.region.y >= load.region.bottom
        body = screen.query_one("#analysis-body")
        assert body.max_scroll_y > 0  # the rest is below, a scroll away
        for line in Text.from_ansi(plain(screen, "analysis-chart")).plain.splitlines():
            assert len(line) <= 80
        assert not math.isnan(screen.analysis.layers[0].load["all"].top1_entropy_bits)


async def test_a_dense_model_says_it_has_no_routing(tiny_dense_dir: Path) -> None:
    app = MixtuiApp(str(tiny_dense_dir), Sampling(temperature=0.0, max_tokens=2),
                    persist=False)
    async with app.run_test(size=(140, 45)) as pilot:
        await ready(pilot, app)
        app.set_focus(None)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, AnalysisScreen), timeout=5.0)
        await pilot.pause(0.2)
        assert "dense model" in plain(analysis(app), "analysis-head")
        await pilot.press("ctrl+e")
        assert analysis(app).message_text.startswith("Nothing to export yet")
