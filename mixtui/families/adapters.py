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
from typing import Any, Literal, Protocol

import mlx.core as mx
import mlx.nn as nn

from mixtui.families import family_for
from mixtui.families.base import Scoring


class RoutingSink(Protocol):
    def router_logits(self, ordinal: int, logits: mx.array) -> None: ...
    def expert_ids(self, ordinal: int, indices: mx.array) -> None: ...
    # only from routers that hand the block its weights ("choice" routers): the weights the
    # block multiplies the chosen experts' outputs by, as the router computed them
    def gate_weights(self, ordinal: int, weights: mx.array) -> None: ...


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

    def gate_weights(self, ordinal: int, weights: mx.array) -> None:
        pass

    def clear(self) -> None:
        """Drop the references (and so the graph they hold) of the last forward pass."""
        self.logits = []


RouterOutput = Literal["logits", "choice"]


def get_path(obj: Any, path: str) -> Any:
    """`obj.a.b` for the path "a.b"."""
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def set_path(obj: Any, path: str, value: Any) -> None:
    head, _, last = path.rpartition(".")
    setattr(get_path(obj, head) if head else obj, last, value)


@dataclass(frozen=True)
class MoEAdapter:
    """How to find and read the MoE blocks of one `model_type` in mlx-lm.

    Two kinds of router:
    - "logits" (Mixtral, Qwen, OLMoE, gpt-oss, Phi): the router is a Linear whose output the
      block turns into the choice and the weights inline; the adapter records the logits and
      `gate_weights` gives the weights the block computes from them (the family's rule, or
      mlx-lm's own function for it);
    - "choice" (DeepSeek, GLM, Granite): the router is a module that returns the chosen
      experts and their weights; the adapter records those weights as they come out, and
      the logits (for the router's scores over all experts) via `choice_logits`.
    """

    model_type: str
    block_attr: str  # attribute of a decoder layer that holds the MoE block
    router_attr: str  # attribute of the block: the router (see the kinds above)
    experts_attr: str  # attribute of the block: called as (x, indices)
    k_attr: str  # attribute (or dotted path) of the block: experts per token, read per call
    # "logits" routers: (logits, indices, one MoE block of the model) -> the weights the model
    # gives the chosen experts; the block's own settings (e.g. `norm_topk_prob`) read from it
    gate_weights: Callable[[mx.array, mx.array, Any], mx.array] | None = None
    scoring: Scoring = "softmax"
    # sigmoid routers only: the attribute (path) of the block holding the bias added to the
    # scores to choose experts (not to weight them); None where there is none
    selection_bias_attr: str | None = None
    router_output: RouterOutput = "logits"
    # "choice" routers: (router module, its input) -> its logits over all experts
    choice_logits: Callable[[Any, mx.array], mx.array] | None = None

    def blocks(self, model: nn.Module) -> list[tuple[int, nn.Module]]:
        """(layer index, MoE block) for every layer that has one."""
        found = []
        for i, layer in enumerate(model.layers):
            block = getattr(layer, self.block_attr, None)
            if block is not None and hasattr(block, self.router_attr.split(".")[0]):
                found.append((i, block))
        return found

    def top_k(self, block: nn.Module) -> int:
        return int(get_path(block, self.k_attr))

    def set_top_k(self, block: nn.Module, k: int) -> None:
        """Experts per token from the next call on (the block reads it on every call)."""
        set_path(block, self.k_attr, k)

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

    def choice_call(self: Any, x: mx.array, *args: Any, **kw: Any) -> Any:
        indices, weights = base.__call__(self, x, *args, **kw)
        sink = self._mixtui_sink
        sink.router_logits(self._mixtui_ordinal, self._mixtui_logits(self, x))
        sink.gate_weights(self._mixtui_ordinal, weights)
        return indices, weights

    def experts_call(self: Any, x: mx.array, indices: mx.array, *args: Any, **kw: Any) -> mx.array:
        self._mixtui_sink.expert_ids(self._mixtui_ordinal, indices)
        return base.__call__(self, x, indices, *args, **kw)

    call = {"router": router_call, "choice": choice_call, "experts": experts_call}[role]
    cls = type(f"Recording{base.__name__}", (base,), {"__call__": call})
    _SUBCLASSES[key] = cls
    return cls


def attach(adapter: MoEAdapter, model: nn.Module, sink: RoutingSink) -> None:
    """Make every MoE block of `model` report its routing to `sink`."""
    router_role = "router" if adapter.router_output == "logits" else "choice"
    for ordinal, (_, block) in enumerate(adapter.blocks(model)):
        for attr, role in ((adapter.router_attr, router_role),
                           (adapter.experts_attr, "experts")):
            module = get_path(block, attr)
            original = getattr(module, "_mixtui_original", type(module))
            module.__class__ = _recording_class(original, role)
            module._mixtui_original = original
            module._mixtui_sink = sink
            module._mixtui_ordinal = ordinal
            if role == "choice":
                module._mixtui_logits = adapter.choice_logits


def detach(adapter: MoEAdapter, model: nn.Module) -> None:
    """Undo `attach`: the blocks run exactly as mlx-lm wrote them."""
    for _, block in adapter.blocks(model):
        for attr in (adapter.router_attr, adapter.experts_attr):
            module = get_path(block, attr)
            original = getattr(module, "_mixtui_original", None)
            if original is not None:
                module.__class__ = original
                del module._mixtui_original, module._mixtui_sink, module._mixtui_ordinal
                module.__dict__.pop("_mixtui_logits", None)


def adapter_for(model_type: str) -> MoEAdapter | None:
    """The adapter of a MoE family, or None for a dense model or a type without a family."""
    family = family_for(model_type)
    return family.hooks() if family is not None else None
