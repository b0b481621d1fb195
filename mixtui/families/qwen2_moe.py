"""Qwen2-MoE / Qwen1.5-MoE (mlx-lm's `qwen2_moe`, `Qwen2MoeSparseMoeBlock`): softmax over
all experts, the top k chosen, their probabilities as they are (mlx-lm never renormalises:
it reads no `norm_topk_prob`), plus one shared expert of `shared_expert_intermediate_size`
that every token uses, scaled by `sigmoid(shared_expert_gate(x))`. mlx-lm makes every layer
MoE (it reads neither `decoder_sparse_step` nor `mlp_only_layers`), always builds `lm_head`,
and takes head_dim as hidden / heads. Pure Python; the hooks are in `qwen2_moe_hooks`."""

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
    swiglu_mlp,
    switch_glu,
)

TINY = Geometry(model_type="qwen2_moe", layers=2, hidden=64, intermediate=64, heads=4,
                kv_heads=2, head_dim=16, vocab=256, experts=8, experts_per_token=2,
                dtype_bytes=4, expert_intermediate=32, shared_intermediate=64,
                shared_experts=1)


def shared_expert_tensors(prefix: str, hidden: int, width: int) -> list[Tensor]:
    """Qwen's one shared expert (a SwiGLU MLP) and its scalar gate (Linear(hidden, 1))."""
    return [*swiglu_mlp(f"{prefix}.shared_expert", hidden, width, "shared"),
            *linear(f"{prefix}.shared_expert_gate", 1, hidden, "shared")]


class Qwen2MoeFamily(FamilyBase):
    name = "qwen2_moe"
    model_types = ("qwen2_moe",)
    scoring = "softmax"

    def geometry(self, config: dict[str, Any]) -> Geometry:
        g = dense_from_hf_config(
            config, experts=int(config["num_experts"]),
            experts_per_token=int(config["num_experts_per_tok"]),
            expert_intermediate=int(config["moe_intermediate_size"]),
            shared_intermediate=int(config["shared_expert_intermediate_size"]),
            shared_experts=1)
        # mlx-lm's rules: head_dim is hidden / heads, and the head is never tied
        return replace(g, head_dim=g.hidden // g.heads, tie_embeddings=False)

    def tensors(self, config: dict[str, Any]) -> list[Tensor]:
        g = self.geometry(config)
        found = embedding("model.embed_tokens", g.vocab, g.hidden)
        for i in range(g.layers):
            prefix = f"model.layers.{i}"
            # q, k and v have biases, o has none (Qwen2's attention; no config field)
            found += attention(f"{prefix}.self_attn", g.hidden, g.heads, g.kv_heads,
                               g.head_dim, bias=True)
            found += norm(f"{prefix}.input_layernorm", g.hidden)
            found += norm(f"{prefix}.post_attention_layernorm", g.hidden)
            found += linear(f"{prefix}.mlp.gate", g.experts, g.hidden, "router")
            found += switch_glu(f"{prefix}.mlp.switch_mlp", g.experts, g.hidden,
                                g.expert_intermediate)
            found += shared_expert_tensors(f"{prefix}.mlp", g.hidden, g.shared_intermediate)
        return found + norm("model.norm", g.hidden) + head(g.vocab, g.hidden, False)

    def hf_config(self, geometry: Geometry) -> dict[str, Any]:
        if geometry.dense_layers:
            raise ValueError("mlx-lm builds every layer of a Qwen2-MoE with experts")
        if geometry.shared_experts != 1 or not geometry.shared_intermediate:
            raise ValueError("a Qwen2-MoE has exactly one shared expert")
        return common_config(geometry, "Qwen2MoeForCausalLM") | {
            "num_experts": geometry.experts, "num_experts_per_tok": geometry.experts_per_token,
            "moe_intermediate_size": geometry.expert_intermediate or geometry.intermediate,
            "shared_expert_intermediate_size": geometry.shared_intermediate,
            "decoder_sparse_step": 1, "norm_topk_prob": False,
        }

    def synthetic_config(self, **overrides: Any) -> dict[str, Any]:
        return self.hf_config(replace(TINY, **overrides)) | SYNTHETIC_EXTRAS | {
            "rms_norm_eps": 1e-6}


FAMILY = Qwen2MoeFamily()
