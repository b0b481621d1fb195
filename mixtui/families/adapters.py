"""Where each MoE family computes its routing, and how to listen there without changing it.

mlx-lm's MoE blocks compute the router logits (`gate`) and the chosen expert ids (`inds`)
inside ``__call__`` and then drop them. Rather than copying that forward pass, the adapter
swaps the class of two sub-modules of each block for a subclass that records its input or
output and otherwise behaves identically: the router (its output: logits over experts) and
the expert bank (its `indices` argument: the experts the model used). Weights, parameter
names and results are untouched. Adding a family is one `MoEAdapter` in `ADAPTERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import mlx.core as mx
import mlx.nn as nn


class RoutingSink(Protocol):
    def router_logits(self, ordinal: int, logits: mx.array) -> None: ...
    def expert_ids(self, ordinal: int, indices: mx.array) -> None: ...


@dataclass(frozen=True)
class MoEAdapter:
    """How to find and read the MoE blocks of one `model_type` in mlx-lm."""

    model_type: str
    block_attr: str  # attribute of a decoder layer that holds the MoE block
    router_attr: str  # attribute of the block: logits over experts
    experts_attr: str  # attribute of the block: called as (x, indices)
    k_attr: str  # attribute of the block: experts per token, read on every call
    # (logits, indices) -> the weights the model gives the chosen experts
    gate_weights: Callable[[mx.array, mx.array], mx.array]

    def blocks(self, model: nn.Module) -> list[tuple[int, nn.Module]]:
        """(layer index, MoE block) for every layer that has one."""
        found = []
        for i, layer in enumerate(model.layers):
            block = getattr(layer, self.block_attr, None)
            if block is not None and hasattr(block, self.router_attr):
                found.append((i, block))
        return found

    def top_k(self, block: nn.Module) -> int:
        return int(getattr(block, self.k_attr))

    def set_top_k(self, block: nn.Module, k: int) -> None:
        setattr(block, self.k_attr, k)


def _softmax_of_chosen(logits: mx.array, indices: mx.array) -> mx.array:
    # Mixtral: softmax over the k chosen logits, exactly as MixtralSparseMoeBlock does it.
    chosen = mx.take_along_axis(logits, indices, axis=-1)
    return mx.softmax(chosen, axis=-1, precise=True)


ADAPTERS: dict[str, MoEAdapter] = {
    "mixtral": MoEAdapter("mixtral", "block_sparse_moe", "gate", "switch_mlp",
                          "num_experts_per_tok", _softmax_of_chosen),
}

_SUBCLASSES: dict[tuple[type, str], type] = {}


def _recording_class(base: type, role: str) -> type:
    """A subclass of `base` that reports to the sink stored on the instance, then defers."""
    key = (base, role)
    if key in _SUBCLASSES:
        return _SUBCLASSES[key]

    def router_call(self: Any, x: mx.array) -> mx.array:
        logits = base.__call__(self, x)
        self._mixtui_sink.router_logits(self._mixtui_ordinal, logits)
        return logits

    def experts_call(self: Any, x: mx.array, indices: mx.array, *args: Any, **kw: Any) -> mx.array:
        self._mixtui_sink.expert_ids(self._mixtui_ordinal, indices)
        return base.__call__(self, x, indices, *args, **kw)

    call = router_call if role == "router" else experts_call
    cls = type(f"Recording{base.__name__}", (base,), {"__call__": call})
    _SUBCLASSES[key] = cls
    return cls


def attach(adapter: MoEAdapter, model: nn.Module, sink: RoutingSink) -> None:
    """Make every MoE block of `model` report its routing to `sink`."""
    for ordinal, (_, block) in enumerate(adapter.blocks(model)):
        for attr, role in ((adapter.router_attr, "router"), (adapter.experts_attr, "experts")):
            module = getattr(block, attr)
            original = getattr(module, "_mixtui_original", type(module))
            module.__class__ = _recording_class(original, role)
            module._mixtui_original = original
            module._mixtui_sink = sink
            module._mixtui_ordinal = ordinal


def detach(adapter: MoEAdapter, model: nn.Module) -> None:
    """Undo `attach`: the blocks run exactly as mlx-lm wrote them."""
    for _, block in adapter.blocks(model):
        for attr in (adapter.router_attr, adapter.experts_attr):
            module = getattr(block, attr)
            original = getattr(module, "_mixtui_original", None)
            if original is not None:
                module.__class__ = original
                del module._mixtui_original, module._mixtui_sink, module._mixtui_ordinal


def adapter_for(model_type: str) -> MoEAdapter | None:
    """The adapter of a MoE family, or None for a dense model."""
    return ADAPTERS.get(model_type)
