"""DeepSeek-V3 (mlx-lm's `deepseek_v3`, `DeepseekV3MoE` and its `MoEGate`): a sigmoid score
per expert; `e_score_correction_bias` added to the scores to choose (only the `topk_group`
of `n_group` groups whose two best biased scores sum highest compete), never to weight;
the chosen unbiased scores renormalised (`norm_topk_prob`, and k > 1) and times
`routed_scaling_factor`. Shared experts, dense first layers and MLA attention as in
DeepSeek-V2 (`deepseek_v2`), but mlx-lm's V3 attention caches the compressed latent. Pure
Python; the hooks are in `deepseek_v3_hooks`."""

from __future__ import annotations

from typing import Any

from mixtui.families.base import FamilyBase
from mixtui.families.deepseek_v2 import (
    DEFAULTS as V2_DEFAULTS,
)
from mixtui.families.deepseek_v2 import (
    arg,
    group_limit,
    mla_decoder_tensors,
    mla_geometry,
    mla_query_tensors,
    tiny_fields,
)
from mixtui.families.geometry import Geometry
from mixtui.families.inventory import Tensor

# mlx-lm 0.32's deepseek_v3.ModelArgs defaults: V2's, with its own routing defaults
DEFAULTS: dict[str, Any] = V2_DEFAULTS | {
    "topk_method": "noaux_tc", "scoring_func": "sigmoid", "norm_topk_prob": True,
    "n_group": 1, "topk_group": 1, "num_experts_per_tok": 1,
}


def sigmoid_router(path: str, experts: int, hidden: int) -> list[Tensor]:
    """MoEGate of DeepSeek-V3 and GLM-4.5: a bare weight (not a Linear: never quantized)
    and the selection bias."""
    return [Tensor(f"{path}.weight", (experts, hidden), "router"),
            # mlx-lm's cast_predicate keeps it in float32 (mlx_lm.convert never casts it)
            Tensor(f"{path}.e_score_correction_bias", (experts,), "router", dtype_bytes=4)]


def sigmoid_group_limit(config: dict[str, Any], defaults: dict[str, Any], experts: int
                        ) -> tuple[int, str]:
    """(most experts per token, the sentence that says why) for noaux_tc routing."""
    n_group, topk_group = int(arg(config, "n_group", defaults)), int(
        arg(config, "topk_group", defaults))
    if n_group <= 1:
        return experts, ""
    most = group_limit(experts, n_group, topk_group)
    return most, (f"Routing is group-limited: a token's experts come from its {topk_group} "
                  f"best of {n_group} groups of {experts // n_group}, so at most {most} "
                  "experts per token.")


class DeepseekV3Family(FamilyBase):
    name = "deepseek_v3"
    model_types = ("deepseek_v3",)
    scoring = "sigmoid"
    # no quant_predicate (the router is not a Linear, so it stays in the model's dtype)

    def _arg(self, config: dict[str, Any], key: str) -> Any:
        return arg(config, key, DEFAULTS)

    def geometry(self, config: dict[str, Any]) -> Geometry:
        return mla_geometry(config, DEFAULTS)

    def tensors(self, config: dict[str, Any]) -> list[Tensor]:
        a = lambda key: self._arg(config, key)  # noqa: E731
        heads, kv_lora = int(a("num_attention_heads")), int(a("kv_lora_rank"))
        nope, v = int(a("qk_nope_head_dim")), int(a("v_head_dim"))
        experts, hidden = int(a("n_routed_experts") or 0), int(a("hidden_size"))

        def attention(path: str) -> list[Tensor]:
            # V3 absorbs kv_b_proj into two per-head MultiLinears (mlx-lm's sanitize splits
            # it): queries into the latent, and the latent out into values
            return [*mla_query_tensors(path, config, DEFAULTS),
                    Tensor(f"{path}.embed_q.weight", (heads, kv_lora, nope), "attention",
                           quantizable=True),
                    Tensor(f"{path}.unembed_out.weight", (heads, v, kv_lora), "attention",
                           quantizable=True)]

        return mla_decoder_tensors(config, DEFAULTS, attention,
                                   lambda path: sigmoid_router(path, experts, hidden))

    def kv_bytes_per_token(self, config: dict[str, Any], dtype_bytes: int = 2) -> int:
        # mlx-lm's V3 attention caches the compressed latent (kv_lora_rank) and the shared
        # rotary key (qk_rope_head_dim): one "head" per layer, the paper's MLA cache
        a = lambda key: int(self._arg(config, key))  # noqa: E731
        return (a("num_hidden_layers") * (a("kv_lora_rank") + a("qk_rope_head_dim"))
                * dtype_bytes)

    def max_experts_per_token(self, config: dict[str, Any]) -> int:
        return sigmoid_group_limit(config, DEFAULTS, self.geometry(config).experts)[0]

    def experts_per_token_note(self, config: dict[str, Any]) -> str:
        return sigmoid_group_limit(config, DEFAULTS, self.geometry(config).experts)[1]

    def hf_config(self, geometry: Geometry) -> dict[str, Any]:
        raise ValueError("a DeepSeek-V3 is described by its config.json (MLA ranks, groups, "
                         "dense layers), not by a geometry")

    def synthetic_config(self, **overrides: Any) -> dict[str, Any]:
        fields = tiny_fields({"model_type": "deepseek_v3", "layers": 3, "experts": 16,
                              "experts_per_token": 3, "vocab": 256}, overrides)
        return {
            "model_type": fields["model_type"], "architectures": ["DeepseekV3ForCausalLM"],
            "vocab_size": fields["vocab"], "hidden_size": 64, "intermediate_size": 128,
            "moe_intermediate_size": 32, "num_hidden_layers": fields["layers"],
            "num_attention_heads": 4, "num_key_value_heads": 4,
            # one shared expert, a dense first layer, weights renormalised and scaled by
            # 2.5, group-limited routing (4 groups of 4, the best 2 compete)
            "n_shared_experts": 1, "n_routed_experts": fields["experts"],
            "routed_scaling_factor": 2.5, "kv_lora_rank": 32, "q_lora_rank": 32,
            "qk_rope_head_dim": 8, "v_head_dim": 16, "qk_nope_head_dim": 16,
            "topk_method": "noaux_tc", "scoring_func": "sigmoid", "norm_topk_prob": True,
            "n_group": 4, "topk_group": 2, "num_experts_per_tok": fields["experts_per_token"],
            "moe_layer_freq": 1, "first_k_dense_replace": 1,
            "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
            "rope_scaling": None, "attention_bias": False, "tie_word_embeddings": False,
            "torch_dtype": "float32", "bos_token_id": 1, "eos_token_id": 2,
        }


FAMILY = DeepseekV3Family()
