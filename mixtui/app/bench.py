"""`mixtui bench` and the compare screen: the same prompt on several models, side by side.

One engine process per model, one at a time, so that each model's memory is given back
before the next one loads. Real models load from disk; synthetic ones (`synthetic=True`)
are built in the engine from their registry geometry with random weights in the real
checkpoint's layout, and may run only their first N layers: the runner then also runs the
first N/2 and scales the times and the memory to the full depth (`extrapolate`).

Everything here but `BenchRunner.run` is arithmetic on figures, without MLX or processes:
the rows' derived fields, the extrapolation, the sentences that answer the question.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixtui.app.loader import Refused, Start, Unavailable, decide
from mixtui.app.machine import Machine, describe_machine, probe_bandwidth, record_speeds
from mixtui.core.errors import MixtuiError, ModelNotLocal, UsageError
from mixtui.core.paths import log_dir
from mixtui.engine.bench import DEFAULT_PROMPT
from mixtui.engine.messages import (
    Bench,
    BenchMeasured,
    BenchProgress,
    EngineExited,
    Event,
    Failed,
    Loading,
    LoadSynthetic,
    Perplexity,
    PerplexityMeasured,
    Ready,
    RunFigures,
)
from mixtui.families.depth import config_with_layers
from mixtui.planner import plan
from mixtui.registry.local import resolve
from mixtui.registry.spec import ModelSpec

if TYPE_CHECKING:  # the engine's process machinery loads with the first engine
    from mixtui.engine.client import EngineProcess

ANSWER_TOKENS = 300  # "the wait a person feels": a 300-token answer
DEFAULT_PROMPT_TOKENS = 128
DEFAULT_GEN_TOKENS = 64
DEFAULT_RUNS = 3
DEFAULT_PERPLEXITY_TOKENS = 4096


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


def scale_memory(peak_short: int, weights_short: int, weights_full: int, cache_short: int,
                 cache_full: int) -> int:
    """The peak of a partial run plus what the missing layers would hold: their weights and
    their share of the KV cache (activations are reused layer after layer: they do not grow
    with depth)."""
    return peak_short + (weights_full - weights_short) + (cache_full - cache_short)


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


def _spec_at(spec: ModelSpec, layers: int) -> ModelSpec:
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
        half = measured[depths.half]
        ttft_half = Spread.of([r.ttft_s for r in half])
        step_half = Spread.of([1 / r.decode_tps for r in half if r.decode_tps > 0] or [math.inf])
        u_half, u_run, u_full = units(depths.half), units(depths.run), units(depths.total)

        def scaled(a: Spread, b: Spread) -> Spread:
            return Spread(extrapolate(a.median, b.median, u_half, u_run, u_full),
                          extrapolate(a.low, b.low, u_half, u_run, u_full),
                          extrapolate(a.high, b.high, u_half, u_run, u_full))

        ttft, step = scaled(ttft_half, ttft), scaled(step_half, step)
        part = _spec_at(spec, depths.run)
        context = prompt_tokens + gen_tokens
        peak = scale_memory(peak, part.weight_bytes(), spec.weight_bytes(),
                            part.cache_bytes(context), spec.cache_bytes(context))
    decode = step.map(lambda s: 1 / s if s > 0 and math.isfinite(s) else 0.0)
    prompt = ttft.map(lambda t: prompt_tokens / t if t > 0 else 0.0)
    bandwidth = bytes_per_token * decode.median / 1e9
    return dataclasses.replace(
        base, ttft_s=ttft, prompt_tps=prompt, decode_tps=decode, peak_memory_bytes=peak,
        bandwidth_gbps=bandwidth,
        roofline_fraction=bandwidth / bandwidth_gbps if bandwidth_gbps else None,
        answer_300_s=(ttft.median + ANSWER_TOKENS / decode.median if decode.median > 0
                      else None))


def _speed_record(row: BenchRow) -> dict[str, Any]:
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


# -- running ---------------------------------------------------------------------------------
class Cancelled(Exception):
    """The run was stopped (ctrl+c, or the compare screen's cancel)."""


@dataclass
class _Job:
    """One model of the request, resolved: what to send its engine."""

    name: str
    spec: ModelSpec | None
    error: MixtuiError | None = None
    where: Path | None = None  # a model on disk
    depths: Depths | None = None


class BenchRunner:
    """Runs a BenchRequest: `run()` blocks (call it from a thread in a UI); `cancel()` may be
    called from any thread and ends the current engine at once (its memory goes back)."""

    def __init__(self, request: BenchRequest,
                 progress: Callable[[Progress], None] = lambda _: None,
                 on_row: Callable[[BenchRow], None] = lambda _: None,
                 registry: dict[str, ModelSpec] | None = None) -> None:
        check_request(request)
        self.request = request
        self._progress = progress
        self._on_row = on_row
        self._registry = registry
        self._lock = threading.Lock()
        self._engine: EngineProcess | None = None
        self._cancelled = False
        self.rows: list[BenchRow] = []
        self.perplexity_text: str | None = None
        if request.perplexity is not None:
            self.perplexity_text = _read_text(request.perplexity)

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            engine = self._engine
        if engine is not None:
            engine.cancel()
            engine.close(timeout=0.5)

    def run(self) -> BenchReport:
        """Measure every model; ctrl+c (KeyboardInterrupt) or cancel() ends it early with the
        rows finished so far."""
        request = self.request
        machine = None
        try:
            jobs = [self._resolve(name) for name in request.models]
            def measuring() -> EngineProcess:
                self._progress(Progress("bandwidth probe", 0, 0, "probe"))
                return self._start_engine()

            machine = describe_machine(probe_bandwidth(remeasure=request.probe,
                                                       engine=measuring))
            self._bandwidth = machine.bandwidth_gbps
            self._end_engine()
            for index, job in enumerate(jobs, 1):
                if self._cancelled:
                    break
                self._run_job(job, index, len(jobs))
        except (KeyboardInterrupt, Cancelled):
            self.cancel()
        finally:
            self._end_engine()
        if machine is None:
            machine = describe_machine(None)
        record_speeds([_speed_record(r) for r in self.rows if r.ok and r.own_k])
        prompt = ("random token ids" if request.synthetic
                  else "the built-in prompt" if request.prompt is None else request.prompt)
        return BenchReport(machine, request.prompt_tokens or 0, request.gen_tokens,
                           request.runs, prompt, tuple(self.rows), findings(self.rows),
                           cancelled=self._cancelled)

    # -- one model -----------------------------------------------------------------------------
    def _resolve(self, name: str) -> _Job:
        request = self.request
        if request.synthetic:
            try:
                spec = resolve(name, self._registry)
            except MixtuiError as exc:
                return _Job(name, None, exc)
            if spec.family is None:
                return _Job(name, spec, UsageError(
                    f"{spec.name} has no family in mixtui, so it cannot be built with random "
                    "weights; pick a model of a family docs/families.md lists.",
                    code="unknown-family"))
            depths = Depths.of(spec.geometry.layers, request.layers)
            built = _spec_at(spec, depths.run)
            fit = plan(built, context=request.context, registry=self._registry,
                       from_disk=False)
            if fit.verdict == "does-not-fit" and not request.force:
                hint = ("" if request.layers else
                        "; time it without the full model with --layers 2 (the first layers, "
                        "scaled to the full depth)")
                return _Job(name, spec, UsageError(
                    fit.sentence(hint=False).rstrip(".") + hint + ".", code="does-not-fit"),
                    depths=depths)
            return _Job(name, spec, depths=depths)
        outcome = decide(name, context=request.context, force=request.force,
                         registry=self._registry, offer_download=False)
        if isinstance(outcome, Unavailable):
            error = outcome.error
            if isinstance(error, ModelNotLocal) and outcome.spec is not None \
                    and outcome.spec.family is not None:
                error = ModelNotLocal(error.render().rstrip(".") + ", or time it without the "
                                      "download with --synthetic.", code=error.code,
                                      facts=dict(error.facts))
            return _Job(name, outcome.spec, error)
        if isinstance(outcome, Refused):
            return _Job(name, outcome.spec, outcome.fit.error())
        assert isinstance(outcome, Start)
        total = outcome.spec.geometry.layers
        return _Job(name, outcome.spec, where=outcome.where, depths=Depths(total, total))

    def _ks(self, spec: ModelSpec) -> list[int | None]:
        """The experts-per-token values of a model's rows (None: a dense model's one row)."""
        if not spec.geometry.is_moe:
            return [None]
        return list(self.request.experts_per_token or (spec.geometry.experts_per_token,))

    def _run_job(self, job: _Job, index: int, of: int) -> None:
        spec = job.spec
        if job.error is not None or spec is None:
            assert job.error is not None
            ks = self._ks(spec) if spec is not None else [None]
            for k in ks:
                self._add(failed_row(spec, job.name, k, job.error, self.request.synthetic,
                                     job.depths))
            return
        assert job.depths is not None
        depths = job.depths
        ks = self._ks(spec)
        errors: dict[int | None, MixtuiError] = {k: e for k in ks
                                                 if (e := _bad_k(spec, k)) is not None}
        good = [k for k in ks if k not in errors]
        measured: dict[int | None, dict[int, list[RunFigures]]] = {k: {} for k in good}
        perplexities: dict[int | None, tuple[float | None, str]] = {}
        weight_bytes = None
        for depth in depths.runs if good else ():
            detail = f"{depth} of {depths.total} layers" if depth != depths.total else ""
            ready = self._load(spec, job, depth, index, of, detail)
            if isinstance(ready, MixtuiError):
                errors.update({k: ready for k in good if k not in errors})
                break
            if depth == depths.total and not self.request.synthetic:
                weight_bytes = ready.info.weight_bytes
            result = self._measure(spec, good, index, of, detail)
            if isinstance(result, MixtuiError):
                errors.update({k: result for k in good if k not in errors})
                break
            for k, runs in zip(good, result, strict=True):
                measured[k][depth] = runs
                if depth == depths.run:
                    label = ", ".join(x for x in (detail, experts_per_token(k) if k
                                                  else "") if x)
                    perplexities[k] = self._perplexity(spec, k, index, of, label)
            self._end_engine()
        for k in ks:
            if k in errors:
                self._add(failed_row(spec, job.name, k, errors[k], self.request.synthetic,
                                     depths))
                continue
            ppl, note = perplexities.get(k, (None, ""))
            self._add(row_figures(spec, k, depths, self.request.synthetic, measured[k],
                                  self.request.prompt_tokens or DEFAULT_PROMPT_TOKENS,
                                  self.request.gen_tokens, self._bandwidth, weight_bytes,
                                  ppl, note))

    _bandwidth: float | None = None

    def _add(self, row: BenchRow) -> None:
        self.rows.append(row)
        self._on_row(row)

    def _perplexity(self, spec: ModelSpec, k: int | None, index: int, of: int, label: str
                    ) -> tuple[float | None, str]:
        if self.perplexity_text is None:
            return None, ""
        if self.request.synthetic:
            return None, "left out: random weights make perplexity meaningless"
        engine = self._engine
        assert engine is not None
        engine.send(Perplexity(3, self.perplexity_text, self.request.perplexity_tokens, k))
        event = self._wait(engine, spec, index, of, label, (PerplexityMeasured,))
        if isinstance(event, MixtuiError):
            return None, f"not measured: {event}"
        assert isinstance(event, PerplexityMeasured)
        if event.tokens == 0:
            return None, "not measured: stopped"
        return event.perplexity, f"{event.tokens} tokens in windows of {event.chunk}"

    def _load(self, spec: ModelSpec, job: _Job, depth: int, index: int, of: int,
              detail: str) -> Ready | MixtuiError:
        assert job.depths is not None
        if self.request.synthetic:
            config = (config_with_layers(spec.hf_config, depth) if depth != job.depths.total
                      else dict(spec.hf_config))
            command: Any = LoadSynthetic(spec.key, config, spec.quantization)
        else:
            from mixtui.engine.messages import Load  # the same module: grouped for reading

            command = Load(str(job.where), spec.key, self.request.context + 16)
        engine = self._start_engine()
        engine.send(command)
        event = self._wait(engine, spec, index, of, detail, (Ready,))
        if isinstance(event, MixtuiError):
            return event
        assert isinstance(event, Ready)
        return event

    def _measure(self, spec: ModelSpec, ks: list[int | None], index: int, of: int,
                 detail: str) -> list[list[RunFigures]] | MixtuiError:
        """Every value's runs, interleaved in one engine (see messages.Bench)."""
        engine = self._engine
        assert engine is not None
        request = self.request
        prompt = None if request.synthetic else (request.prompt or DEFAULT_PROMPT)
        engine.send(Bench(2, prompt, request.prompt_tokens, request.gen_tokens, request.runs,
                          tuple(ks)))
        found: list[list[RunFigures]] = []
        while len(found) < len(ks):
            event = self._wait(engine, spec, index, of, detail, (BenchMeasured,))
            if isinstance(event, MixtuiError):
                return event
            assert isinstance(event, BenchMeasured)
            if event.cancelled:
                raise Cancelled
            found.append(list(event.runs))
        return found

    def _wait(self, engine: EngineProcess, spec: ModelSpec, index: int, of: int, detail: str,
              wanted: tuple[type, ...]) -> Event | MixtuiError:
        """Events until one of `wanted` (progress forwarded); a failure as its error."""
        for event in engine.events():
            if self._cancelled:
                raise Cancelled
            if isinstance(event, Loading):
                stage = "building" if "random" in event.stage else "loading"
                self._progress(Progress(spec.key, index, of, stage, detail,
                                        done=event.done, total=event.total))
            elif isinstance(event, BenchProgress):
                k = experts_per_token(event.experts_per_token) \
                    if event.experts_per_token and spec.geometry.is_moe else ""
                self._progress(Progress(spec.key, index, of, event.stage,
                                        ", ".join(x for x in (detail, k) if x), event.run,
                                        event.runs, event.tokens, event.total))
            elif isinstance(event, wanted):
                return event
            elif isinstance(event, Failed):
                return event.error()
            elif isinstance(event, EngineExited):
                if self._cancelled:
                    raise Cancelled
                return MixtuiError(event.reason.replace("load the model again to go on",
                                                        "the other models go on"),
                                   code="engine-exited", facts={"engine_exit": event.code})
        raise Cancelled if self._cancelled else MixtuiError("The engine stopped answering.")

    def _start_engine(self) -> EngineProcess:
        from mixtui.engine.client import EngineProcess  # deferred: multiprocessing

        self._end_engine()
        engine = EngineProcess(log_dir() / "bench-engine.log")
        with self._lock:
            if self._cancelled:
                engine.close(timeout=0.5)
                raise Cancelled
            self._engine = engine
        return engine

    def _end_engine(self) -> None:
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.close(timeout=2.0)


def _bad_k(spec: ModelSpec, k: int | None) -> MixtuiError | None:
    """Why `spec` cannot route to k experts (its family's limit), or None."""
    family = spec.family
    if k is None or family is None:
        return None
    most = family.max_experts_per_token(spec.hf_config)
    if 1 <= k <= most:
        return None
    note = family.experts_per_token_note(spec.hf_config)
    return UsageError(f"{spec.name} routes each token to 1 to {most} experts, not {k}."
                      + (f" {note}" if note else ""), code="experts-per-token",
                      facts={"most": most, "asked": k})


def read_text_file(path: Path, option: str) -> str:
    """A UTF-8 text file named by `option` (--perplexity, --prompt-file), or one sentence
    that says what is wrong with it."""
    try:
        return path.expanduser().read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"No such file: {path}; check the path given to {option}.",
                         code="bad-option", facts={"option": option}) from None
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise UsageError(f"Cannot read {path} ({why}); give {option} a UTF-8 text file.",
                         code="bad-option", facts={"option": option}) from None


def _read_text(path: Path) -> str:
    text = read_text_file(path, "--perplexity")
    if len(text.split()) < 2:
        raise UsageError(f"{path} has too little text to score; give a longer one.",
                         code="bad-option", facts={"option": "--perplexity"})
    return text
