"""OLMoE (mlx-lm's `olmoe`, `OlmoeSparseMoeBlock`): softmax over all experts, the top k
chosen, their probabilities renormalised only when `norm_topk_prob` (OLMoE-1B-7B: not).
Every layer is MoE; an expert is `intermediate_size` wide (there is no
`moe_intermediate_size`); no shared experts. Queries and keys are RMS-normalised over the
whole projection (not per head). Pure Python; the hooks are in `olmoe_hooks`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mixtui.families.base import FamilyBase
from mixtui.families.dense import SYNTHETIC_EXTRAS, common_config
from mixtui.families.geometry import Geometry, dense_from_hf_config
from mixtui.families.inventory import (
    Tensor,
    attention,
    embedding,
    head,
    linear,
    norm,
    switch_glu,
)

TINY = Geometry(model_type="olmoe", layers=2, hidden=64, intermediate=32, heads=4,
                kv_heads=2, head_dim=16, vocab=256, experts=8, experts_per_token=2,
                dtype_bytes=4, expert_intermediate=32)


def tied(config: dict[str, Any]) -> bool:
    # mlx-lm's olmoe ModelArgs defaults tie_word_embeddings to True (most configs say False)
    return bool(config.get("tie_word_embeddings", True))


class OlmoeFamily(FamilyBase):
    name = "olmoe"
    model_types = ("olmoe",)
    scoring = "softmax"

    def geometry(self, config: dict[str, Any]) -> Geometry:
        width = int(config["intermediate_size"])  # the experts' width: all there is
        return replace(dense_from_hf_config(
            config, experts=int(config["num_experts"]),
            experts_per_token=int(config["num_experts_per_tok"]),
            expert_intermediate=width), tie_embeddings=tied(config))

    def tensors(self, config: dict[str, Any]) -> list[Tensor]:
        g = self.geometry(config)
        bias = bool(config.get("attention_bias", False))
        mlp_bias = bool(config.get("mlp_bias", False))
        found = embedding("model.embed_tokens", g.vocab, g.hidden)
        for i in range(g.layers):
            prefix = f"model.layers.{i}"
            found += attention(f"{prefix}.self_attn", g.hidden, g.heads, g.kv_heads,
                               g.head_dim, bias=bias, out_bias=bias)
            # q_norm and k_norm span the whole projection, not one head
            found += norm(f"{prefix}.self_attn.q_norm", g.heads * g.head_dim)
            found += norm(f"{prefix}.self_attn.k_norm", g.kv_heads * g.head_dim)
            found += norm(f"{prefix}.input_layernorm", g.hidden)
            found += norm(f"{prefix}.post_attention_layernorm", g.hidden)
            found += linear(f"{prefix}.mlp.gate", g.experts, g.hidden, "router")
            found += switch_glu(f"{prefix}.mlp.switch_mlp", g.experts, g.hidden,
                                g.expert_intermediate, bias=mlp_bias)
        return found + norm("model.norm", g.hidden) + head(g.vocab, g.hidden, g.tie_embeddings)

    def hf_config(self, geometry: Geometry) -> dict[str, Any]:
        if geometry.dense_layers or geometry.shared_intermediate:
            raise ValueError("an OLMoE has neither dense layers nor shared experts")
        width = geometry.expert_intermediate or geometry.intermediate
        return common_config(replace(geometry, intermediate=width), "OlmoeForCausalLM") | {
            "num_experts": geometry.experts, "num_experts_per_tok": geometry.experts_per_token,
            "norm_topk_prob": False,  # as OLMoE-1B-7B
        }

    def synthetic_config(self, **overrides: Any) -> dict[str, Any]:
        return self.hf_config(replace(TINY, **overrides)) | SYNTHETIC_EXTRAS


FAMILY = OlmoeFamily()
