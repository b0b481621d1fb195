"""Phi-3.5-MoE (mlx-lm's `phimoe`, `PhiMoESparseMoeBlock`): routed by sparsemixer, an
iterative masked top-1: each round takes the best remaining expert, and its weight is its
softmax probability among the experts whose logits lie within a jitter band
(`router_jitter_noise`) of it; the chosen expert is then masked out. The weights do not sum
to 1. Every layer is MoE, an expert `intermediate_size` wide; LayerNorms; biases on the
attention and the head; long-context RoPE (longrope). Pure Python; hooks in `phimoe_hooks`."""

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
    linear,
    norm,
    switch_glu,
)

TINY = Geometry(model_type="phimoe", layers=2, hidden=64, intermediate=32, heads=4,
                kv_heads=2, head_dim=16, vocab=256, experts=8, experts_per_token=2,
                dtype_bytes=4, expert_intermediate=32)


def longrope(head_dim: int) -> dict[str, Any]:
    """Phi-3.5-MoE's rope_scaling with neutral factor lists (1.0 for each of the head_dim / 2
    frequencies): the published lists are not at hand, and no shape depends on them."""
    ones = [1.0] * (head_dim // 2)
    return {"type": "longrope", "long_mscale": 1.243163121016122,
            "short_mscale": 1.243163121016122, "original_max_position_embeddings": 4096,
            "long_factor": ones, "short_factor": ones}


class PhiMoeFamily(FamilyBase):
    name = "phimoe"
    model_types = ("phimoe",)
    scoring = "softmax"

    def geometry(self, config: dict[str, Any]) -> Geometry:
        g = dense_from_hf_config(
            config, experts=int(config["num_local_experts"]),
            experts_per_token=int(config["num_experts_per_tok"]),
            expert_intermediate=int(config["intermediate_size"]))
        # mlx-lm's rules: head_dim is hidden / heads, lm_head always its own
        return replace(g, head_dim=g.hidden // g.heads, tie_embeddings=False)

    def tensors(self, config: dict[str, Any]) -> list[Tensor]:
        g = self.geometry(config)
        found = embedding("model.embed_tokens", g.vocab, g.hidden)
        for i in range(g.layers):
            prefix = f"model.layers.{i}"
            found += attention(f"{prefix}.self_attn", g.hidden, g.heads, g.kv_heads,
                               g.head_dim, bias=True, out_bias=True)
            found += norm(f"{prefix}.input_layernorm", g.hidden, bias=True)
            found += norm(f"{prefix}.post_attention_layernorm", g.hidden, bias=True)
            found += linear(f"{prefix}.block_sparse_moe.gate", g.experts, g.hidden, "router")
            found += switch_glu(f"{prefix}.block_sparse_moe.switch_mlp", g.experts,
                                g.hidden, g.expert_intermediate)
        return [*found, *norm("model.norm", g.hidden, bias=True),
                *linear("lm_head", g.vocab, g.hidden, "head", bias=True)]

    def hf_config(self, geometry: Geometry) -> dict[str, Any]:
        if geometry.dense_layers or geometry.shared_intermediate:
            raise ValueError("a Phi-3.5-MoE has neither dense layers nor shared experts")
        width = geometry.expert_intermediate or geometry.intermediate
        g = replace(geometry, intermediate=width, head_dim=geometry.hidden // geometry.heads)
        return common_config(g, "PhiMoEForCausalLM") | {
            "num_local_experts": g.experts, "num_experts_per_tok": g.experts_per_token,
            "router_jitter_noise": 0.01, "original_max_position_embeddings": 4096,
            "rope_scaling": longrope(g.head_dim),
        }

    def synthetic_config(self, **overrides: Any) -> dict[str, Any]:
        # A wide jitter band: at the published 0.01 the random router's best logit stands
        # alone in nearly every round (weight 1.0), and a test would see little of the rule.
        return self.hf_config(replace(TINY, **overrides)) | SYNTHETIC_EXTRAS | {
            "max_position_embeddings": 131072, "router_jitter_noise": 0.5}


FAMILY = PhiMoeFamily()
