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
from mixtui.families.inventory import Inventory, Quantization, Tensor

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

    def tensors(self, config: dict[str, Any]) -> list[Tensor]:
        """Every parameter of the model as mlx-lm builds it from `config` (names, shapes,
        what each is for): the source of its parameter and byte counts."""
        ...

    def inventory(self, config: dict[str, Any]) -> Inventory:
        """`tensors` with the routing width: total, active and bytes follow from it."""
        ...

    @property
    def quant_overrides(self) -> dict[str, Quantization]:
        """Module-path suffixes that the family's conversions keep at another quantization
        (mlx-lm's `quant_predicate` for it, e.g. routers at 8 bits); empty: none."""
        ...

    def kv_bytes_per_token(self, config: dict[str, Any], dtype_bytes: int = 2) -> int:
        """Bytes of cache each further token of context adds (at long contexts: layers with a
        fixed-size state or a sliding window add nothing once it is full)."""
        ...

    def cache_bytes(self, config: dict[str, Any], tokens: int, dtype_bytes: int = 2) -> int:
        """Bytes of cache (keys and values, and any fixed-size state) at `tokens` tokens."""
        ...

    def max_experts_per_token(self, config: dict[str, Any]) -> int:
        """The most experts per token its routing can choose (E, or less where routing is
        group-limited)."""
        ...

    def experts_per_token_note(self, config: dict[str, Any]) -> str:
        """One sentence on how the family constrains experts per token; "" where it does not."""
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

    quant_overrides: dict[str, Quantization] = {}  # noqa: RUF012 (read-only by convention)

    def geometry(self, config: dict[str, Any]) -> Geometry:
        raise NotImplementedError

    def tensors(self, config: dict[str, Any]) -> list[Tensor]:
        raise NotImplementedError

    def inventory(self, config: dict[str, Any]) -> Inventory:
        g = self.geometry(config)
        return Inventory.of(self.tensors(config), g.experts, g.experts_per_token)

    def kv_bytes_per_token(self, config: dict[str, Any], dtype_bytes: int = 2) -> int:
        return self.geometry(config).kv_bytes_per_token(dtype_bytes)

    def cache_bytes(self, config: dict[str, Any], tokens: int, dtype_bytes: int = 2) -> int:
        return tokens * self.kv_bytes_per_token(config, dtype_bytes)

    def max_experts_per_token(self, config: dict[str, Any]) -> int:
        return self.geometry(config).experts

    def experts_per_token_note(self, config: dict[str, Any]) -> str:
        return ""

    def hooks(self) -> MoEAdapter | None:
        if not self.is_moe:
            return None
        # Deferred: the hooks import MLX, which the UI process never loads.
        module = importlib.import_module(f"mixtui.families.{self.name}_hooks")
        adapter: MoEAdapter = module.ADAPTER
        return adapter
