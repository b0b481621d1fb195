"""What a family is: the protocol every MoE family module implements. Pure Python.

A family is one place that knows an architecture of mlx-lm (one or more `model_type`s): how
its config.json maps to a Geometry and back, how its router scores experts, its KV-cache
rule, a tiny random config for tests, and (in its `hooks` module, the only part that imports
MLX) where its blocks compute the routing and how experts per token is changed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Literal, Protocol

from mixtui.families.geometry import Geometry

if TYPE_CHECKING:  # the hooks import MLX; only their type is needed here
    from mixtui.families.adapters import MoEAdapter

# How a router turns its logits into expert scores:
# - "softmax": probabilities over all experts (Mixtral, Qwen3-MoE); the top k are chosen.
# - "sigmoid": an independent score per expert (DeepSeek-V3, GLM-4.5); the top k of score +
#   a learned selection bias are chosen, and the bias plays no part in the weights.
Scoring = Literal["softmax", "sigmoid"]


class Family(Protocol):
    """One architecture family of mlx-lm, as mixtui needs to know it."""

    @property
    def name(self) -> str:
        """e.g. "mixtral"; its hooks are the module `mixtui.families.<name>_hooks`."""
        ...

    @property
    def model_types(self) -> tuple[str, ...]:
        """The config.json `model_type`s it covers."""
        ...

    @property
    def scoring(self) -> Scoring:
        """How its router scores experts (what `probs` in a trace are)."""
        ...

    @property
    def is_moe(self) -> bool:
        """False for the dense families: no routing to capture."""
        ...

    def geometry(self, config: dict[str, Any]) -> Geometry:
        """Geometry from the family's own config.json fields."""
        ...

    def hf_config(self, geometry: Geometry) -> dict[str, Any]:
        """The config.json fields that describe `geometry` (the inverse of `geometry`)."""
        ...

    def kv_bytes_per_token(self, geometry: Geometry) -> int:
        """Bytes of KV cache each token of context takes."""
        ...

    def synthetic_config(self, **overrides: Any) -> dict[str, Any]:
        """A complete config.json of a tiny model of this family (float32, random weights
        through mlx-lm's own classes: `mixtui.engine.synthetic.make_model_dir`)."""
        ...

    def hooks(self) -> MoEAdapter | None:
        """Where its MoE blocks compute routing (imports MLX); None for a dense family."""
        ...


class FamilyBase:
    """Defaults that most families share: every layer attends to all of the context, and
    the hooks live in the module `mixtui.families.<name>_hooks` as `ADAPTER`."""

    name = ""
    model_types: tuple[str, ...] = ()
    scoring: Scoring = "softmax"
    is_moe = True

    def kv_bytes_per_token(self, geometry: Geometry) -> int:
        return geometry.kv_bytes_per_token()

    def hooks(self) -> MoEAdapter | None:
        if not self.is_moe:
            return None
        # Deferred: the hooks import MLX, which the UI process never loads.
        module = importlib.import_module(f"mixtui.families.{self.name}_hooks")
        adapter: MoEAdapter = module.ADAPTER
        return adapter
