"""DeepSeek-V2 (mlx-lm's `deepseek_v2`, `DeepseekV2MoE` and its `MoEGate`): a softmax over
all experts, the top k chosen (group-limited when `topk_method` is "group_limited_greedy":
only the `topk_group` groups of `n_group` with the best expert in them compete), their
probabilities times `routed_scaling_factor` as weights (never renormalised: mlx-lm does not
read `norm_topk_prob`); `n_shared_experts` shared experts (one MLP of
`n_shared_experts * moe_intermediate_size`) in every MoE layer; the layers before
`first_k_dense_replace`, and those off the `moe_layer_freq` grid, dense. Multi-head latent
attention (MLA). Pure Python; the hooks are in `deepseek_v2_hooks`.

The MLA helpers here serve DeepSeek-V3 too (`deepseek_v3`).
"""

from __future__ import annotations

from typing import Any

from mixtui.families.base import FamilyBase
from mixtui.families.geometry import Geometry, config_dtype_bytes
from mixtui.families.inventory import (
    Tensor,
    embedding,
    head,
    linear,
    norm,
    swiglu_mlp,
    switch_glu,
)

# mlx-lm 0.32's deepseek_v2.ModelArgs defaults: what a missing field becomes
DEFAULTS: dict[str, Any] = {
    "vocab_size": 102400, "hidden_size": 4096, "intermediate_size": 11008,
    "moe_intermediate_size": 1407, "num_hidden_layers": 30, "num_attention_heads": 32,
    "num_key_value_heads": 32, "n_shared_experts": None, "n_routed_experts": None,
    "routed_scaling_factor": 1.0, "kv_lora_rank": 512, "q_lora_rank": 1536,
    "qk_rope_head_dim": 64, "v_head_dim": 128, "qk_nope_head_dim": 128,
    "topk_method": "gready", "n_group": None, "topk_group": None,
    "num_experts_per_tok": None, "moe_layer_freq": 1, "first_k_dense_replace": 0,
    "attention_bias": False,
}

# DeepSeek-V2-Lite's YaRN scaling: mlx-lm's MLA attention needs a rope_scaling table
YARN = {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 0.707,
        "mscale_all_dim": 0.707, "original_max_position_embeddings": 4096, "type": "yarn"}


def arg(config: dict[str, Any], key: str, defaults: dict[str, Any]) -> Any:
    """A ModelArgs field as mlx-lm reads it: the config's value (None included), else the
    dataclass default."""
    return config[key] if key in config else defaults[key]


def dense_layers(config: dict[str, Any], defaults: dict[str, Any]) -> tuple[int, ...]:
    """The layers DeepseekV2/V3DecoderLayer builds with a dense MLP (their own rule)."""
    if arg(config, "n_routed_experts", defaults) is None:
        return tuple(range(int(arg(config, "num_hidden_layers", defaults))))
    first = int(arg(config, "first_k_dense_replace", defaults))
    freq = int(arg(config, "moe_layer_freq", defaults))
    return tuple(i for i in range(int(arg(config, "num_hidden_layers", defaults)))
                 if not (i >= first and i % freq == 0))


def mla_geometry(config: dict[str, Any], defaults: dict[str, Any]) -> Geometry:
    """DeepSeek's fields → Geometry (heads of the query/key width nope + rope)."""
    a = lambda key: arg(config, key, defaults)  # noqa: E731
    experts = int(a("n_routed_experts") or 0)
    shared = a("n_shared_experts")
    width = int(a("moe_intermediate_size"))
    return Geometry(
        model_type=str(config.get("model_type") or defaults.get("model_type", "")),
        layers=int(a("num_hidden_layers")), hidden=int(a("hidden_size")),
        intermediate=int(a("intermediate_size")), heads=int(a("num_attention_heads")),
        kv_heads=int(a("num_key_value_heads")),
        head_dim=int(a("qk_nope_head_dim")) + int(a("qk_rope_head_dim")),
        vocab=int(a("vocab_size")), experts=experts,
        experts_per_token=int(a("num_experts_per_tok") or 0) if experts else 0,
        tie_embeddings=False,  # lm_head is always its own Linear
        dtype_bytes=config_dtype_bytes(config), expert_intermediate=width,
        shared_intermediate=width * int(shared) if experts and shared else 0,
        shared_experts=int(shared) if experts and shared else 0,
        dense_layers=dense_layers(config, defaults))


def mla_query_tensors(path: str, config: dict[str, Any], defaults: dict[str, Any]
                      ) -> list[Tensor]:
    """The query side of MLA, and the compressed key/value input projection."""
    a = lambda key: arg(config, key, defaults)  # noqa: E731
    hidden, heads = int(a("hidden_size")), int(a("num_attention_heads"))
    q_head = int(a("qk_nope_head_dim")) + int(a("qk_rope_head_dim"))
    bias = bool(a("attention_bias"))
    q_lora = a("q_lora_rank")
    kv_lora = int(a("kv_lora_rank"))
    if q_lora is None:  # DeepSeek-V2-Lite: a plain query projection
        found = linear(f"{path}.q_proj", heads * q_head, hidden, "attention")
    else:
        found = [*linear(f"{path}.q_a_proj", int(q_lora), hidden, "attention", bias=bias),
                 *norm(f"{path}.q_a_layernorm", int(q_lora)),
                 *linear(f"{path}.q_b_proj", heads * q_head, int(q_lora), "attention")]
    found += linear(f"{path}.kv_a_proj_with_mqa", kv_lora + int(a("qk_rope_head_dim")),
                    hidden, "attention", bias=bias)
    found += norm(f"{path}.kv_a_layernorm", kv_lora)
    found += linear(f"{path}.o_proj", hidden, heads * int(a("v_head_dim")), "attention",
                    bias=bias)
    return found


def mla_decoder_tensors(config: dict[str, Any], defaults: dict[str, Any], attention: Any,
                        router: Any) -> list[Tensor]:
    """A DeepSeek decoder: per layer `attention(path)`, two norms and a dense MLP or the MoE
    block (`router(path)`, the routed experts, the shared experts)."""
    g = mla_geometry(config, defaults)
    dense = set(g.dense_layers)
    found = embedding("model.embed_tokens", g.vocab, g.hidden)
    for i in range(g.layers):
        prefix = f"model.layers.{i}"
        found += attention(f"{prefix}.self_attn")
        found += norm(f"{prefix}.input_layernorm", g.hidden)
        found += norm(f"{prefix}.post_attention_layernorm", g.hidden)
        if i in dense:
            found += swiglu_mlp(f"{prefix}.mlp", g.hidden, g.intermediate, "dense")
            continue
        found += router(f"{prefix}.mlp.gate")
        found += switch_glu(f"{prefix}.mlp.switch_mlp", g.experts, g.hidden,
                            g.expert_intermediate)
        if arg(config, "n_shared_experts", defaults) is not None:
            found += swiglu_mlp(f"{prefix}.mlp.shared_experts", g.hidden,
                                g.shared_intermediate, "shared")
    return found + norm("model.norm", g.hidden) + head(g.vocab, g.hidden, tied=False)


def group_limit(experts: int, n_group: int, topk_group: int) -> int:
    """The most experts a token can get when only `topk_group` of `n_group` groups compete."""
    return topk_group * (experts // n_group)


def tiny_fields(defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The Geometry fields a tiny config of these families can be given."""
    unknown = set(overrides) - set(defaults)
    if unknown:
        raise ValueError(f"a tiny {defaults['model_type']} takes only "
                         f"{', '.join(sorted(defaults))}, not {', '.join(sorted(unknown))}")
    return defaults | overrides


class DeepseekV2Family(FamilyBase):
    name = "deepseek_v2"
    model_types = ("deepseek_v2",)
    scoring = "softmax"
    # no quant_predicate: the router (MoEGate, a bare weight) is not a Linear, so mlx-lm's
    # quantizer leaves it in the model's dtype

    def _arg(self, config: dict[str, Any], key: str) -> Any:
        return arg(config, key, DEFAULTS)

    def geometry(self, config: dict[str, Any]) -> Geometry:
        return mla_geometry(config, DEFAULTS)

    def tensors(self, config: dict[str, Any]) -> list[Tensor]:
        heads = int(self._arg(config, "num_attention_heads"))
        nope = int(self._arg(config, "qk_nope_head_dim"))
        v = int(self._arg(config, "v_head_dim"))
        kv_lora = int(self._arg(config, "kv_lora_rank"))
        experts = int(self._arg(config, "n_routed_experts") or 0)
        hidden = int(self._arg(config, "hidden_size"))

        def attention(path: str) -> list[Tensor]:
            # V2 decompresses keys and values with one projection (kv_b_proj)
            return [*mla_query_tensors(path, config, DEFAULTS),
                    *linear(f"{path}.kv_b_proj", heads * (nope + v), kv_lora, "attention")]

        def router(path: str) -> list[Tensor]:
            return [Tensor(f"{path}.weight", (experts, hidden), "router")]

        return mla_decoder_tensors(config, DEFAULTS, attention, router)

    def kv_bytes_per_token(self, config: dict[str, Any], dtype_bytes: int = 2) -> int:
        # mlx-lm's V2 attention caches the decompressed per-head keys (nope + rope wide) and
        # values (v_head_dim), not the compressed latent: kv_lora_rank + rope in the paper.
        a = lambda key: int(self._arg(config, key))  # noqa: E731
        per_head = a("qk_nope_head_dim") + a("qk_rope_head_dim") + a("v_head_dim")
        return a("num_hidden_layers") * a("num_attention_heads") * per_head * dtype_bytes

    def _group_limited(self, config: dict[str, Any]) -> bool:
        return self._arg(config, "topk_method") == "group_limited_greedy"

    def max_experts_per_token(self, config: dict[str, Any]) -> int:
        g = self.geometry(config)
        if not self._group_limited(config):
            return g.experts
        return group_limit(g.experts, int(self._arg(config, "n_group")),
                           int(self._arg(config, "topk_group")))

    def experts_per_token_note(self, config: dict[str, Any]) -> str:
        if not self._group_limited(config):
            return ""
        g = self.geometry(config)
        n_group = int(self._arg(config, "n_group"))
        topk_group = int(self._arg(config, "topk_group"))
        return (f"Routing is group-limited: a token's experts come from its {topk_group} best "
                f"of {n_group} groups of {g.experts // n_group}, so at most "
                f"{self.max_experts_per_token(config)} experts per token.")

    def hf_config(self, geometry: Geometry) -> dict[str, Any]:
        raise ValueError("a DeepSeek-V2 is described by its config.json (MLA ranks, groups, "
                         "dense layers), not by a geometry")

    def synthetic_config(self, **overrides: Any) -> dict[str, Any]:
        fields = tiny_fields({"model_type": "deepseek_v2", "layers": 3, "experts": 16,
                              "experts_per_token": 3, "vocab": 256}, overrides)
        return {
            "model_type": fields["model_type"], "architectures": ["DeepseekV2ForCausalLM"],
            "vocab_size": fields["vocab"], "hidden_size": 64, "intermediate_size": 128,
            "moe_intermediate_size": 32, "num_hidden_layers": fields["layers"],
            "num_attention_heads": 4, "num_key_value_heads": 4,
            # two shared experts, a dense first layer, routed weights scaled (not summing
            # to 1), and group-limited routing: 4 groups of 4, the best 2 compete
            "n_shared_experts": 2, "n_routed_experts": fields["experts"],
            "routed_scaling_factor": 2.0, "kv_lora_rank": 32, "q_lora_rank": 32,
            "qk_rope_head_dim": 8, "v_head_dim": 16, "qk_nope_head_dim": 16,
            "topk_method": "group_limited_greedy", "n_group": 4, "topk_group": 2,
            "num_experts_per_tok": fields["experts_per_token"], "moe_layer_freq": 1,
            "first_k_dense_replace": 1, "max_position_embeddings": 163840,
            "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "rope_scaling": dict(YARN),
            "attention_bias": False, "tie_word_embeddings": False, "torch_dtype": "float32",
            "bos_token_id": 1, "eos_token_id": 2,
        }


FAMILY = DeepseekV2Family()
