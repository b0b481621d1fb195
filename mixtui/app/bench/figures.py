"""What a benchmark asks and what it found: the request and its checks, the rows and their
derived fields, the extrapolation to the full depth, the sentences that answer the question.
Arithmetic on figures only: no MLX, no processes (the runner, `runner.py`, measures)."""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixtui.app.bench import (
    DEFAULT_GEN_TOKENS,
    DEFAULT_PERPLEXITY_TOKENS,
    DEFAULT_PROMPT_TOKENS,
    DEFAULT_RUNS,
)
from mixtui.app.bench.machine import Machine
from mixtui.core.errors import MixtuiError, UsageError
from mixtui.engine.messages import RunFigures
from mixtui.families.depth import config_with_layers
from mixtui.registry.spec import ModelSpec

ANSWER_TOKENS = 300  # "the wait a person feels": a 300-token answer


@dataclass(frozen=True)
class BenchRequest:
    """What to measure; checked by `check_request` before anything starts."""

    models: tuple[str, ...]  # registry keys, Hub repo ids or folders
    synthetic: bool = False
    layers: int | None = None  # synthetic: run the first N layers, scale to the full depth
    prompt: str | None = None  # None: the built-in prompt (random ids for synthetic models)
    prompt_tokens: int | None = DEFAULT_PROMPT_TOKENS  # cut or repeat the prompt to this
    gen_tokens: int = DEFAULT_GEN_TOKENS
    runs: int = DEFAULT_RUNS
    experts_per_token: tuple[int, ...] = ()  # (): each model's own number
    perplexity: Path | None = None
    perplexity_tokens: int = DEFAULT_PERPLEXITY_TOKENS
    force: bool = False  # load models that do not fit the memory budget
    probe: bool = False  # measure the bandwidth again instead of the cached figure

    @property
    def context(self) -> int:
        """The KV cache a run fills: the prompt and the generated tokens."""
        return (self.prompt_tokens or DEFAULT_PROMPT_TOKENS) + self.gen_tokens


def check_request(request: BenchRequest) -> None:
    """Bad values, refused in one sentence each (exit code 2) before any process starts."""
    def bad(option: str, value: object, rule: str) -> UsageError:
        return UsageError(f"{option} {rule}, not {value}.", code="bad-option",
                          facts={"option": option, "value": value})

    if not request.models or any(not m.strip() for m in request.models):
        raise UsageError("--models names no model; give keys from `mixtui models`, separated "
                         "by commas.", code="bad-option", facts={"option": "--models"})
    if request.gen_tokens < 2:
        raise bad("--gen-tokens", request.gen_tokens, "must be at least 2 (decode speed is "
                  "measured between the first token and the last)")
    if request.runs < 1:
        raise bad("--runs", request.runs, "must be at least 1")
    if request.prompt_tokens is not None and request.prompt_tokens < 1:
        raise bad("--prompt-tokens", request.prompt_tokens, "must be at least 1")
    if request.layers is not None:
        if not request.synthetic:
            raise UsageError("--layers runs part of a synthetic model; add --synthetic, or "
                             "leave --layers out to time the model on disk.",
                             code="bad-option", facts={"option": "--layers"})
        if request.layers < 2:
            raise bad("--layers", request.layers, "must be at least 2 (the first N layers and "
                      "the first N/2 tell the layers' time from the rest's)")
    for k in request.experts_per_token:
        if k < 1:
            raise bad("--experts-per-token", k, "must be at least 1")
    if request.perplexity_tokens < 2:
        raise bad("--perplexity-tokens", request.perplexity_tokens, "must be at least 2")
    if request.prompt is not None and not request.prompt.strip():
        raise UsageError("The prompt is empty; give some text.", code="bad-option",
                         facts={"option": "--prompt"})


# -- figures ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spread:
    """A figure over runs: the median, with the lowest and the highest."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))

    def map(self, fn: Callable[[float], float]) -> Spread:
        """`fn` of each figure, kept in order (a decreasing `fn` swaps low and high)."""
        a, b = fn(self.low), fn(self.high)
        return Spread(fn(self.median), min(a, b), max(a, b))


@dataclass(frozen=True)
class BenchRow:
    """One model at one experts-per-token value: measured, or failed with `error`."""

    model: str  # registry key (or the name as given)
    name: str
    experts_per_token: int | None  # None: a dense model
    synthetic: bool
    layers_total: int
    layers_run: int
    extrapolated: bool  # times and memory scaled from layers_run (and half) to the full
    total_params: int
    active_params: int
    weight_bytes: int
    kv_bytes_per_token: int
    bytes_per_token: int  # what one decoded token reads: active weights + KV cache
    ttft_s: Spread | None = None
    prompt_tps: Spread | None = None
    decode_tps: Spread | None = None
    peak_memory_bytes: int | None = None
    bandwidth_gbps: float | None = None
    roofline_fraction: float | None = None
    answer_300_s: float | None = None
    perplexity: float | None = None
    perplexity_note: str = ""  # why there is none, or how it was scored
    error: str | None = None
    error_code: str | None = None
    dense_baseline: bool = False  # a dense model: what the sentences compare against
    own_k: bool = True  # at the model's own experts per token (or dense)

    @property
    def ok(self) -> bool:
        return self.error is None and self.decode_tps is not None


@dataclass(frozen=True)
class Progress:
    """Where the run is, for a progress line or bar."""

    model: str
    index: int  # this model's place (1-based) among `of`
    of: int
    stage: str  # "probe", "loading", "building", "warm-up", "run", "perplexity"
    detail: str = ""  # e.g. "2 of 32 layers", "experts per token 2"
    run: int = 0
    runs: int = 0
    done: int = 0
    total: int = 0

    def line(self) -> str:
        if self.stage == "probe":
            return "measuring this machine's memory bandwidth (once; --probe measures again)"
        where = f"[{self.index}/{self.of}] {self.model}" if self.of else self.model
        what = self.stage
        if self.stage == "run":
            what = f"run {self.run}/{self.runs}"
        if self.total:
            what += f", {self.done}/{self.total}"
            what += " tokens" if self.stage in ("warm-up", "run", "perplexity") else ""
        return f"{where}" + (f" ({self.detail})" if self.detail else "") + f": {what}"


@dataclass(frozen=True)
class BenchReport:
    machine: Machine
    prompt_tokens: int
    gen_tokens: int
    runs: int
    prompt: str  # the prompt's text, or "random token ids" for synthetic models
    rows: tuple[BenchRow, ...]
    findings: tuple[str, ...]
    cancelled: bool = False
    started: float = field(default_factory=time.time)


def extrapolate(short: float, long: float, units_short: float, units_long: float,
                units_full: float) -> float:
    """A time measured at two depths, extended linearly to the full depth.

    t(u) = fixed + u × per_unit, where u is how much of the layers ran (their bytes read per
    token: equal layers count alike, a dense first layer or an attention-only one less):
    the embeddings, the head and the per-step overhead are the fixed part, which no single
    depth can tell apart from the layers'. Noise can make the two depths' difference
    negative; the layers are then taken to cost nothing more (per_unit 0)."""
    if units_long <= units_short:
        raise ValueError("the long run must have more layers than the short one")
    per_unit = max(0.0, (long - short) / (units_long - units_short))
    fixed = short - units_short * per_unit
    return fixed + units_full * per_unit


def scale_memory(peaks: tuple[int, int], weights: tuple[int, int, int],
                 layers: tuple[int, int, int]) -> int:
    """The peak memory at the full depth from the peaks of two partial runs.

    The weights are known exactly at every depth (the checkpoint's layout); the rest of a
    peak (the KV cache, and the activations MLX holds while it evaluates a prompt's whole
    graph at once) grows with the layers: it is extended linearly like the times."""
    (peak_half, peak_run), (w_half, w_run, w_full) = peaks, weights
    n_half, n_run, n_full = layers
    rest = extrapolate(peak_half - w_half, peak_run - w_run, n_half, n_run, n_full)
    return int(w_full + rest)


@dataclass(frozen=True)
class Depths:
    """How a model is run: all its layers, or its first `run` (the figures' source) and its
    first `half` (= run // 2), which together tell the layers' time from the rest's."""

    total: int
    run: int
    half: int | None = None  # None: the full depth runs; nothing is extrapolated

    @classmethod
    def of(cls, total: int, layers: int | None) -> Depths:
        if layers is None or layers >= total:
            return cls(total, total)
        return cls(total, layers, max(1, layers // 2))

    @property
    def extrapolated(self) -> bool:
        return self.half is not None

    @property
    def runs(self) -> tuple[int, ...]:
        """The depths to run, the deepest first (the memory fit is its)."""
        return (self.run,) if self.half is None else (self.run, self.half)


def spec_at(spec: ModelSpec, layers: int) -> ModelSpec:
    """The same model cut to its first `layers` layers (for its figures at that depth)."""
    family = spec.family
    assert family is not None
    config = config_with_layers(spec.hf_config, layers)
    return dataclasses.replace(spec, config=config, geometry=family.geometry(config))


def _active_bytes(spec: ModelSpec, k: int | None) -> dict[int, int]:
    inv, family = spec.inventory, spec.family
    if inv is None or family is None:  # no family: the geometry's parameter arithmetic
        share = spec.active_params(k) / max(spec.total_params(), 1)
        return {-1: int(spec.weight_bytes() * share)}
    return inv.layer_active_bytes(spec.quantization, spec.geometry.dtype_bytes,
                                  family.quant_overrides, k)


def row_figures(spec: ModelSpec, k: int | None, depths: Depths, synthetic: bool,
                measured: Mapping[int, Sequence[RunFigures]], prompt_tokens: int,
                gen_tokens: int, bandwidth_gbps: float | None, weight_bytes: int | None = None,
                perplexity: float | None = None, perplexity_note: str = "") -> BenchRow:
    """A row from its runs: `measured` maps each depth run to its timed runs."""
    layers = _active_bytes(spec, k)
    fixed_bytes = layers.get(-1, 0)

    def units(n: int) -> float:  # bytes per token of the first n layers
        return float(sum(b for i, b in layers.items() if 0 <= i < n))

    active_weights = fixed_bytes + units(depths.total)
    decode_context = prompt_tokens + gen_tokens // 2  # the KV cache a decode step reads, on average
    bytes_per_token = int(active_weights + spec.cache_bytes(decode_context))
    base = BenchRow(
        model=spec.key, name=spec.name, experts_per_token=k, synthetic=synthetic,
        layers_total=depths.total, layers_run=depths.run,
        extrapolated=depths.extrapolated, total_params=spec.total_params(),
        active_params=spec.active_params(k), weight_bytes=weight_bytes or spec.weight_bytes(),
        kv_bytes_per_token=spec.kv_bytes_per_token(), bytes_per_token=bytes_per_token,
        perplexity=perplexity, perplexity_note=perplexity_note,
        dense_baseline=not spec.geometry.is_moe,
        own_k=k is None or k == spec.geometry.experts_per_token)
    deep = measured[depths.run]
    ttft = Spread.of([r.ttft_s for r in deep])
    step = Spread.of([1 / r.decode_tps for r in deep if r.decode_tps > 0] or [math.inf])
    peak = max(r.peak_memory_bytes for r in deep)
    if depths.half is not None:
        peak_half = max(r.peak_memory_bytes for r in measured[depths.half])
        half = measured[depths.half]
        ttft_half = Spread.of([r.ttft_s for r in half])
        step_half = Spread.of([1 / r.decode_tps for r in half if r.decode_tps > 0] or [math.inf])
        u_half, u_run, u_full = units(depths.half), units(depths.run), units(depths.total)

        def scaled(half_median: float, deep_runs: list[float]) -> Spread:
            # each run of the deeper depth against the shallower one's median: the spread
            # is the deeper runs', the median the two medians' (extrapolate is monotonic)
            return Spread.of([extrapolate(half_median, x, u_half, u_run, u_full)
                              for x in deep_runs])

        ttft = scaled(ttft_half.median, [r.ttft_s for r in deep])
        step = scaled(step_half.median, [1 / r.decode_tps for r in deep if r.decode_tps > 0]
                      or [math.inf])
        peak = scale_memory((peak_half, peak), (spec_at(spec, depths.half).weight_bytes(),
                                                spec_at(spec, depths.run).weight_bytes(),
                                                spec.weight_bytes()),
                            (depths.half, depths.run, depths.total))
    decode = step.map(lambda s: 1 / s if s > 0 and math.isfinite(s) else 0.0)
    prompt = ttft.map(lambda t: prompt_tokens / t if t > 0 else 0.0)
    bandwidth = bytes_per_token * decode.median / 1e9
    return dataclasses.replace(
        base, ttft_s=ttft, prompt_tps=prompt, decode_tps=decode, peak_memory_bytes=peak,
        bandwidth_gbps=bandwidth,
        roofline_fraction=bandwidth / bandwidth_gbps if bandwidth_gbps else None,
        answer_300_s=(ttft.median + ANSWER_TOKENS / decode.median if decode.median > 0
                      else None))


def speed_record(row: BenchRow) -> dict[str, Any]:
    assert row.decode_tps is not None
    return {"model": row.model, "decode_tps": row.decode_tps.median,
            "synthetic": row.synthetic, "extrapolated": row.extrapolated,
            "layers_run": row.layers_run, "layers_total": row.layers_total,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def failed_row(spec: ModelSpec | None, name: str, k: int | None, error: MixtuiError | str,
               synthetic: bool, depths: Depths | None = None) -> BenchRow:
    """A row that says why it has no numbers."""
    reason = error if isinstance(error, str) else error.render()
    code = None if isinstance(error, str) else error.code
    if spec is None:
        return BenchRow(name, name, k, synthetic, 0, 0, False, 0, 0, 0, 0, 0, error=reason,
                        error_code=code)
    total = spec.geometry.layers
    d = depths or Depths(total, total)
    return BenchRow(spec.key, spec.name, k, synthetic, total, d.run, d.extrapolated,
                    spec.total_params(), spec.active_params(k), spec.weight_bytes(),
                    spec.kv_bytes_per_token(), 0, error=reason, error_code=code,
                    dense_baseline=not spec.geometry.is_moe)


# -- the answer in words ---------------------------------------------------------------------
def experts_per_token(k: int) -> str:
    return f"{k} expert{'s' if k != 1 else ''} per token"


def _x(ratio: float) -> str:
    return f"{ratio:.2f}" if ratio < 10 else f"{ratio:.0f}"


def _label(row: BenchRow, with_k: bool) -> str:
    if with_k and row.experts_per_token is not None:
        n = row.experts_per_token
        return f"{row.name} with {experts_per_token(n)}"
    return row.name


def findings(rows: Sequence[BenchRow]) -> tuple[str, ...]:
    """What the measured rows say, in sentences: each model against the first dense model
    (or the first row), and each experts-per-token value against the model's own number."""
    good = [r for r in rows if r.ok and r.decode_tps is not None]
    if not good:
        return ("No model was measured; the rows above say why.",) if rows else ()
    said: list[str] = []
    several_k = len({(r.model, r.experts_per_token) for r in good}) > len({r.model for r in good})
    base = next((r for r in good if r.dense_baseline), good[0])
    assert base.decode_tps is not None and base.peak_memory_bytes
    for row in good:
        if row.model == base.model:
            continue
        assert row.decode_tps is not None and row.peak_memory_bytes is not None
        speed = row.decode_tps.median / base.decode_tps.median
        said.append(
            f"{_label(row, several_k)} decodes at {_x(speed)} × {_label(base, several_k)}'s "
            f"speed (active parameters predict {_x(base.active_params / row.active_params)}, "
            f"total parameters {_x(base.total_params / row.total_params)}) and needs "
            f"{_x(row.peak_memory_bytes / base.peak_memory_bytes)} × its memory.")
    by_model: dict[str, list[BenchRow]] = {}
    for row in good:
        by_model.setdefault(row.model, []).append(row)
    for model_rows in by_model.values():
        if len(model_rows) < 2:
            continue
        # against the model's own experts per token where it ran, else its first row
        ref = next((r for r in model_rows if r.own_k), model_rows[0])
        for row in model_rows:
            if row is ref:
                continue
            assert row.decode_tps is not None and ref.decode_tps is not None
            speed = row.decode_tps.median / ref.decode_tps.median
            assert row.experts_per_token is not None
            text = (f"With {experts_per_token(row.experts_per_token)} {row.name} decodes at "
                    f"{_x(speed)} × its speed with {ref.experts_per_token} (active parameters "
                    f"predict {_x(ref.active_params / row.active_params)})")
            if row.perplexity is not None and ref.perplexity is not None:
                text += (f", and its perplexity is {row.perplexity:.2f} against "
                         f"{ref.perplexity:.2f}")
            said.append(text + ".")
    if len(good) == 1:
        row = good[0]
        assert row.decode_tps is not None
        said.append(f"{row.name} decodes at {row.decode_tps.median:.1f} tokens/s here; a "
                    f"{ANSWER_TOKENS}-token answer takes {row.answer_300_s or 0:.1f} s.")
    if any(r.extrapolated for r in good):
        said.append("Extrapolated rows ran their first N layers and their first N/2, and "
                    "scale the times and the memory to the full depth (docs/performance.md).")
    return tuple(said)
