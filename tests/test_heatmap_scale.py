"""The routing panel and token strip at today's scale: 128 and 512 experts, 94 layers."""

from __future__ import annotations

import numpy as np
import pytest
from rich.color import Color
from rich.text import Text
from textual.app import App, ComposeResult
from textual.widget import Widget

from mixtui.tui.widgets.heatmap import EXPERT_COLOURS, RoutingHeatmap
from mixtui.tui.widgets.token_strip import DISTINCT, OTHERS_COLOUR, TokenStrip, top1_experts

WIDTH = 46  # the routing panel's content at 140 columns


class Host(App[None]):
    def __init__(self, widget: Widget) -> None:
        super().__init__()
        self.widget = widget

    def compose(self) -> ComposeResult:
        yield self.widget


def lines_of(widget: Widget) -> list[str]:
    rendered = widget.render()
    text = rendered.plain if isinstance(rendered, Text) else str(rendered)
    return [line.rstrip() for line in text.splitlines()]


def token(layers: int, experts: int, k: int, seed: int, scale: float = 1.0
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One token's routing: (L, k) distinct ids in router order, their weights (summing to
    `scale`, as DeepSeek's routed_scaling_factor makes them), (L, E) probabilities."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(experts), size=layers).astype(np.float32)
    ids = np.stack([rng.permutation(experts)[:k] for _ in range(layers)]).astype(np.int32)
    weights = rng.dirichlet(np.ones(k), size=layers).astype(np.float32) * scale
    return ids, weights, probs


def row_of(lines: list[str], layer: int, after: int = 0) -> str:
    return next(line for line in lines[after:] if line.split()[:1] == [f"L{layer}"])


@pytest.mark.parametrize(("experts", "k", "scale"), [(128, 8, 1.0), (512, 10, 2.5)])
async def test_many_experts_show_ids_with_weights_dense_layers_and_shared(
        experts: int, k: int, scale: float) -> None:
    num_layers, dense = 48, (0, 7)
    moe = tuple(layer for layer in range(num_layers) if layer not in dense)
    ids, weights, probs = token(len(moe), experts, k, seed=experts, scale=scale)
    rng = np.random.default_rng(1)
    conversation = rng.integers(1, 40, (len(moe), experts)).astype(np.float64)
    conversation[:, 5] = 4000  # one hot expert in every layer
    conversation[:, 9] = 0  # one never chosen
    heatmap = RoutingHeatmap()
    async with Host(heatmap).run_test(size=(WIDTH, 60)) as pilot:
        heatmap.set_geometry(num_layers, shared_experts=2)
        heatmap.show_token(moe, ids, weights, probs, " the", 3)
        heatmap.show_shares(moe, np.zeros_like(conversation), conversation)
        await pilot.pause()
        lines = lines_of(heatmap)
        assert all(len(line) <= WIDTH for line in lines)
        assert "S: 2 shared experts, always on" in lines[2]
        # the dense layers are rows saying so, in their place (token map and both share maps)
        assert row_of(lines, 0).split() == ["L0", "dense"]
        assert row_of(lines, 7).split() == ["L7", "dense"]
        assert sum(line.split() == ["L7", "dense"] for line in lines) == 3
        assert [line.split()[0] for line in lines[3:3 + num_layers]] == [
            f"L{layer}" for layer in range(num_layers)]
        # every MoE row: the shared marker, then the chosen ids heaviest first with their
        # weights as they are (scaled ones above 1 too)
        for r, layer in enumerate(moe):
            words = row_of(lines, layer).split()
            assert words[1] == "S"
            order = np.argsort(-weights[r], kind="stable")
            heaviest = [str(e) for e in ids[r][order]]
            assert words[2] == heaviest[0]
            w = float(weights[r][order[0]])
            assert words[3] == (f".{round(w * 100):02d}" if w < 0.995 else f"{w:.1f}")
            shown = [x for x in words[2:] if not x.startswith((".", "+")) and "." not in x]
            assert shown == heaviest[:len(shown)] and len(shown) >= 4
            if len(shown) < k:
                assert words[-1] == f"+{k - len(shown)}"
        # the load: one character per expert or per bin, said in the panel
        size = 4 if experts == 128 else 16
        assert lines.count(f"1 char = {size} experts, shaded by the busiest") == 2
        start = next(i for i, line in enumerate(lines) if line.startswith("whole"))
        strip = row_of(lines, 1, after=start)[len("L10 S "):].rstrip()
        assert len(strip) == experts // size
        assert strip[5 // size] == "█"  # the hot expert's bin reads at the top
        turn = row_of(lines, 1, after=next(i for i, x in enumerate(lines) if x.startswith("this")))
        assert set(turn[len("L10 S "):].strip()) == {"·"}  # nothing in this turn yet


async def test_one_char_per_expert_where_it_fits_and_a_zero_expert_shows() -> None:
    heatmap = RoutingHeatmap()
    moe = tuple(range(4))
    ids, weights, probs = token(4, 32, 4, seed=3)  # gpt-oss-20b: 32 experts, 4 per token
    conversation = np.full((4, 32), 10.0)
    conversation[:, 9] = 0
    async with Host(heatmap).run_test(size=(WIDTH, 60)) as pilot:
        heatmap.show_token(moe, ids, weights, probs, "x", 0)
        heatmap.show_shares(moe, conversation, conversation)
        await pilot.pause()
        lines = lines_of(heatmap)
        assert all(len(line) <= WIDTH for line in lines)
        assert lines.count("1 char = 1 expert") == 2
        row = row_of(lines, 0, after=next(i for i, x in enumerate(lines) if x.startswith("this")))
        strip = row[len("L3 "):].rstrip()
        assert len(strip) == 32 and strip[9] == "·" and set(strip) - {"·"} == {"▅"}
        # every chosen expert fits with its weight at 4 per token
        words = row_of(lines, 0).split()
        assert len([w for w in words if w.startswith(".")]) == 4


async def test_94_layers_share_maps_side_by_side() -> None:
    heatmap = RoutingHeatmap()
    moe = tuple(range(94))
    ids, weights, probs = token(94, 8, 2, seed=4)
    rng = np.random.default_rng(2)
    turn = rng.integers(0, 5, (94, 8))
    turn[:, 3] = 0  # never chosen in this turn
    async with Host(heatmap).run_test(size=(WIDTH, 60)) as pilot:
        heatmap.set_geometry(94)
        heatmap.show_token(moe, ids, weights, probs, "x", 0)
        heatmap.show_shares(moe, turn, rng.integers(0, 50, (94, 8)))
        await pilot.pause()
        lines = lines_of(heatmap)
        assert all(len(line) <= WIDTH for line in lines)
        assert "shares: this turn │ whole conversation" in lines
        assert sum(line.startswith("L93 ") for line in lines) == 2  # token map, shares
        # the 8-expert token map is the usual one: cells with the gate weight in %
        assert "gate weight %" in lines[1]
        start = lines.index("shares: this turn │ whole conversation")
        now, whole = row_of(lines, 0, after=start)[len("L93 "):].split(" │ ")
        assert len(now) == 8 and now[3] == "·" and len(whole.rstrip()) == 8
        # two lines per layer and a few more, not three
        assert len(lines) < 2 * 94 + 12


async def test_token_strip_colours_the_most_frequent_experts_when_there_are_many() -> None:
    strip = TokenStrip()
    n, experts = 60, 128
    rng = np.random.default_rng(0)
    ids = rng.integers(0, experts, (n, 2, 8)).astype(np.int32)  # (tokens, layers, k)
    ids[:40, 0, 0] = 77  # expert 77 is top-1 at layer 0 for most tokens
    weights = np.tile(np.linspace(0.3, 0.05, 8, dtype=np.float32), (n, 2, 1))
    async with Host(strip).run_test(size=(100, 12)) as pilot:
        strip.set_layers((0, 1), num_experts=experts)
        strip.append([f" t{i}" for i in range(n)], ["generate"] * n, top1_experts(ids, weights))
        await pilot.pause()
        legend = lines_of(strip)[0]
        assert f"the {DISTINCT} most frequent" in legend and "others grey" in legend
        coloured = strip.coloured_experts()
        assert coloured is not None and coloured[0] == 77 and len(coloured) <= DISTINCT
        assert legend.split("most frequent")[1].split()[0] == "77"
        assert strip.border_subtitle == f"{DISTINCT} most frequent coloured, rest grey"
        # the grey is one colour for every expert without its own; coloured ones differ
        top1 = top1_experts(ids, weights)[:, 0]
        rare = [i for i in range(n) if top1[i] not in coloured]
        assert rare and {_background(strip, i) for i in rare} == {Color.parse(OTHERS_COLOUR)}
        assert _background(strip, 0) == Color.parse(EXPERT_COLOURS[0])  # 77: the first colour
    small = TokenStrip()
    async with Host(small).run_test(size=(100, 12)) as pilot:
        small.set_layers((0,), num_experts=8)
        small.append([" a", " b"], ["generate"] * 2, np.array([[1], [2]]))
        await pilot.pause()
        assert "most frequent" not in lines_of(small)[0] and small.coloured_experts() is None
        assert small.border_subtitle is None


def _background(strip: TokenStrip, index: int) -> object:
    for y in range(1, strip.size.height):
        for segment in strip.render_line(y):
            if segment.text == f" t{index}":
                return segment.style.bgcolor if segment.style else None
    return "off screen"


async def test_scaled_weights_are_shown_as_they_are_in_the_cell_view() -> None:
    """8 experts (cells): a weight of 2.5 (routed_scaling_factor) reads 250, not 100."""
    heatmap = RoutingHeatmap()
    experts = np.array([[1, 6]], dtype=np.int32)
    weights = np.array([[1.75, 0.75]], dtype=np.float32)
    probs = np.full((1, 8), 0.1, dtype=np.float32)
    async with Host(heatmap).run_test(size=(WIDTH, 20)) as pilot:
        heatmap.show_token((0,), experts, weights, probs, "x", 0)
        await pilot.pause()
        row = row_of(lines_of(heatmap), 0)
        assert row.split() == ["L0", "175", "75"]
