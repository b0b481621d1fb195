"""Qwen3-Next (mlx-lm's `qwen3_next`): a hybrid of Gated DeltaNet linear attention and
gated full attention (layer i is full attention when (i + 1) % `full_attention_interval`
== 0, else linear), and MoE feed-forwards routed as Qwen3-MoE's (softmax over all experts,
top k, renormalised when `norm_topk_prob`) plus one shared expert behind a sigmoid gate.
Layers in `mlp_only_layers`, or off the `decoder_sparse_step` grid, are dense.

The cache: full-attention layers keep keys and values per token (mlx-lm's KVCache); linear
layers keep a fixed-size state whatever the context (ArraysCache: the convolution's last
`linear_conv_kernel_dim - 1` inputs, and the DeltaNet state, which mlx-lm keeps in float32).
Pure Python; the hooks are in `qwen3_next_hooks`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mixtui.families.base import FamilyBase
from mixtui.families.dense import SYNTHETIC_EXTRAS
from mixtui.families.geometry import Geometry, dense_from_hf_config
from mixtui.families.inventory import (
    Quantization,
    Tensor,
    attention,
    embedding,
    head,
    linear,
    norm,
    swiglu_mlp,
    switch_glu,
)
from mixtui.families.qwen2_moe import shared_expert_tensors
from mixtui.families.qwen3_moe import dense_layers

# Four layers: linear, full, linear, full attention; layer 2 dense (mlp_only_layers).
TINY = Geometry(model_type="qwen3_next", layers=4, hidden=64, intermediate=96, heads=4,
                kv_heads=2, head_dim=16, vocab=256, experts=8, experts_per_token=2,
                dtype_bytes=4, expert_intermediate=32, shared_intermediate=48,
                shared_experts=1, dense_layers=(2,), qk_norm=True)
TINY_LINEAR = {"linear_num_key_heads": 2, "linear_num_value_heads": 4,
               "linear_key_head_dim": 16, "linear_value_head_dim": 16,
               "linear_conv_kernel_dim": 4}
STATE_BYTES = 4  # mlx-lm's gated_delta keeps the recurrent state in float32


def is_linear(config: dict[str, Any], layer: int) -> bool:
    """Qwen3NextDecoderLayer's rule: every `full_attention_interval`-th layer is full."""
    return (layer + 1) % int(config.get("full_attention_interval", 4)) != 0


def full_attention_layers(config: dict[str, Any]) -> tuple[int, ...]:
    return tuple(i for i in range(int(config["num_hidden_layers"]))
                 if not is_linear(config, i))


class Qwen3NextFamily(FamilyBase):
    name = "qwen3_next"
    model_types = ("qwen3_next",)
    scoring = "softmax"
    # mlx-lm's qwen3_next quant_predicate: the router and the shared expert's gate at 8 bits
    quant_overrides = {"mlp.gate": Quantization(8, 64),  # noqa: RUF012
                       "shared_expert_gate": Quantization(8, 64)}

    def geometry(self, config: dict[str, Any]) -> Geometry:
        # heads / kv_heads / head_dim: the full-attention layers' (the linear ones: below)
        return dense_from_hf_config(
            config, experts=int(config["num_experts"]),
            experts_per_token=int(config["num_experts_per_tok"]),
            expert_intermediate=int(config["moe_intermediate_size"]),
            shared_intermediate=int(config["shared_expert_intermediate_size"]),
            shared_experts=1, dense_layers=dense_layers(config), qk_norm=True)

    def tensors(self, config: dict[str, Any]) -> list[Tensor]:
        g = self.geometry(config)
        dense = set(g.dense_layers)
        bias = bool(config.get("attention_bias", False))
        nk, nv = int(config["linear_num_key_heads"]), int(config["linear_num_value_heads"])
        dk, dv = int(config["linear_key_head_dim"]), int(config["linear_value_head_dim"])
        kernel = int(config["linear_conv_kernel_dim"])
        key_dim, value_dim = nk * dk, nv * dv
        conv_dim = 2 * key_dim + value_dim
        found = embedding("model.embed_tokens", g.vocab, g.hidden)
        for i in range(g.layers):
            prefix = f"model.layers.{i}"
            if is_linear(config, i):
                p = f"{prefix}.linear_attn"
                # a depthwise Conv1d over q, k and v: (channels, kernel, 1)
                found.append(Tensor(f"{p}.conv1d.weight", (conv_dim, kernel, 1), "attention"))
                found += linear(f"{p}.in_proj_qkvz", 2 * key_dim + 2 * value_dim, g.hidden,
                                "attention")
                found += linear(f"{p}.in_proj_ba", 2 * nv, g.hidden, "attention")
                found += [Tensor(f"{p}.dt_bias", (nv,), "attention"),
                          Tensor(f"{p}.A_log", (nv,), "attention")]
                found += norm(f"{p}.norm", dv)
                found += linear(f"{p}.out_proj", g.hidden, value_dim, "attention")
            else:
                # q_proj is twice as wide: queries and the output gate
                p = f"{prefix}.self_attn"
                found += linear(f"{p}.q_proj", 2 * g.heads * g.head_dim, g.hidden,
                                "attention", bias=bias)
                found += [t for t in attention(p, g.hidden, g.heads, g.kv_heads, g.head_dim,
                                               bias=bias, out_bias=bias, qk_norm=True)
                          if not t.name.startswith(f"{p}.q_proj.")]
            found += norm(f"{prefix}.input_layernorm", g.hidden)
            found += norm(f"{prefix}.post_attention_layernorm", g.hidden)
            if i in dense:
                found += swiglu_mlp(f"{prefix}.mlp", g.hidden, g.intermediate, "dense")
            else:
                found += linear(f"{prefix}.mlp.gate", g.experts, g.hidden, "router")
                found += switch_glu(f"{prefix}.mlp.switch_mlp", g.experts, g.hidden,
                                    g.expert_intermediate)
                found += shared_expert_tensors(f"{prefix}.mlp", g.hidden,
                                               g.shared_intermediate)
        return found + norm("model.norm", g.hidden) + head(g.vocab, g.hidden, g.tie_embeddings)

    def kv_bytes_per_token(self, config: dict[str, Any], dtype_bytes: int = 2) -> int:
        """Keys and values of the full-attention layers only: the linear ones add nothing."""
        g = self.geometry(config)
        return 2 * len(full_attention_layers(config)) * g.kv_heads * g.head_dim * dtype_bytes

    def linear_state_bytes(self, config: dict[str, Any], dtype_bytes: int = 2) -> int:
        """The fixed state of all linear-attention layers (any context of 1 token or more):
        per layer the convolution's last kernel - 1 inputs (in the model's dtype) and the
        DeltaNet state, value heads x value dim x key dim (float32)."""
        nk, nv = int(config["linear_num_key_heads"]), int(config["linear_num_value_heads"])
        dk, dv = int(config["linear_key_head_dim"]), int(config["linear_value_head_dim"])
        conv_dim = 2 * nk * dk + nv * dv
        conv = (int(config["linear_conv_kernel_dim"]) - 1) * conv_dim * dtype_bytes
        state = nv * dv * dk * STATE_BYTES
        linear_layers = int(config["num_hidden_layers"]) - len(full_attention_layers(config))
        return linear_layers * (conv + state)

    def cache_bytes(self, config: dict[str, Any], tokens: int, dtype_bytes: int = 2) -> int:
        if tokens <= 0:
            return 0
        return (tokens * self.kv_bytes_per_token(config, dtype_bytes)
                + self.linear_state_bytes(config, dtype_bytes))

    def hf_config(self, geometry: Geometry) -> dict[str, Any]:
        raise ValueError("a Qwen3-Next model is described by its config.json (its linear "
                         "attention is not part of a Geometry)")

    def synthetic_config(self, **overrides: Any) -> dict[str, Any]:
        g = replace(TINY, **overrides)
        return {
            "model_type": g.model_type, "architectures": ["Qwen3NextForCausalLM"],
            "hidden_size": g.hidden, "intermediate_size": g.intermediate,
            "num_hidden_layers": g.layers, "num_attention_heads": g.heads,
            "num_key_value_heads": g.kv_heads, "head_dim": g.head_dim, "vocab_size": g.vocab,
            "tie_word_embeddings": g.tie_embeddings,
            "torch_dtype": "float32" if g.dtype_bytes == 4 else "bfloat16",
            "num_experts": g.experts, "num_experts_per_tok": g.experts_per_token,
            "moe_intermediate_size": g.expert_intermediate or g.intermediate,
            "shared_expert_intermediate_size": g.shared_intermediate or g.intermediate,
            "decoder_sparse_step": 1,
            "mlp_only_layers": [i for i in g.dense_layers if i < g.layers],
            "norm_topk_prob": True, "full_attention_interval": 2,
            "partial_rotary_factor": 0.25,
        } | TINY_LINEAR | SYNTHETIC_EXTRAS | {"rms_norm_eps": 1e-6}


FAMILY = Qwen3NextFamily()
