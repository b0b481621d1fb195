"""Typed model entries: geometry, quantization and the arithmetic that follows from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from mixtui.families import Family, family_for
from mixtui.families.geometry import Geometry
from mixtui.families.inventory import Inventory, Quantization

__all__ = ["Card", "Kind", "ModelSpec", "Quantization"]

Kind = Literal["chat", "base"]


@dataclass(frozen=True)
class Card:
    """The parameter counts the model's publisher gives (its model card), which may count
    another way than mixtui does (`note` says how)."""

    total: int
    active: int
    note: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """One entry of models.toml (or a model named by repo id or path on the command line)."""

    key: str
    name: str
    geometry: Geometry
    kind: Kind = "chat"
    repo: str | None = None
    revision: str | None = None
    path: str | None = None  # a local directory (bundled models: relative to the package)
    quantization: Quantization | None = None
    description: str = ""
    source: str = field(default="built-in", compare=False)
    # the model's config.json fields (the published ones, or the file's own); None: the
    # entry gives a [geometry] table, from which its family writes them
    config: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    card: Card | None = field(default=None, compare=False)

    @property
    def bundled(self) -> bool:
        return self.path is not None and self.source == "built-in"

    @property
    def family(self) -> Family | None:
        return family_for(self.geometry.model_type)

    @property
    def hf_config(self) -> dict[str, Any]:
        """The config.json fields the figures are computed from."""
        if self.config is not None:
            return self.config
        family = self.family
        return family.hf_config(self.geometry) if family is not None else {}

    @cached_property
    def inventory(self) -> Inventory | None:
        """Every tensor of the model, by its family; None where mixtui has no family."""
        family = self.family
        return family.inventory(self.hf_config) if family is not None else None

    def total_params(self) -> int:
        inv = self.inventory
        return inv.total() if inv is not None else self.geometry.total_params()

    def active_params(self, experts_per_token: int | None = None) -> int:
        inv = self.inventory
        return (inv.active(experts_per_token) if inv is not None
                else self.geometry.active_params(experts_per_token))

    def weight_bytes(self) -> int:
        """Bytes of weights at this model's quantization (norms and biases stay as they are;
        the family's exceptions, such as 8-bit routers, applied)."""
        return self._weight_bytes

    @cached_property
    def _weight_bytes(self) -> int:  # the planner asks for every model, often
        g = self.geometry
        inv, family = self.inventory, self.family
        if inv is not None and family is not None:
            return inv.weight_bytes(self.quantization, g.dtype_bytes, family.quant_overrides)
        norms = g.norm_params()
        if self.quantization is None:
            return g.total_params() * g.dtype_bytes
        return self.quantization.bytes_for(g.total_params() - norms) + norms * g.dtype_bytes

    def kv_bytes_per_token(self) -> int:
        """By the family's cache rule (every layer's keys and values where it has none)."""
        family = self.family
        if family is None:
            return self.geometry.kv_bytes_per_token()
        return family.kv_bytes_per_token(self.hf_config, self.geometry.dtype_bytes)

    def cache_bytes(self, tokens: int) -> int:
        """Bytes of cache at `tokens` tokens of context (fixed-size state included)."""
        family = self.family
        if family is None:
            return tokens * self.geometry.kv_bytes_per_token()
        return family.cache_bytes(self.hf_config, tokens, self.geometry.dtype_bytes)
