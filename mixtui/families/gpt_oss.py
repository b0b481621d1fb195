"""gpt-oss (mlx-lm's `gpt_oss`, `MLPBlock`): a router Linear with a bias, the top k of its
logits chosen and a softmax over those k only; every layer MoE (no dense layers, no shared
experts); experts with biases and a clamped SwiGLU; attention with biases and learned
sinks, alternating sliding-window and full attention (`layer_types`), each with its own
cache (`Model.make_cache`). mlx-lm's ModelArgs defaults are gpt-oss-120b's geometry, so a
field a config lacks is read at that default here too. Pure Python; the hooks are in
`gpt_oss_hooks`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mixtui.families.base import FamilyBase
from mixtui.families.geometry import Geometry, config_dtype_bytes
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

# mlx-lm 0.32's gpt_oss.ModelArgs defaults (gpt-oss-120b): what a missing field becomes
DEFAULTS: dict[str, Any] = {
    "num_hidden_layers": 36, "num_local_experts": 128, "num_experts_per_tok": 4,
    "vocab_size": 201088, "rms_norm_eps": 1e-05, "hidden_size": 2880,
    "intermediate_size": 2880, "head_dim": 64, "num_attention_heads": 64,
    "num_key_value_heads": 8, "sliding_window": 128, "rope_theta": 150000,
}

# Four layers: two sliding-window, two full; a window of 8 tokens, so that the tests'
# prompts and answers run past it and the sliding caches rotate.
TINY = Geometry(model_type="gpt_oss", layers=4, hidden=64, intermediate=32, heads=4,
                kv_heads=2, head_dim=16, vocab=256, experts=8, experts_per_token=2,
                dtype_bytes=4, expert_intermediate=32)
TINY_WINDOW = 8


def _get(config: dict[str, Any], key: str) -> Any:
    value = config.get(key)
    return DEFAULTS[key] if value is None else value


def layer_types(config: dict[str, Any]) -> list[str]:
    """Each layer's attention as GptOssMoeModel reads it: `layer_types`, or sliding and full
    alternating, sliding first."""
    given = config.get("layer_types")
    if given:
        return [str(t) for t in given]
    return ["sliding_attention", "full_attention"] * (int(_get(config, "num_hidden_layers")) // 2)


class GptOssFamily(FamilyBase):
    name = "gpt_oss"
    model_types = ("gpt_oss",)
    scoring = "softmax"
    # mlx-lm's gpt_oss quant_predicate: the router stays at 8 bits
    quant_overrides = {"mlp.router": Quantization(8, 64)}  # noqa: RUF012

    def geometry(self, config: dict[str, Any]) -> Geometry:
        width = int(_get(config, "intermediate_size"))
        return Geometry(
            model_type=str(config.get("model_type") or "gpt_oss"),
            layers=int(_get(config, "num_hidden_layers")),
            hidden=int(_get(config, "hidden_size")), intermediate=width,
            heads=int(_get(config, "num_attention_heads")),
            kv_heads=int(_get(config, "num_key_value_heads")),
            head_dim=int(_get(config, "head_dim")), vocab=int(_get(config, "vocab_size")),
            experts=int(_get(config, "num_local_experts")),
            # mlx-lm reads num_experts_per_tok (the HF config also has experts_per_token)
            experts_per_token=int(_get(config, "num_experts_per_tok")),
            tie_embeddings=False,  # lm_head is always its own Linear
            dtype_bytes=config_dtype_bytes(config), expert_intermediate=width)

    def tensors(self, config: dict[str, Any]) -> list[Tensor]:
        g = self.geometry(config)
        found = embedding("model.embed_tokens", g.vocab, g.hidden)
        for i in range(g.layers):
            prefix = f"model.layers.{i}"
            found += attention(f"{prefix}.self_attn", g.hidden, g.heads, g.kv_heads,
                               g.head_dim, bias=True, out_bias=True)
            found.append(Tensor(f"{prefix}.self_attn.sinks", (g.heads,), "attention"))
            found += norm(f"{prefix}.input_layernorm", g.hidden)
            found += norm(f"{prefix}.post_attention_layernorm", g.hidden)
            found += linear(f"{prefix}.mlp.router", g.experts, g.hidden, "router", bias=True)
            found += switch_glu(f"{prefix}.mlp.experts", g.experts, g.hidden,
                                g.expert_intermediate, bias=True)
        return found + norm("model.norm", g.hidden) + head(g.vocab, g.hidden, tied=False)

    def _per_layer_token_bytes(self, config: dict[str, Any], dtype_bytes: int) -> int:
        g = self.geometry(config)
        return 2 * g.kv_heads * g.head_dim * dtype_bytes  # keys and values

    def kv_bytes_per_token(self, config: dict[str, Any], dtype_bytes: int = 2) -> int:
        # Once the window is full a sliding layer's RotatingKVCache grows no more: only the
        # full-attention layers add bytes per further token.
        full = layer_types(config).count("full_attention")
        return full * self._per_layer_token_bytes(config, dtype_bytes)

    def cache_bytes(self, config: dict[str, Any], tokens: int, dtype_bytes: int = 2) -> int:
        # make_cache: KVCache (every token) for full attention, RotatingKVCache of
        # `sliding_window` tokens for sliding attention (its size between prompt chunks:
        # within a chunk of S tokens it briefly holds window - 1 + S).
        types = layer_types(config)
        window = int(_get(config, "sliding_window"))
        per = self._per_layer_token_bytes(config, dtype_bytes)
        full = types.count("full_attention")
        sliding = len(types) - full
        return per * (full * tokens + sliding * min(tokens, window))

    def hf_config(self, geometry: Geometry) -> dict[str, Any]:
        if geometry.dense_layers or geometry.shared_intermediate:
            raise ValueError("a gpt-oss has neither dense layers nor shared experts")
        width = geometry.expert_intermediate or geometry.intermediate
        return {
            "model_type": geometry.model_type, "architectures": ["GptOssForCausalLM"],
            "num_hidden_layers": geometry.layers, "hidden_size": geometry.hidden,
            "intermediate_size": width, "num_attention_heads": geometry.heads,
            "num_key_value_heads": geometry.kv_heads, "head_dim": geometry.head_dim,
            "vocab_size": geometry.vocab, "num_local_experts": geometry.experts,
            "num_experts_per_tok": geometry.experts_per_token,
            "experts_per_token": geometry.experts_per_token,
            "layer_types": ["sliding_attention", "full_attention"] * (geometry.layers // 2),
            "sliding_window": DEFAULTS["sliding_window"], "tie_word_embeddings": False,
            "torch_dtype": "float32" if geometry.dtype_bytes == 4 else "bfloat16",
        }

    def synthetic_config(self, **overrides: Any) -> dict[str, Any]:
        g = replace(TINY, **overrides)
        return self.hf_config(g) | {
            "sliding_window": TINY_WINDOW, "rms_norm_eps": 1e-5, "rope_theta": 150000,
            # gpt-oss's own YaRN scaling, so that the tiny model takes the same rope path
            "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0,
                             "beta_slow": 1.0, "original_max_position_embeddings": 4096,
                             "truncate": False},
            "max_position_embeddings": 131072, "bos_token_id": 1, "eos_token_id": 2,
        }


FAMILY = GptOssFamily()
