"""Where each MoE family computes its routing, and how to listen there without changing it.

mlx-lm's MoE blocks compute the router logits (`gate`) and the chosen expert ids (`inds`)
inside ``__call__`` and then drop them. Rather than copying that forward pass, the adapter
swaps the class of two sub-modules of each block for a subclass that records its input or
output and otherwise behaves identically: the router (its output: logits over experts) and
the expert bank (its `indices` argument: the experts the model used). Weights, parameter
names and results are untouched. Each MoE family's hooks module (`<family>_hooks.py`) holds
its `MoEAdapter`; `adapter_for` finds it through the family (`mixtui.families.family_for`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import mlx.core as mx
import mlx.nn as nn

from mixtui.families import family_for
from mixtui.families.base import Scoring


class RoutingSink(Protocol):
    def router_logits(self, ordinal: int, logits: mx.array) -> None: ...
    def expert_ids(self, ordinal: int, indices: mx.array) -> None: ...


class RouterLogitsLog:
    """A sink for training and evaluation: the router logits of the latest forward pass, one
    array per MoE layer, kept in the graph (differentiable; any batch size)."""

    def __init__(self) -> None:
        self.logits: list[mx.array] = []

    def router_logits(self, ordinal: int, logits: mx.array) -> None:
        if ordinal == 0:  # the first MoE layer: a new forward pass
            self.logits = []
        self.logits.append(logits)

    def expert_ids(self, ordinal: int, indices: mx.array) -> None:
        pass  # the losses need the logits only; the choice follows from them

    def clear(self) -> None:
        """Drop the references (and so the graph they hold) of the last forward pass."""
        self.logits = []


@dataclass(frozen=True)
class MoEAdapter:
    """How to find and read the MoE blocks of one `model_type` in mlx-lm."""

    model_type: str
    block_attr: str  # attribute of a decoder layer that holds the MoE block
    router_attr: str  # attribute of the block: logits over experts
    experts_attr: str  # attribute of the block: called as (x, indices)
    k_attr: str  # attribute of the block: experts per token, read on every call
    # (logits, indices, one MoE block of the model) -> the weights the model gives the chosen
    # experts; the block's own settings (e.g. Qwen3's `norm_topk_prob`) are read from it
    gate_weights: Callable[[mx.array, mx.array, Any], mx.array]
    scoring: Scoring = "softmax"
    # sigmoid routers only: the block's attribute holding the bias added to the scores to
    # choose experts (not to weight them); None where there is none
    selection_bias_attr: str | None = None

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
        """Experts per token from the next call on (the block reads it on every call)."""
        setattr(block, self.k_attr, k)

    def router_probs(self, logits: mx.array) -> mx.array:
        """The router's scores over all experts under the family's scoring (float32):
        softmax probabilities (sum to 1), or sigmoid scores (each in (0, 1)), without any
        selection bias."""
        logits = logits.astype(mx.float32)
        if self.scoring == "sigmoid":
            return mx.sigmoid(logits)
        return mx.softmax(logits, axis=-1)


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
    """The adapter of a MoE family, or None for a dense model or a type without a family."""
    family = family_for(model_type)
    return family.hooks() if family is not None else None
