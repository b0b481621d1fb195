"""Bars in eighths of a cell, for the tables of the compare and the analysis screens."""

from __future__ import annotations

import math

EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(value: float | None, largest: float, width: int) -> str:
    """`value` as a bar of `width` cells at most, to the scale of `largest` (eighths of a
    cell: █▉▊▋▌▍▎▏); "" for no value."""
    if value is None or largest <= 0 or not math.isfinite(value) or value <= 0:
        return ""
    eighths = max(1, round(8 * width * min(value / largest, 1.0)))
    full, part = divmod(eighths, 8)
    return "█" * full + (EIGHTHS[part] if part else "")
