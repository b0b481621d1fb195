"""The shape of a decoder-only transformer, dense or MoE, and the parameter arithmetic that
follows from it. Pure Python: the registry, the planner and the engine all use it.

How a model's own config.json maps to a Geometry is its family's business (each family
module in this package has its own field names); `Geometry.from_hf_config` asks the family
of the config's `model_type` and falls back to the fields that dense models share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ConfigMapping = Callable[[dict[str, Any]], "Geometry"]
# model_type -> its family's config mapping; filled when `mixtui.families` is imported,
# which always happens before this module (it is the package's __init__).
_MAPPINGS: dict[str, ConfigMapping] = {}


@dataclass(frozen=True)
class Geometry:
    """The shape of a decoder-only transformer, dense or MoE (experts == 0: dense)."""

    model_type: str
    layers: int
    hidden: int
    intermediate: int  # width of a dense feed-forward (and of an expert, unless set below)
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    experts: int = 0
    experts_per_token: int = 0
    tie_embeddings: bool = False
    dtype_bytes: int = 2  # unquantized weights and the KV cache: 2 for float16/bfloat16
    expert_intermediate: int = 0  # width of one routed expert; 0: `intermediate` (Mixtral)
    shared_intermediate: int = 0  # width of the always-active shared expert(s); 0: none
    shared_experts: int = 0  # how many shared experts that width holds (DeepSeek: 2); 0: none
    dense_layers: tuple[int, ...] = ()  # layers with a dense feed-forward instead of experts
    qk_norm: bool = False  # an RMSNorm on queries and keys per head (Qwen3)

    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    @property
    def moe_layers(self) -> tuple[int, ...]:
        """Indices of the layers that have an MoE block."""
        if not self.is_moe:
            return ()
        dense = set(self.dense_layers)
        return tuple(i for i in range(self.layers) if i not in dense)

    # Parameter accounting: one place, checked against the published figures in the tests.
    def attention_params(self) -> int:
        q_and_o = 2 * self.hidden * self.heads * self.head_dim
        k_and_v = 2 * self.hidden * self.kv_heads * self.head_dim
        return q_and_o + k_and_v

    def expert_params(self) -> int:
        """One routed expert: a SwiGLU feed-forward (gate, up and down projections)."""
        return 3 * self.hidden * (self.expert_intermediate or self.intermediate)

    def dense_ffn_params(self) -> int:
        """The SwiGLU feed-forward of a dense layer."""
        return 3 * self.hidden * self.intermediate

    def shared_expert_params(self) -> int:
        """The shared expert(s) of one MoE layer, which every token uses."""
        return 3 * self.hidden * self.shared_intermediate

    def router_params(self) -> int:
        return self.hidden * self.experts if self.is_moe else 0

    def norm_params(self) -> int:
        qk = 2 * self.layers * self.head_dim if self.qk_norm else 0
        return (2 * self.layers + 1) * self.hidden + qk

    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tie_embeddings else 2)

    def _params(self, experts_used: int) -> int:
        moe = len(self.moe_layers)
        per_moe_layer = (self.router_params() + experts_used * self.expert_params()
                         + self.shared_expert_params())
        return (self.layers * self.attention_params() + moe * per_moe_layer
                + (self.layers - moe) * self.dense_ffn_params()
                + self.norm_params() + self.embedding_params())

    def total_params(self) -> int:
        return self._params(self.experts)

    def active_params(self, experts_per_token: int | None = None) -> int:
        """Parameters each token touches: everything but the routed experts it is not sent
        to (all attention, routers, shared experts, dense layers; k experts per MoE layer)."""
        if not self.is_moe:
            return self.total_params()
        return self._params(experts_per_token or self.experts_per_token)

    def kv_bytes_per_token(self, dtype_bytes: int | None = None) -> int:
        """Keys and values of every layer for one token (every layer attends to all of the
        context; a family with other attention says so in its own rule)."""
        return 2 * self.layers * self.kv_heads * self.head_dim * (dtype_bytes or self.dtype_bytes)

    @classmethod
    def from_hf_config(cls, config: dict[str, Any]) -> Geometry:
        """Geometry from a model's own config.json (the truth once the model is on disk)."""
        mapping = _MAPPINGS.get(str(config.get("model_type")), dense_from_hf_config)
        return mapping(config)


def register_mapping(model_type: str, mapping: ConfigMapping) -> None:
    """Let `Geometry.from_hf_config` map configs of `model_type` with its family's rules."""
    _MAPPINGS[model_type] = mapping


def config_dtype_bytes(config: dict[str, Any]) -> int:
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")
    return 4 if dtype == "float32" else 2


# The names mlx-lm's model configs give the expert count and experts per token
_EXPERT_COUNT_FIELDS = ("num_local_experts", "num_experts", "n_routed_experts",
                        "moe_num_experts")
_EXPERTS_PER_TOKEN_FIELDS = ("num_experts_per_tok", "num_experts_per_token", "top_k_experts",
                             "moe_k")


def _unknown_moe(config: dict[str, Any]) -> dict[str, int]:
    """The experts of a config whose family mixtui does not know, under any usual name."""
    experts = next((int(v) for f in _EXPERT_COUNT_FIELDS
                    if isinstance(v := config.get(f), int) and v > 0), 0)
    k = next((int(v) for f in _EXPERTS_PER_TOKEN_FIELDS
              if isinstance(v := config.get(f), int) and v > 0), 1) if experts else 0
    return {"experts": experts, "experts_per_token": min(k, experts)}


def dense_from_hf_config(config: dict[str, Any], **moe: Any) -> Geometry:
    """The fields every decoder-only config shares (Mistral, Llama), plus a family's `moe`
    fields. A MoE type without a family still reads as MoE (its expert count, under any of
    the usual names), so that it is not taken for a dense model."""
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    if not moe:
        moe = _unknown_moe(config)
    return Geometry(
        model_type=str(config["model_type"]),
        layers=int(config["num_hidden_layers"]),
        hidden=hidden,
        intermediate=int(config["intermediate_size"]),
        heads=heads,
        kv_heads=int(config.get("num_key_value_heads") or heads),
        head_dim=int(config.get("head_dim") or hidden // heads),
        vocab=int(config["vocab_size"]),
        tie_embeddings=bool(config.get("tie_word_embeddings", False)),
        dtype_bytes=config_dtype_bytes(config),
        **moe,
    )
