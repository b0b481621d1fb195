"""The bytes an offloading engine would move: one routed expert of a registry model at its
quantization, and what every token reads besides the experts it was routed to."""

from __future__ import annotations

from dataclasses import dataclass

from mixtui.app.bench.machine import probe_bandwidth, published_bandwidth
from mixtui.core.errors import UsageError
from mixtui.registry.spec import ModelSpec


@dataclass(frozen=True)
class ExpertSize:
    model: str  # registry key
    name: str
    expert_bytes: float  # one routed expert of one MoE layer
    resident_bytes_per_token: int  # the weights one token reads at the model's own k
    moe_layers: int
    num_experts: int
    top_k: int


def expert_size(spec: ModelSpec, k: int | None = None) -> ExpertSize:
    """From the model's inventory: the routed bytes of a layer at k = E less those at k = 1,
    over E − 1 (the inventory counts k of E routed experts per token)."""
    g, inv, family = spec.geometry, spec.inventory, spec.family
    if not g.is_moe or inv is None or family is None or g.experts < 2:
        raise UsageError(f"{spec.key} is not a mixture-of-experts model of a family mixtui "
                         "knows, so it has no expert size; choose another --expert-model.",
                         code="bad-option", facts={"option": "--expert-model",
                                                   "value": spec.key})
    every = inv.layer_active_bytes(spec.quantization, g.dtype_bytes, family.quant_overrides,
                                   g.experts)
    one = inv.layer_active_bytes(spec.quantization, g.dtype_bytes, family.quant_overrides, 1)
    moe = g.moe_layers
    per_layer = [(every.get(i, 0) - one.get(i, 0)) / (g.experts - 1) for i in moe]
    k = k or g.experts_per_token
    resident = inv.active_weight_bytes(spec.quantization, g.dtype_bytes, family.quant_overrides,
                                       k)
    return ExpertSize(spec.key, spec.name, sum(per_layer) / len(per_layer), resident, len(moe),
                      g.experts, k)


def default_memory_gbps() -> tuple[float | None, str]:
    """This machine's memory bandwidth and where the figure comes from: the probe `mixtui
    bench` measured and kept, else Apple's published figure for the chip, else none."""
    probe = probe_bandwidth()  # the kept figure only: measuring needs an engine
    if probe and probe.get("gbps"):
        return float(probe["gbps"]), "this machine's measured bandwidth (mixtui bench's probe)"
    published = published_bandwidth()
    if published:
        chip, gbps = published
        return float(gbps), f"Apple's published figure for the {chip}"
    return None, "no memory bandwidth known (give --memory-bandwidth, or run `mixtui bench`)"
