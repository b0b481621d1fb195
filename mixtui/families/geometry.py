"""The shape of a decoder-only transformer, dense or MoE, and the parameter arithmetic that
follows from it. Pure Python: the registry, the planner and the engine all use it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Geometry:
    """The shape of a decoder-only transformer, dense or MoE (experts == 0: dense)."""

    model_type: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    experts: int = 0
    experts_per_token: int = 0
    tie_embeddings: bool = False
    dtype_bytes: int = 2  # unquantized weights and the KV cache: 2 for float16/bfloat16

    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    # Parameter accounting: one place, checked against the published figures in the tests.
    def attention_params(self) -> int:
        q_and_o = 2 * self.hidden * self.heads * self.head_dim
        k_and_v = 2 * self.hidden * self.kv_heads * self.head_dim
        return q_and_o + k_and_v

    def expert_params(self) -> int:
        """One SwiGLU feed-forward (gate, up and down projections)."""
        return 3 * self.hidden * self.intermediate

    def router_params(self) -> int:
        return self.hidden * self.experts if self.is_moe else 0

    def norm_params(self) -> int:
        return (2 * self.layers + 1) * self.hidden

    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tie_embeddings else 2)

    def total_params(self) -> int:
        ffn = self.expert_params() * (self.experts if self.is_moe else 1)
        per_layer = self.attention_params() + self.router_params() + ffn
        return self.layers * per_layer + self.norm_params() + self.embedding_params()

    def active_params(self, experts_per_token: int | None = None) -> int:
        """Parameters each token touches: all attention, the router, and k experts per layer."""
        if not self.is_moe:
            return self.total_params()
        k = experts_per_token or self.experts_per_token
        per_layer = self.attention_params() + self.router_params() + k * self.expert_params()
        return self.layers * per_layer + self.norm_params() + self.embedding_params()

    def kv_bytes_per_token(self, dtype_bytes: int | None = None) -> int:
        """Keys and values of every layer for one token."""
        return 2 * self.layers * self.kv_heads * self.head_dim * (dtype_bytes or self.dtype_bytes)

    @classmethod
    def from_hf_config(cls, config: dict[str, Any]) -> Geometry:
        """Geometry from a model's own config.json (the truth once the model is on disk)."""
        hidden = int(config["hidden_size"])
        heads = int(config["num_attention_heads"])
        experts = int(config.get("num_local_experts") or config.get("num_experts") or 0)
        dtype = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")
        return cls(
            model_type=str(config["model_type"]),
            layers=int(config["num_hidden_layers"]),
            hidden=hidden,
            intermediate=int(config["intermediate_size"]),
            heads=heads,
            kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or hidden // heads),
            vocab=int(config["vocab_size"]),
            experts=experts,
            experts_per_token=int(config.get("num_experts_per_tok") or 0) if experts else 0,
            tie_embeddings=bool(config.get("tie_word_embeddings", False)),
            dtype_bytes=4 if dtype == "float32" else 2,
        )
