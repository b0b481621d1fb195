"""GLM-4.5 (mlx-lm's `glm4_moe`, `MoE` and its `MoEGate`): DeepSeek-V3's routing — sigmoid
scores, `e_score_correction_bias` for choosing only, group-limited when `n_group > 1`,
weights from the unbiased scores renormalised (`norm_topk_prob`, k > 1) and times
`routed_scaling_factor` — with grouped-query attention (biased q/k/v, optional per-head
q/k norms, rotary on `partial_rotary_factor` of each head), `n_shared_experts` shared
experts and the first `first_k_dense_replace` layers dense. Pure Python; the hooks are in
`glm4_moe_hooks`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mixtui.families.base import FamilyBase
from mixtui.families.deepseek_v2 import tiny_fields
from mixtui.families.deepseek_v3 import sigmoid_group_limit, sigmoid_router
from mixtui.families.geometry import Geometry, dense_from_hf_config
from mixtui.families.inventory import (
    Tensor,
    attention,
    embedding,
    head,
    norm,
    swiglu_mlp,
    switch_glu,
)

# mlx-lm 0.32's glm4_moe.ModelArgs has defaults only for these two (both asserted)
DEFAULTS: dict[str, Any] = {"scoring_func": "sigmoid", "topk_method": "noaux_tc"}


class Glm4MoeFamily(FamilyBase):
    name = "glm4_moe"
    model_types = ("glm4_moe",)
    scoring = "sigmoid"
    # no quant_predicate (the router is not a Linear, so it stays in the model's dtype)

    def geometry(self, config: dict[str, Any]) -> Geometry:
        width = int(config["moe_intermediate_size"])
        shared = int(config["n_shared_experts"])
        first = int(config["first_k_dense_replace"])
        g = dense_from_hf_config(
            config, experts=int(config["n_routed_experts"]),
            experts_per_token=int(config["num_experts_per_tok"]),
            expert_intermediate=width, shared_intermediate=width * shared,
            shared_experts=shared,
            dense_layers=tuple(range(min(first, int(config["num_hidden_layers"])))),
            qk_norm=bool(config["use_qk_norm"]))
        return replace(g, tie_embeddings=False)  # lm_head is always its own Linear

    def tensors(self, config: dict[str, Any]) -> list[Tensor]:
        g = self.geometry(config)
        dense = set(g.dense_layers)
        found = embedding("model.embed_tokens", g.vocab, g.hidden)
        for i in range(g.layers):
            prefix = f"model.layers.{i}"
            found += attention(f"{prefix}.self_attn", g.hidden, g.heads, g.kv_heads,
                               g.head_dim, bias=bool(config["attention_bias"]),
                               qk_norm=g.qk_norm)
            found += norm(f"{prefix}.input_layernorm", g.hidden)
            found += norm(f"{prefix}.post_attention_layernorm", g.hidden)
            if i in dense:
                found += swiglu_mlp(f"{prefix}.mlp", g.hidden, g.intermediate, "dense")
                continue
            found += sigmoid_router(f"{prefix}.mlp.gate", g.experts, g.hidden)
            found += switch_glu(f"{prefix}.mlp.switch_mlp", g.experts, g.hidden,
                                g.expert_intermediate)
            found += swiglu_mlp(f"{prefix}.mlp.shared_experts", g.hidden,
                                g.shared_intermediate, "shared")
        return found + norm("model.norm", g.hidden) + head(g.vocab, g.hidden, tied=False)

    # kv_bytes_per_token: FamilyBase's (grouped-query keys and values in every layer, of
    # `head_dim`, which need not be hidden / heads), in mlx-lm's default cache

    def max_experts_per_token(self, config: dict[str, Any]) -> int:
        return sigmoid_group_limit(config, DEFAULTS, self.geometry(config).experts)[0]

    def experts_per_token_note(self, config: dict[str, Any]) -> str:
        return sigmoid_group_limit(config, DEFAULTS, self.geometry(config).experts)[1]

    def hf_config(self, geometry: Geometry) -> dict[str, Any]:
        raise ValueError("a GLM-4.5 is described by its config.json (groups, scaling, rotary "
                         "fraction), not by a geometry")

    def synthetic_config(self, **overrides: Any) -> dict[str, Any]:
        fields = tiny_fields({"model_type": "glm4_moe", "layers": 3, "experts": 16,
                              "experts_per_token": 3, "vocab": 256}, overrides)
        return {
            "model_type": fields["model_type"], "architectures": ["Glm4MoeForCausalLM"],
            "vocab_size": fields["vocab"], "hidden_size": 64, "intermediate_size": 128,
            "max_position_embeddings": 4096, "moe_intermediate_size": 32,
            "num_attention_heads": 4, "num_key_value_heads": 2,
            # heads x head_dim (128) is not hidden (64), as in GLM-4.5; rotary on half
            "head_dim": 32, "partial_rotary_factor": 0.5,
            # one shared expert, a dense first layer, weights renormalised and scaled by
            # 1.5, group-limited routing (4 groups of 4, the best 2 compete)
            "norm_topk_prob": True, "n_group": 4, "topk_group": 2, "n_shared_experts": 1,
            "n_routed_experts": fields["experts"], "routed_scaling_factor": 1.5,
            "num_experts_per_tok": fields["experts_per_token"], "first_k_dense_replace": 1,
            "num_hidden_layers": fields["layers"], "rms_norm_eps": 1e-5,
            "rope_theta": 1000000.0, "rope_scaling": None, "use_qk_norm": True,
            "tie_word_embeddings": False, "attention_bias": True, "torch_dtype": "float32",
            "bos_token_id": 1, "eos_token_id": 2,
        }


FAMILY = Glm4MoeFamily()
