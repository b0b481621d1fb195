"""`mixtui analyze TRACE.jsonl`: what a trace's routing means — load, the Mixtral paper's
Table 5, co-activation, router confidence, an expert-cache replay and the offloading speed it
implies (docs/analysis.md). A thin view on `app/analysis/`; no MLX on this path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mixtui.app.analysis.report import Format, build_report, render
from mixtui.app.analysis.sizes import ExpertSize, default_memory_gbps, expert_size
from mixtui.app.analysis.stats import Agreement, agreement, analyze
from mixtui.app.analysis.tracefile import TraceRouting, read_routing
from mixtui.cli.output import check_out, write_report
from mixtui.core.errors import ModelNotFound, UsageError


@dataclass(frozen=True)
class AnalyzeArgs:
    trace: Path
    compare: Path | None = None
    layers: str | None = None
    cache_gbps: float | None = None
    memory_gbps: float | None = None
    expert_model: str | None = None
    fmt: Format = "table"
    out: Path | None = None


def parse_layers(text: str | None, moe_layers: tuple[int, ...]) -> tuple[int, ...] | None:
    """"0,15,31", "0-3", "first,middle,last" (model layer indices) -> positions in
    `moe_layers`, in order; None for all."""
    if not text:
        return None
    count = len(moe_layers)
    named = {"first": moe_layers[0], "middle": moe_layers[(count - 1) // 2],
             "last": moe_layers[-1]}
    wanted: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        try:
            if part in named:
                layers = [named[part]]
            elif "-" in part.lstrip("-"):
                low, high = (int(x) for x in part.split("-", 1))
                layers = [i for i in moe_layers if low <= i <= high]
            else:
                layers = [int(part)]
        except ValueError:
            raise UsageError(f"--layers takes layer numbers, ranges and first, middle, last "
                             f"separated by commas, such as 0,15,31 or 0-3, not {text!r}.",
                             code="bad-option", facts={"option": "--layers"}) from None
        for i in layers:
            if i not in moe_layers:
                raise UsageError(f"Layer {i} is not one of the trace's MoE layers "
                                 f"({_span(moe_layers)}); choose among those with --layers.",
                                 code="bad-option", facts={"option": "--layers", "layer": i})
            if i not in wanted:
                wanted.append(i)
    return tuple(sorted(moe_layers.index(i) for i in wanted))


def _span(layers: tuple[int, ...]) -> str:
    if list(layers) == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}–{layers[-1]}"
    return ", ".join(map(str, layers))


def _sizes(trace: TraceRouting, key: str | None) -> tuple[ExpertSize | None, str]:
    """The expert size to project onto, or None and why not."""
    from mixtui.registry.loader import load_registry  # deferred: only the projection needs it

    registry = load_registry()
    r = trace.routing
    if key is None:
        spec = registry.get(trace.model)
        if spec is None:
            return None, (f"no offloading projection: the trace's model {trace.model!r} is not "
                          "in the registry; give --expert-model KEY (see `mixtui models`) for "
                          "that model's expert size.")
        return expert_size(spec, r.top_k), ""
    spec = registry.get(key)
    if spec is None:
        raise ModelNotFound(f"No model {key!r} in the registry; choose a key from `mixtui "
                            "models` for --expert-model.", facts={"model": key})
    sizes = expert_size(spec)
    if (sizes.num_experts, sizes.top_k) != (r.num_experts, r.top_k):
        raise UsageError(f"{key} routes each token to {sizes.top_k} of {sizes.num_experts} "
                         f"experts and the trace to {r.top_k} of {r.num_experts}; choose an "
                         "--expert-model with the trace's geometry.", code="bad-option",
                         facts={"option": "--expert-model", "value": key})
    return sizes, ""


def _compare(trace: TraceRouting, other_path: Path) -> Agreement:
    other = read_routing(other_path)
    try:
        return agreement(trace.routing, other.routing)
    except ValueError as exc:
        raise UsageError(f"Cannot compare {trace.path} with {other_path}: {exc}",
                         code="bad-compare") from None


def run(args: AnalyzeArgs) -> int:
    check_out(args.out)
    for option, value in (("--cache-bandwidth", args.cache_gbps),
                          ("--memory-bandwidth", args.memory_gbps)):
        if value is not None and not value > 0:
            raise UsageError(f"{option} takes a speed in GB/s above 0, not {value:g}.",
                             code="bad-option", facts={"option": option})
    trace = read_routing(args.trace)
    r = trace.routing
    shown = parse_layers(args.layers, r.layers)
    agreement_ = _compare(trace, args.compare) if args.compare is not None else None
    sizes, why_not = _sizes(trace, args.expert_model)
    memory, memory_source = args.memory_gbps, "given"
    if memory is None and sizes is not None:
        memory, memory_source = default_memory_gbps()
    result = analyze(r)
    report = build_report(result, trace.model or str(args.trace), str(args.trace),
                          scoring=r.scoring, sizes=sizes, memory_gbps=memory,
                          memory_source=memory_source, cache_gbps=args.cache_gbps,
                          agreement=agreement_, compare_source=str(args.compare or ""),
                          shown=shown, notes=(why_not,) if why_not else ())
    return 0 if write_report(render(report, args.fmt), args.out) else 1
