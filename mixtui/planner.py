"""Will a model fit? Weights + KV cache + a working margin against this machine's budget.

The weights come from the safetensors headers when the model is on disk (exact: what MLX
will load), else from the geometry and quantization. A `Fit` explains itself in one
sentence with the numbers and, when the model does not fit, what would: a shorter context,
or smaller models of the registry.
"""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mixtui.core.errors import MixtuiError, Remedy, UsageError, literal
from mixtui.core.types import DEFAULT_CONTEXT
from mixtui.core.units import parse_size
from mixtui.registry.loader import load_registry
from mixtui.registry.local import local_dir
from mixtui.registry.spec import ModelSpec

Verdict = Literal["fits", "tight", "does-not-fit"]
WeightsSource = Literal["safetensors", "geometry"]
BudgetKind = Literal["override", "gpu", "ram"]
_RESERVE = 2 * 1024**3  # left to the OS and other programs where the budget is free RAM
_TIGHT = 0.85  # above this share of the budget a model is "tight"
_MIN_CONTEXT = 512  # the shortest context suggested instead of the configured one
_MAX_HEADER = 100 * 2**20  # a safetensors header larger than this is not believed
_SYSTEM_SHARE = 8 * 2**30  # macOS: what raising the GPU's wired limit should leave the rest


class ModelTooBig(UsageError):
    """The model would not fit this machine's memory budget (exit code 2; --force loads it)."""


FORCE = Remedy("force", "; --force loads it anyway")  # the TUI words it its own way


@dataclass(frozen=True)
class Budget:
    bytes: int
    source: str  # where the figure comes from, for the message
    kind: BudgetKind = "ram"


def memory_budget() -> Budget:
    """MIXTUI_MEMORY_BUDGET, else the GPU working set on Apple silicon, else available RAM."""
    override = os.environ.get("MIXTUI_MEMORY_BUDGET")
    if override:
        return Budget(parse_size(override), "MIXTUI_MEMORY_BUDGET", "override")
    if _apple_silicon():
        import mlx.core as mx  # mlx.core alone is quick to import; mlx_lm is not needed

        size = int(mx.device_info().get("max_recommended_working_set_size", 0))
        if size:
            return Budget(size, "the GPU's recommended working set, set by iogpu.wired_limit_mb",
                          "gpu")
    import psutil  # deferred: not needed before the first frame

    available = psutil.virtual_memory().available
    return Budget(max(available - _RESERVE, 0), "available memory minus a 2 GiB reserve", "ram")


def _apple_silicon() -> bool:
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def _total_memory() -> int:
    import psutil  # deferred: not needed before the first frame

    return int(psutil.virtual_memory().total)


# -- weights from the safetensors headers ----------------------------------------------------
def _tensor_bytes(path: Path) -> int:
    """Bytes of the tensors in one safetensors file, from its header alone."""
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) != 8:
            raise ValueError(f"{path.name}: no header")
        length = int.from_bytes(head, "little")
        if length > min(_MAX_HEADER, size - 8):
            raise ValueError(f"{path.name}: header length {length}")
        header = json.loads(f.read(length))
    total = 0
    for name, tensor in header.items():
        if name == "__metadata__":
            continue
        start, end = (int(x) for x in tensor["data_offsets"])
        if not 0 <= start <= end <= size - 8 - length:
            raise ValueError(f"{path.name}: {name} lies outside the file")
        total += end - start
    return total


def safetensors_weight_bytes(model_dir: Path) -> int | None:
    """Bytes of all the weights the model loads, read from the safetensors headers only:
    the shards its index names, else every *.safetensors file. None when they are missing,
    incomplete or unreadable (then the geometry gives the figure)."""
    index = model_dir / "model.safetensors.index.json"
    try:
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"]
                                .values()))
        else:
            shards = sorted(p.name for p in model_dir.glob("*.safetensors"))
        if not shards:
            return None
        return sum(_tensor_bytes(model_dir / str(name)) for name in shards)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


# -- the verdict -----------------------------------------------------------------------------
def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 10**8 else f"{n / 1e6:.1f} MB"


@dataclass(frozen=True)
class Fit:
    verdict: Verdict
    weight_bytes: int
    kv_bytes: int
    margin_bytes: int
    budget: Budget
    name: str = ""
    context: int = DEFAULT_CONTEXT
    weights_source: WeightsSource = "geometry"
    # Only for does-not-fit: the longest context that would fit (None: none from 512 on),
    # and, when there is none, the registry's models that fit.
    fits_at_context: int | None = None
    fits_at_context_verdict: Verdict = "fits"
    smaller: tuple[str, ...] = ()
    hint: str | None = None  # macOS: how to raise the GPU's wired-memory limit

    @property
    def need_bytes(self) -> int:
        return self.weight_bytes + self.kv_bytes + self.margin_bytes

    @property
    def reason(self) -> str:
        """One sentence with the numbers (and what would fit), for `models` and the bar."""
        return self.sentence(hint=False)

    def sentence(self, *, hint: bool = True) -> str:
        """The verdict in one sentence, plus at most one hint sentence (macOS); for a model
        that does not fit, `error()` without its remedy of loading it anyway."""
        if self.verdict == "does-not-fit":
            return self.error(hint=hint).render({"force": ""})
        need, budget = _gb(self.need_bytes), _gb(self.budget.bytes)
        name = self.name or "The model"
        if self.verdict == "fits":
            text = (f"{name} fits: it needs {need} ({self._parts()}) of the {budget} budget "
                    f"({self.budget.source}).")
        else:
            share = 100 * self.need_bytes / max(self.budget.bytes, 1)
            text = (f"{name} is a tight fit: it needs {need} ({self._parts()}), {share:.0f} % "
                    f"of the {budget} budget ({self.budget.source}), so it may swap or slow "
                    "down.")
        return text + (" " + self.hint if hint and self.hint else "")

    def error(self, *, hint: bool = True) -> ModelTooBig:
        """The refusal of a model that does not fit, with its figures and remedies: a
        shorter context (`context`, when one would fit) and loading it anyway (`force`)."""
        remedies = [FORCE]
        n = self.fits_at_context
        if n is not None:
            how = ("it would fit" if self.fits_at_context_verdict == "fits"
                   else "it would just fit (tight)")
            what = f"{how} with a context of {n} tokens ({{context}})"
            remedies.insert(0, Remedy("context", "--max-kv-size {value}", n))
        else:
            shorter = f"even at {_MIN_CONTEXT} tokens of context it would not fit"
            if len(self.smaller) > 1:
                what = f"{shorter}, but smaller models do: {literal(', '.join(self.smaller))}"
            elif self.smaller:
                what = f"{shorter}, but a smaller model does: {literal(self.smaller[0])}"
            else:
                what = f"{shorter}, and no smaller model in the registry fits either"
        text = (f"{literal(self.name or 'The model')} does not fit: it needs "
                f"{_gb(self.need_bytes)} ({self._parts()}) but the budget is "
                f"{_gb(self.budget.bytes)} ({literal(self.budget.source)}); {what}{{force}}.")
        if hint and self.hint:
            text += " " + literal(self.hint)
        facts = {"model": self.name, "need_bytes": self.need_bytes,
                 "weight_bytes": self.weight_bytes, "weights_source": self.weights_source,
                 "kv_bytes": self.kv_bytes, "margin_bytes": self.margin_bytes,
                 "context": self.context, "budget_bytes": self.budget.bytes,
                 "budget_source": self.budget.source, "fits_at_context": n,
                 "smaller_models": list(self.smaller)}
        return ModelTooBig(text, facts=facts, remedies=tuple(remedies))

    def _parts(self) -> str:
        source = ("from the safetensors headers" if self.weights_source == "safetensors"
                  else "estimated from the geometry")
        return (f"{_gb(self.weight_bytes)} of weights {source} + {_gb(self.kv_bytes)} of "
                f"KV cache at {self.context} tokens + {_gb(self.margin_bytes)} working margin")


def _verdict(need: int, budget: Budget) -> Verdict:
    return ("fits" if need <= _TIGHT * budget.bytes
            else "tight" if need <= budget.bytes else "does-not-fit")


def _margin(weights: int) -> int:
    """10 % of the weights, at least 256 MiB, for activations and MLX's own buffers."""
    return max(weights // 10, 256 * 2**20)


def _weights(spec: ModelSpec, model_dir: Path | None, from_disk: bool = True
             ) -> tuple[int, WeightsSource]:
    if not from_disk:
        return spec.weight_bytes(), "geometry"
    if model_dir is None:
        model_dir = local_dir(spec)
    if model_dir is not None:
        measured = safetensors_weight_bytes(model_dir)
        if measured is not None:
            return measured, "safetensors"
    return spec.weight_bytes(), "geometry"


def _longest_context(weights: int, per_token: int, limit: float, fixed: int = 0
                     ) -> int | None:
    """The longest context (a multiple of 1024, or 512) whose need stays within `limit`;
    `fixed`: cache bytes that do not grow with the context (linear-attention state, full
    sliding windows)."""
    if per_token <= 0:
        return None
    raw = math.floor((limit - weights - fixed - _margin(weights)) / per_token)
    if raw >= 1024:
        return raw // 1024 * 1024
    return _MIN_CONTEXT if raw >= _MIN_CONTEXT else None


def plan(spec: ModelSpec, context: int = DEFAULT_CONTEXT, budget: Budget | None = None, *,
         model_dir: Path | None = None,
         registry: dict[str, ModelSpec] | None = None, from_disk: bool = True) -> Fit:
    """Weights + KV cache at `context` tokens + 10 % (at least 256 MiB) for activations.

    `model_dir`: where the model is (default: the registry's local directory, if any);
    `registry`: the models to suggest instead (default: the registry, read when needed);
    `from_disk` False: the geometry's bytes whatever is on disk (a synthetic model's)."""
    budget = budget or memory_budget()
    weights, source = _weights(spec, model_dir, from_disk)
    per_token = spec.kv_bytes_per_token()
    kv = spec.cache_bytes(context)
    margin = _margin(weights)
    verdict = _verdict(weights + kv + margin, budget)
    fit = Fit(verdict, weights, kv, margin, budget, spec.name, context, source)
    if verdict != "does-not-fit":
        return fit
    at_verdict: Verdict = "fits"
    fixed = max(0, kv - per_token * context)
    at_context = _longest_context(weights, per_token, _TIGHT * budget.bytes, fixed)
    if at_context is None:
        at_context, at_verdict = (_longest_context(weights, per_token, budget.bytes, fixed),
                                  "tight")
    smaller: tuple[str, ...] = ()
    if at_context is None:
        smaller = _smaller_models(spec, context, budget, registry)
    return Fit(verdict, weights, kv, margin, budget, spec.name, context, source,
               at_context, at_verdict, smaller,
               _wired_limit_hint(weights + kv + margin, budget))


def _smaller_models(spec: ModelSpec, context: int, budget: Budget,
                    registry: dict[str, ModelSpec] | None) -> tuple[str, ...]:
    """Keys of the registry's models that fit at `context` (fits first, then tight)."""
    if registry is None:
        try:
            registry = load_registry()
        except MixtuiError:  # a broken models.toml is reported elsewhere
            return ()
    verdicts: dict[str, Verdict] = {}
    for key, other in registry.items():
        if key == spec.key or other == spec:
            continue
        weights, _ = _weights(other, None)
        verdicts[key] = _verdict(weights + other.cache_bytes(context)
                                 + _margin(weights), budget)
    fitting = [k for k, v in verdicts.items() if v == "fits"]
    return tuple(fitting or [k for k, v in verdicts.items() if v == "tight"])


def _wired_limit_hint(need: int, budget: Budget) -> str | None:
    """On Apple silicon, when the GPU's working set is the limit: how to raise it."""
    if budget.kind != "gpu" or not _apple_silicon():
        return None
    total = _total_memory()
    wanted = math.ceil(need / _TIGHT / 2**30) * 1024  # MB, so that the model fits
    most = (total - _SYSTEM_SHARE) // 2**30 * 1024  # leave the system 8 GiB
    limit_mb = min(wanted, most)
    if limit_mb * 2**20 < need:
        return None  # even the most it could be raised to would not be enough
    return (f"macOS lets the GPU use only part of this Mac's {total / 2**30:.0f} GB; "
            f"`sudo sysctl iogpu.wired_limit_mb={limit_mb}` raises that limit until the next "
            "reboot, leaving less memory for the system and other programs.")
