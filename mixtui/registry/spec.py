"""Typed model entries: geometry, quantization and the arithmetic that follows from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mixtui.families import family_for
from mixtui.families.geometry import Geometry

Kind = Literal["chat", "base"]


@dataclass(frozen=True)
class Quantization:
    bits: int
    group_size: int

    def bytes_for(self, n_params: int) -> int:
        """Packed weights plus a float16 scale and bias per group (4-bit/64: 4.5 bits a weight)."""
        return n_params * self.bits // 8 + (n_params // self.group_size) * 4


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

    @property
    def bundled(self) -> bool:
        return self.path is not None and self.source == "built-in"

    def weight_bytes(self) -> int:
        """Bytes of weights at this model's quantization (norms stay unquantized)."""
        g = self.geometry
        norms = g.norm_params()
        matrices = g.total_params() - norms
        if self.quantization is None:
            return g.total_params() * g.dtype_bytes
        return self.quantization.bytes_for(matrices) + norms * g.dtype_bytes

    def kv_bytes_per_token(self) -> int:
        """By the family's KV-cache rule (every layer's keys and values where it has none)."""
        family = family_for(self.geometry.model_type)
        if family is None:
            return self.geometry.kv_bytes_per_token()
        return family.kv_bytes_per_token(self.geometry)
