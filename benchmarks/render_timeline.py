"""How long does one refresh of the routing-over-time panel take, 2,000 tokens in?

    python benchmarks/render_timeline.py [--json] [--renders N] [--tokens T]

The widget is mounted in a headless Textual app and holds T tokens (default 2,000; a tenth
of them prompt) with random top-1 experts; each render appends a batch of 2 tokens, as the
main screen's 10 Hz flush does at about 20 tok/s (the window follows the newest token, so
every cell on screen moves), then paints every line of the widget through Textual's own
line rendering (`render_lines`: the styling and cropping that the screen gets).

Geometries (layers x experts) and panels (columns x rows of the widget's content):
56 x 8 (Mixtral 8x22B) in the app's wide panel at 140 columns (48 x 15: the axis and 14
layers, the height cap), in its narrow one (40 x 8), in the wide panel of a 250-column
terminal (156 x 15) and in a 200 x 57 panel that shows all 56 layers and 196 tokens at once
(taller than the app ever makes it); 48 x 128 (Qwen3-30B-A3B) in the wide panel and in
200 x 49; 4 x 8 (nano).
Also a render that only moves the cursor (a key press: nothing appended).

Reported, in ms over N renders: `median_ms`, `p95_ms`, and `cursor_median_ms`. The budget
is the routing panel's: 5 ms per refresh (median).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import numpy as np
from textual.app import App, ComposeResult
from textual.geometry import Region

from mixtui.tui.widgets.timeline import RoutingTimeline

CASES = ((56, 8, 48, 15), (56, 8, 40, 8), (56, 8, 156, 15), (56, 8, 200, 57),
         (48, 128, 48, 15), (48, 128, 200, 49), (4, 8, 48, 5))


class Host(App[None]):
    def __init__(self, width: int, height: int) -> None:
        super().__init__()
        self.panel = (width, height)

    def compose(self) -> ComposeResult:
        yield RoutingTimeline()

    def on_mount(self) -> None:
        timeline = self.query_one(RoutingTimeline)
        timeline.styles.width, timeline.styles.height = self.panel


async def measure(layers: int, experts: int, width: int, height: int, renders: int,
                  tokens: int) -> dict[str, float | int]:
    rng = np.random.default_rng(0)
    app = Host(width, height)
    async with app.run_test(size=(width + 10, height + 4)) as pilot:
        timeline = app.query_one(RoutingTimeline)
        timeline.set_layers(tuple(range(layers)), num_experts=experts)
        prompt = tokens // 10
        timeline.append([" w"] * prompt, ["prompt"] * prompt,
                        rng.integers(0, experts, (prompt, layers)))
        rest = tokens - prompt
        timeline.append([" w"] * rest, ["generate"] * rest,
                        rng.integers(0, experts, (rest, layers)))
        await pilot.pause()
        size = timeline.size
        region = Region(0, 0, size.width, size.height)
        grow, move = [], []
        for i in range(renders):
            top1 = rng.integers(0, experts, (2, layers))
            start = time.perf_counter()
            timeline.append([f" t{i}", " u"], ["generate"] * 2, top1)
            strips = timeline.render_lines(region)
            grow.append(time.perf_counter() - start)
            assert len(strips) == size.height
        timeline.cursor = timeline.token_count - 1
        for i in range(renders):
            start = time.perf_counter()
            timeline.cursor = timeline.token_count - 1 - (i % 500)  # left, one token a time
            timeline.render_lines(region)
            move.append(time.perf_counter() - start)
        return {"layers": layers, "experts": experts, "columns": size.width,
                "rows": size.height, "tokens": tokens, "renders": renders,
                "median_ms": round(statistics.median(grow) * 1e3, 3),
                "p95_ms": round(float(np.percentile(grow, 95)) * 1e3, 3),
                "cursor_median_ms": round(statistics.median(move) * 1e3, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    parser.add_argument("--renders", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=2000)
    args = parser.parse_args()
    for layers, experts, width, height in CASES:
        result = asyncio.run(measure(layers, experts, width, height, args.renders,
                                     args.tokens))
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{layers:>3} layers x {experts:>3} experts, {result['tokens']} tokens, "
                  f"panel {result['columns']} x {result['rows']}: "
                  f"median {result['median_ms']:.2f} ms (p95 {result['p95_ms']:.2f}); "
                  f"cursor move {result['cursor_median_ms']:.2f} ms")


if __name__ == "__main__":
    main()
