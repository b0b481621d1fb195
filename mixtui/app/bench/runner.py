"""`BenchRunner`: a BenchRequest measured, one engine process per model, one at a time."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixtui.app.bench import DEFAULT_PROMPT, DEFAULT_PROMPT_TOKENS
from mixtui.app.bench.figures import (
    BenchReport,
    BenchRequest,
    BenchRow,
    Depths,
    Progress,
    check_request,
    experts_per_token,
    failed_row,
    findings,
    row_figures,
    spec_at,
    speed_record,
)
from mixtui.app.bench.machine import describe_machine, probe_bandwidth, record_speeds
from mixtui.app.loader import Refused, Start, Unavailable, decide
from mixtui.core.errors import MixtuiError, ModelNotLocal, UsageError
from mixtui.core.paths import log_dir
from mixtui.engine.messages import (
    Bench,
    BenchMeasured,
    BenchProgress,
    EngineExited,
    Event,
    Failed,
    Load,
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
        self._bandwidth: float | None = None  # the probe's GB/s, once run() has it
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
        record_speeds([speed_record(r) for r in self.rows if r.ok and r.own_k])
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
            built = spec_at(spec, depths.run)
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
