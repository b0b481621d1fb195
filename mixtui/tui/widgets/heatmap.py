"""The routing heatmap: one row per MoE layer, one column per expert, shade = gate weight."""

from __future__ import annotations

import numpy as np
from rich.text import Text
from textual.widgets import Static

# Expert colours, as in the Mixtral paper's Figure 8: one hue per expert.
EXPERT_COLOURS = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4",
                  "#42d4f4", "#f032e6", "#bfef45", "#fabed4", "#469990", "#dcbeff",
                  "#9a6324", "#fffac8", "#800000", "#aaffc3")


def expert_colour(expert: int) -> str:
    return EXPERT_COLOURS[expert % len(EXPERT_COLOURS)]


def _shade(value: float) -> str:
    level = int(round(40 + 215 * min(max(value, 0.0), 1.0)))
    return f"#{level // 3:02x}{level // 2:02x}{level:02x}"


def render_heatmap(layers: tuple[int, ...], weights: np.ndarray, title: str) -> Text:
    """weights: (moe_layers, num_experts) in [0, 1]; chosen experts' gate weights or shares."""
    text = Text(f"{title}\n", style="bold")
    num_experts = weights.shape[1] if weights.ndim == 2 else 0
    text.append("     " + "".join(f"{e:>3}" for e in range(num_experts)) + "\n", style="dim")
    for row, layer in enumerate(layers):
        text.append(f"L{layer:<3} ", style="dim")
        for e in range(num_experts):
            value = float(weights[row, e])
            text.append("   ", style=f"on {_shade(value)}" if value > 0 else "on #202020")
        text.append("\n")
    return text


class RoutingHeatmap(Static):
    """Shows the latest token's routing and the conversation's expert shares."""

    DEFAULT_CSS = "RoutingHeatmap { height: auto; }"

    def show_dense(self, name: str) -> None:
        self.update(Text(f"{name} is a dense model: every token uses all of its parameters, "
                         "so there are no experts to show.", style="italic"))

    def show(self, layers: tuple[int, ...], token: np.ndarray, shares: np.ndarray,
             label: str) -> None:
        """token: (moe_layers, E) gate weights of one token; shares: (moe_layers, E) fractions."""
        num_experts = token.shape[1]
        text = render_heatmap(layers, token, f"token {label!r}: gate weight per expert")
        text.append("\n")
        text.append_text(render_heatmap(layers, shares * num_experts / 2,
                                        f"conversation: share of assignments "
                                        f"(uniform = {1 / num_experts:.0%})"))
        self.update(text)
