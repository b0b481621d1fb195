"""The registry as a catalogue: one row per model with what a user chooses by (family,
parameters, size, local state, memory fit). Both front ends read it: `mixtui models` prints
it, the TUI's model picker shows it."""

from __future__ import annotations

from typing import Any

from mixtui.app.bench.machine import Speeds, measured_speed
from mixtui.families import family_for
from mixtui.planner import Budget, plan
from mixtui.registry.local import local_state
from mixtui.registry.spec import ModelSpec, Quantization


def _quantization(q: Quantization | None) -> dict[str, Any] | None:
    if q is None:
        return None
    return {"bits": q.bits, "group_size": q.group_size, "mode": q.mode,
            "experts": _quantization(q.experts)}


def describe(spec: ModelSpec, budget: Budget,
             registry: dict[str, ModelSpec] | None = None,
             speeds: Speeds | None = None) -> dict[str, Any]:
    """One model's row: the JSON `mixtui models --json` prints for it (`speeds`: this
    machine's kept speeds, read once for many rows; default: read now)."""
    g = spec.geometry
    fit = plan(spec, budget=budget, registry=registry)
    family = family_for(g.model_type)
    return {
        "key": spec.key, "name": spec.name, "repo": spec.repo, "revision": spec.revision,
        "kind": spec.kind, "model_type": g.model_type,
        "family": family.name if family is not None else None, "layers": g.layers,
        "experts": g.experts, "experts_per_token": g.experts_per_token,
        "total_params": spec.total_params(), "active_params": spec.active_params(),
        "weight_bytes": fit.weight_bytes, "weights_source": fit.weights_source,
        "kv_bytes_per_token": spec.kv_bytes_per_token(),
        "quantization": _quantization(spec.quantization),
        "card": (None if spec.card is None else
                 {"total_params": spec.card.total, "active_params": spec.card.active,
                  "note": spec.card.note}),
        "state": local_state(spec), "fit": fit.verdict, "need_bytes": fit.need_bytes,
        "budget_bytes": budget.bytes, "fit_reason": fit.reason, "source": spec.source,
        # the last decode speed `mixtui bench` measured for it on this machine (or None)
        "measured": measured_speed(spec.key, speeds=speeds),
    }
