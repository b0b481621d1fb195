"""Granite MoE (mlx-lm's `granitemoe`, `GraniteMoeMoE`): its router
(`GraniteMoeTopKGating`) takes the top k of the raw logits and a softmax over those k, and
hands the block (indices, weights): a "choice" router. Every layer is MoE; an expert is
`intermediate_size` wide; no shared experts. Embeddings, residuals, attention scores and
logits are scaled by the config's multipliers (no shapes change). Pure Python; the hooks
are in `granitemoe_hooks`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mixtui.families.base import FamilyBase
from mixtui.families.dense import SYNTHETIC_EXTRAS, common_config
from mixtui.families.geometry import Geometry, dense_from_hf_config
from mixtui.families.inventory import (
    Quantization,
    Tensor,
    attention,
    embedding,
    head,
    linear,
    norm,
    switch_glu,
)

TINY = Geometry(model_type="granitemoe", layers=2, hidden=64, intermediate=32, heads=4,
                kv_heads=2, head_dim=16, vocab=256, experts=8, experts_per_token=2,
                tie_embeddings=True, dtype_bytes=4, expert_intermediate=32)
# The scalars mlx-lm requires (no shape depends on them): Granite 3.1 1B-A400M's values
# (attention_multiplier = 1 / head_dim there)
MULTIPLIERS: dict[str, Any] = {"embedding_multiplier": 12.0, "residual_multiplier": 0.22,
                               "logits_scaling": 6.0, "attention_bias": False}


def tied(config: dict[str, Any]) -> bool:
    # mlx-lm's granitemoe ModelArgs defaults tie_word_embeddings to True
    return bool(config.get("tie_word_embeddings", True))


class GraniteMoeFamily(FamilyBase):
    name = "granitemoe"
    model_types = ("granitemoe",)
    scoring = "softmax"
    # mlx-lm's granitemoe quant_predicate: 8 bits for the router, the attention's output,
    # every `mlp.down_proj` (which the experts' `switch_mlp.down_proj` is) and lm_head
    quant_overrides = {"block_sparse_moe.router.layer": Quantization(8, 64),  # noqa: RUF012
                       "self_attn.o_proj": Quantization(8, 64),
                       "mlp.down_proj": Quantization(8, 64),
                       "lm_head": Quantization(8, 64)}

    def geometry(self, config: dict[str, Any]) -> Geometry:
        g = dense_from_hf_config(
            config, experts=int(config["num_local_experts"]),
            experts_per_token=int(config["num_experts_per_tok"]),
            expert_intermediate=int(config["intermediate_size"]))
        # mlx-lm's rule: head_dim is hidden / heads (no head_dim field)
        return replace(g, head_dim=g.hidden // g.heads, tie_embeddings=tied(config))

    def tensors(self, config: dict[str, Any]) -> list[Tensor]:
        g = self.geometry(config)
        bias = bool(config["attention_bias"])
        found = embedding("model.embed_tokens", g.vocab, g.hidden)
        for i in range(g.layers):
            prefix = f"model.layers.{i}"
            found += attention(f"{prefix}.self_attn", g.hidden, g.heads, g.kv_heads,
                               g.head_dim, bias=bias, out_bias=bias)
            found += norm(f"{prefix}.input_layernorm", g.hidden)
            found += norm(f"{prefix}.post_attention_layernorm", g.hidden)
            found += linear(f"{prefix}.block_sparse_moe.router.layer", g.experts, g.hidden,
                            "router")
            found += switch_glu(f"{prefix}.block_sparse_moe.switch_mlp", g.experts,
                                g.hidden, g.expert_intermediate)
        return found + norm("model.norm", g.hidden) + head(g.vocab, g.hidden, g.tie_embeddings)

    def hf_config(self, geometry: Geometry) -> dict[str, Any]:
        if geometry.dense_layers or geometry.shared_intermediate:
            raise ValueError("a Granite MoE has neither dense layers nor shared experts")
        width = geometry.expert_intermediate or geometry.intermediate
        return common_config(replace(geometry, intermediate=width),
                             "GraniteMoeForCausalLM") | MULTIPLIERS | {
            "num_local_experts": geometry.experts,
            "num_experts_per_tok": geometry.experts_per_token,
            "attention_multiplier": 1.0 / geometry.head_dim,
        }

    def synthetic_config(self, **overrides: Any) -> dict[str, Any]:
        return self.hf_config(replace(TINY, **overrides)) | SYNTHETIC_EXTRAS | {
            "rms_norm_eps": 1e-6}


FAMILY = GraniteMoeFamily()
