"""Will a model fit? Weights + KV cache + a working margin against this machine's budget."""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from typing import Literal

from mixtui.engine.messages import DEFAULT_CONTEXT
from mixtui.errors import UsageError
from mixtui.registry.spec import ModelSpec

Verdict = Literal["fits", "tight", "does-not-fit"]
_RESERVE = 2 * 1024**3  # left to the OS and other programs where the budget is free RAM
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(text: str) -> int:
    """'16GB', '512 MiB', '1.5GB' or a plain byte count."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).upper() if match else ""
    if not match or unit not in _UNITS:
        raise UsageError(f"'{text}' is not a size; write it like 16GB or 512MiB.")
    return int(float(match.group(1)) * _UNITS[unit])


@dataclass(frozen=True)
class Budget:
    bytes: int
    source: str  # where the figure comes from, for the message


def memory_budget() -> Budget:
    """MIXTUI_MEMORY_BUDGET, else the GPU working set on Apple silicon, else available RAM."""
    override = os.environ.get("MIXTUI_MEMORY_BUDGET")
    if override:
        return Budget(parse_size(override), "MIXTUI_MEMORY_BUDGET")
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        import mlx.core as mx  # mlx.core alone is quick to import; mlx_lm is not needed

        size = int(mx.device_info().get("max_recommended_working_set_size", 0))
        if size:
            return Budget(size, "the GPU's recommended working set (iogpu.wired_limit_mb)")
    import psutil

    available = psutil.virtual_memory().available
    return Budget(max(available - _RESERVE, 0), "available memory minus a 2 GiB reserve")


@dataclass(frozen=True)
class Fit:
    verdict: Verdict
    weight_bytes: int
    kv_bytes: int
    margin_bytes: int
    budget: Budget

    @property
    def need_bytes(self) -> int:
        return self.weight_bytes + self.kv_bytes + self.margin_bytes


def plan(spec: ModelSpec, context: int = DEFAULT_CONTEXT, budget: Budget | None = None) -> Fit:
    """Weights + KV cache at `context` tokens + 10 % (at least 256 MiB) for activations."""
    budget = budget or memory_budget()
    weights = spec.weight_bytes()
    kv = spec.kv_bytes_per_token() * context
    margin = max(weights // 10, 256 * 2**20)
    need = weights + kv + margin
    verdict: Verdict = ("fits" if need <= 0.85 * budget.bytes
                        else "tight" if need <= budget.bytes else "does-not-fit")
    return Fit(verdict, weights, kv, margin, budget)
