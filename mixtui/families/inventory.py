"""Every weight of a model, named and shaped as mlx-lm builds it, from its config alone.

Each family lists its model's tensors (`Family.tensors(config)`): the same parameter paths
and shapes that mlx-lm's own classes create (a test builds those classes and compares, for
the tiny test models and for every published geometry). The figures users read follow from
that list by one rule each, the same for every family:

- total parameters: the sum of all tensors;
- active parameters: what one token's forward pass uses: every tensor but the routed
  experts, which count k of E (the convention of Mixtral's "12.9 B active"; embeddings in);
- bytes at a quantization: what mlx-lm's quantizer makes of each tensor (a Linear,
  Embedding or SwitchLinear weight whose rows divide into groups is packed; norms and biases
  keep the model's dtype), with the family's own exceptions (routers kept at 8 bits).

Pure Python: the registry and the planner use it without MLX.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

# What a tensor is for, as the accounting needs to know it:
# "routed": an expert bank (leading dimension E); "shared": the always-on shared expert(s)
# (and their gate); "router": the router (and any selection bias); "dense": a dense layer's
# feed-forward; "attention": attention or linear attention (and their small convolutions);
# "embedding" and "head": the token embedding and the output projection; "norm": norms.
Role = Literal["embedding", "head", "attention", "norm", "router", "routed", "shared", "dense"]
Mode = Literal["affine", "mxfp4"]


@dataclass(frozen=True)
class Quantization:
    """How a conversion stores its matrices: affine (`bits`, with a float16 scale and bias
    per group of `group_size`) or MXFP4 (4-bit floats with an 8-bit scale per 32)."""

    bits: int
    group_size: int
    mode: Mode = "affine"
    # the routed experts' own quantization where it differs (gpt-oss's "MXFP4-Q8": experts
    # in MXFP4, everything else at 8 bits); None: as everything else
    experts: Quantization | None = None

    def bytes_for(self, n_params: int) -> int:
        """Packed weights plus their per-group scales (and, affine, biases) in float16:
        4-bit/64 is 4.5 bits a weight; MXFP4 is 4.25."""
        per_group = 1 if self.mode == "mxfp4" else 4
        return n_params * self.bits // 8 + (n_params // self.group_size) * per_group


@dataclass(frozen=True)
class Tensor:
    """One parameter as mlx-lm names it, e.g. "model.layers.0.mlp.gate.weight"."""

    name: str
    shape: tuple[int, ...]
    role: Role
    quantizable: bool = False  # the weight of a module mlx-lm's quantizer packs
    # bytes per value where the conversion keeps it at its own width whatever the model's
    # dtype (mlx-lm's `cast_predicate`: DeepSeek-V3's selection bias stays float32); None:
    # the model's
    dtype_bytes: int | None = None

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def module(self) -> str:
        """The path of the module that holds it (what a quantization predicate is given)."""
        return self.name.rsplit(".", 1)[0]


# -- builders: the modules mlx-lm's model files are made of -------------------------------------
def linear(path: str, out_dims: int, in_dims: int, role: Role, *, bias: bool = False
           ) -> list[Tensor]:
    """nn.Linear(in_dims, out_dims): weight (out, in), optional bias (out,)."""
    found = [Tensor(f"{path}.weight", (out_dims, in_dims), role, quantizable=True)]
    if bias:
        found.append(Tensor(f"{path}.bias", (out_dims,), role))
    return found


def norm(path: str, dims: int, *, bias: bool = False) -> list[Tensor]:
    """nn.RMSNorm (weight) or nn.LayerNorm (weight and bias)."""
    found = [Tensor(f"{path}.weight", (dims,), "norm")]
    if bias:
        found.append(Tensor(f"{path}.bias", (dims,), "norm"))
    return found


def embedding(path: str, vocab: int, dims: int) -> list[Tensor]:
    return [Tensor(f"{path}.weight", (vocab, dims), "embedding", quantizable=True)]


def swiglu_mlp(path: str, hidden: int, width: int, role: Role, *, bias: bool = False
               ) -> list[Tensor]:
    """gate_proj, up_proj (hidden -> width) and down_proj (width -> hidden)."""
    return [*linear(f"{path}.gate_proj", width, hidden, role, bias=bias),
            *linear(f"{path}.up_proj", width, hidden, role, bias=bias),
            *linear(f"{path}.down_proj", hidden, width, role, bias=bias)]


def switch_glu(path: str, experts: int, hidden: int, width: int, *, bias: bool = False
               ) -> list[Tensor]:
    """SwitchGLU: E experts' gate/up (E, width, hidden) and down (E, hidden, width)."""
    found = []
    for name, shape in (("gate_proj", (experts, width, hidden)),
                        ("up_proj", (experts, width, hidden)),
                        ("down_proj", (experts, hidden, width))):
        found.append(Tensor(f"{path}.{name}.weight", shape, "routed", quantizable=True))
        if bias:
            found.append(Tensor(f"{path}.{name}.bias", shape[:2], "routed"))
    return found


def attention(path: str, hidden: int, heads: int, kv_heads: int, head_dim: int, *,
              bias: bool = False, out_bias: bool = False, qk_norm: bool = False,
              names: Sequence[str] = ("q_proj", "k_proj", "v_proj", "o_proj")
              ) -> list[Tensor]:
    """Grouped-query attention: q (heads), k and v (kv_heads) and o, optionally with
    per-head RMSNorms on queries and keys (`q_norm`, `k_norm`)."""
    q, k, v, o = names
    found = [*linear(f"{path}.{q}", heads * head_dim, hidden, "attention", bias=bias),
             *linear(f"{path}.{k}", kv_heads * head_dim, hidden, "attention", bias=bias),
             *linear(f"{path}.{v}", kv_heads * head_dim, hidden, "attention", bias=bias),
             *linear(f"{path}.{o}", hidden, heads * head_dim, "attention", bias=out_bias)]
    if qk_norm:
        found += [Tensor(f"{path}.q_norm.weight", (head_dim,), "norm"),
                  Tensor(f"{path}.k_norm.weight", (head_dim,), "norm")]
    return found


def head(vocab: int, hidden: int, tied: bool, path: str = "lm_head") -> list[Tensor]:
    """The output projection; none where it shares the embedding's weights."""
    return [] if tied else [Tensor(f"{path}.weight", (vocab, hidden), "head", quantizable=True)]


# -- the figures ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Inventory:
    """A model's tensors and its routing width: the source of every parameter figure."""

    tensors: tuple[Tensor, ...]
    experts: int = 0  # routed experts per MoE layer (0: dense)
    experts_per_token: int = 0

    @classmethod
    def of(cls, tensors: Iterable[Tensor], experts: int = 0, experts_per_token: int = 0
           ) -> Inventory:
        return cls(tuple(tensors), experts, experts_per_token)

    def total(self) -> int:
        return sum(t.size for t in self.tensors)

    def active(self, experts_per_token: int | None = None) -> int:
        """Parameters one token uses: all but the routed experts it is not sent to."""
        k = experts_per_token or self.experts_per_token
        fixed = sum(t.size for t in self.tensors if t.role != "routed")
        routed = sum(t.size for t in self.tensors if t.role == "routed")
        return fixed + (routed * k // self.experts if self.experts else routed)

    def by_role(self) -> dict[Role, int]:
        counts: dict[Role, int] = {}
        for t in self.tensors:
            counts[t.role] = counts.get(t.role, 0) + t.size
        return counts

    def weight_bytes(self, quantization: Quantization | None, dtype_bytes: int = 2,
                     overrides: dict[str, Quantization] | None = None) -> int:
        """Bytes on disk (and in memory) at `quantization` (None: all at `dtype_bytes`).

        `overrides`: module-path suffixes the family keeps at another quantization (its
        mlx-lm `quant_predicate`, e.g. {"mlp.gate": 8-bit/64})."""
        total = 0
        for t in self.tensors:
            q = _quantization_of(t, quantization, overrides or {})
            total += t.size * (t.dtype_bytes or dtype_bytes) if q is None else q.bytes_for(t.size)
        return total

    def active_weight_bytes(self, quantization: Quantization | None, dtype_bytes: int = 2,
                            overrides: dict[str, Quantization] | None = None,
                            experts_per_token: int | None = None) -> int:
        """Bytes one token's forward pass reads: every tensor but the routed experts, which
        count k of E (what bounds decode speed where memory bandwidth does)."""
        return sum(self.layer_active_bytes(quantization, dtype_bytes, overrides,
                                           experts_per_token).values())

    def layer_active_bytes(self, quantization: Quantization | None, dtype_bytes: int = 2,
                           overrides: dict[str, Quantization] | None = None,
                           experts_per_token: int | None = None) -> dict[int, int]:
        """`active_weight_bytes` by layer index (-1: outside the layers: embeddings, the
        final norm, the head)."""
        k = experts_per_token or self.experts_per_token
        found: dict[int, int] = {}
        for t in self.tensors:
            q = _quantization_of(t, quantization, overrides or {})
            size = t.size * dtype_bytes if q is None else q.bytes_for(t.size)
            if t.role == "routed" and self.experts:
                size = size * k // self.experts
            match = _LAYER.search(t.name)
            layer = int(match.group(1)) if match else -1
            found[layer] = found.get(layer, 0) + size
        return found


_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def _quantization_of(t: Tensor, base: Quantization | None,
                     overrides: dict[str, Quantization]) -> Quantization | None:
    if base is None or not t.quantizable:
        return None
    q = base.experts if t.role == "routed" and base.experts is not None else base
    for suffix, special in overrides.items():
        if t.module.endswith(suffix):
            q = special
            break
    # mlx-lm's quantizer leaves a matrix whose rows do not divide into groups as it is; it
    # tests the conversion's own group size, whatever a module's override (quantize_model)
    rows = t.shape[-1]
    return q if rows % base.group_size == 0 and rows % q.group_size == 0 else None
