"""How long does one refresh of the routing heatmap take? Token map and both share maps.

    python benchmarks/render_heatmap.py [--json] [--renders N] [--width W] [--rows R]

For each geometry (layers x experts, k per token: 56 x 8, k 2: Mixtral 8x22B; 32 x 8: Mixtral
8x7B; 4 x 8: nano; 48 x 128, k 8: Qwen3-30B-A3B; 48 x 512, k 10: Qwen3-Next; 94 x 8, k 2: a
tall model) the widget is mounted in a headless Textual app, in a scrolling side panel W
columns wide, and each render gives it a new token and new counts (show_token +
show_shares, as the app does for every batch of tokens), then paints it through Textual's
own line rendering (`render_lines`, which styles the lines and turns them into what the
screen gets).

Reported, in ms over N renders: `median_ms` and `p95_ms` painting every line of the panel
(token map and both share maps, also the lines scrolled out of view); `screen_median_ms`
painting only the lines an R-row terminal shows, which is what a refresh really paints;
`build_median_ms`, the widget's own part (show_token + show_shares). The budget is 5 ms
per refresh (median) for each geometry.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import numpy as np
from textual.app import App, ComposeResult
from textual.containers import VerticalScroll
from textual.geometry import Region

from mixtui.tui.widgets.heatmap import RoutingHeatmap

GEOMETRIES = ((56, 8, 2), (32, 8, 2), (4, 8, 2), (48, 128, 8), (48, 512, 10), (94, 8, 2))


def routing(rng: np.random.Generator, layers: int, experts: int, k: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random token's routing: (L, k) ids and gate weights, (L, E) router probabilities."""
    logits = rng.normal(size=(layers, experts))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    ids = np.argsort(-probs, axis=1)[:, :k].astype(np.int32)
    top = np.take_along_axis(probs, ids, axis=1)
    return ids, (top / top.sum(axis=1, keepdims=True)).astype(np.float32), probs.astype(np.float32)


class Host(App[None]):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.panel_width = width

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="side"):
            yield RoutingHeatmap()

    def on_mount(self) -> None:
        self.query_one("#side").styles.width = self.panel_width


async def measure(layers: int, experts: int, top_k: int, renders: int, width: int,
                  screen_rows: int) -> dict[str, float | int]:
    rng = np.random.default_rng(0)
    app = Host(width)
    async with app.run_test(size=(width + 20, screen_rows)) as pilot:
        heatmap = app.query_one(RoutingHeatmap)
        moe_layers = tuple(range(layers))
        turn = np.zeros((layers, experts))
        conversation = rng.integers(0, 500, size=(layers, experts)).astype(np.float64)
        heatmap.show_token(moe_layers, *routing(rng, layers, experts, top_k), " the", 0)
        heatmap.show_shares(moe_layers, turn, conversation)
        await pilot.pause()
        size = heatmap.size
        timings: dict[str, list[float]] = {"full": [], "screen": [], "build": []}
        # "full": every line of the panel; "screen": the lines a screen this tall shows,
        # which is all that Textual paints on a refresh.
        for rows, key in ((size.height, "full"), (min(size.height, screen_rows), "screen")):
            for i in range(renders):
                ids, weights, probs = routing(rng, layers, experts, top_k)
                np.put_along_axis(turn, ids.astype(np.int64), 1.0, axis=1)  # this token's
                start = time.perf_counter()
                heatmap.show_token(moe_layers, ids, weights, probs, f" tok{i}", i)
                heatmap.show_shares(moe_layers, turn, conversation + turn)
                built = time.perf_counter()
                strips = heatmap.render_lines(Region(0, 0, size.width, rows))
                end = time.perf_counter()
                assert len(strips) == rows
                timings[key].append(end - start)
                timings["build"].append(built - start)
        ms = {key: sorted(t) for key, t in timings.items()}
        return {"layers": layers, "experts": experts, "top_k": top_k, "width": size.width,
                "lines": size.height,
                "screen_lines": min(size.height, screen_rows), "renders": renders,
                "median_ms": round(statistics.median(ms["full"]) * 1e3, 3),
                "p95_ms": round(float(np.percentile(ms["full"], 95)) * 1e3, 3),
                "screen_median_ms": round(statistics.median(ms["screen"]) * 1e3, 3),
                "build_median_ms": round(statistics.median(ms["build"]) * 1e3, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    parser.add_argument("--renders", type=int, default=200)
    parser.add_argument("--width", type=int, default=46, help="side panel width in columns")
    parser.add_argument("--rows", type=int, default=45, help="terminal height in rows")
    args = parser.parse_args()
    for layers, experts, top_k in GEOMETRIES:
        result = asyncio.run(measure(layers, experts, top_k, args.renders, args.width,
                                     args.rows))
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{layers:>3} layers x {experts:>3} experts, k {top_k:>2}: "
                  f"all {result['lines']} lines "
                  f"median {result['median_ms']:.2f} ms (p95 {result['p95_ms']:.2f}); "
                  f"the {result['screen_lines']} on screen {result['screen_median_ms']:.2f} ms; "
                  f"building the rows {result['build_median_ms']:.2f} ms")


if __name__ == "__main__":
    main()
