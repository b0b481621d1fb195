"""Dense Mistral and Llama: no experts, so no routing to capture. Pure Python."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mixtui.families.base import FamilyBase
from mixtui.families.geometry import Geometry, dense_from_hf_config
from mixtui.families.inventory import Tensor, attention, embedding, head, norm, swiglu_mlp

ARCHITECTURES = {"mistral": "MistralForCausalLM", "llama": "LlamaForCausalLM"}
# The common tail of a tiny test model's config (mlx-lm needs these; their values do not
# change the parameter count).
SYNTHETIC_EXTRAS: dict[str, Any] = {
    "rms_norm_eps": 1e-5, "rope_theta": 1e6, "max_position_embeddings": 32768,
    "bos_token_id": 1, "eos_token_id": 2,
}
TINY = Geometry(model_type="mistral", layers=2, hidden=64, intermediate=128, heads=4,
                kv_heads=2, head_dim=16, vocab=256, dtype_bytes=4)


def decoder_tensors(g: Geometry, ffn: Any, *, qk_norm: bool = False) -> list[Tensor]:
    """A Llama-style decoder (mlx-lm's llama, mistral, mixtral, qwen3_moe): the embedding,
    per layer attention, two norms and the feed-forward `ffn(layer, prefix)` gives, then the
    final norm and the head."""
    found = embedding("model.embed_tokens", g.vocab, g.hidden)
    for i in range(g.layers):
        prefix = f"model.layers.{i}"
        found += attention(f"{prefix}.self_attn", g.hidden, g.heads, g.kv_heads, g.head_dim,
                           qk_norm=qk_norm)
        found += norm(f"{prefix}.input_layernorm", g.hidden)
        found += norm(f"{prefix}.post_attention_layernorm", g.hidden)
        found += ffn(i, prefix)
    return found + norm("model.norm", g.hidden) + head(g.vocab, g.hidden, g.tie_embeddings)


def common_config(g: Geometry, architecture: str) -> dict[str, Any]:
    """The config.json fields every decoder-only family shares."""
    return {
        "model_type": g.model_type, "architectures": [architecture],
        "hidden_size": g.hidden, "intermediate_size": g.intermediate,
        "num_hidden_layers": g.layers, "num_attention_heads": g.heads,
        "num_key_value_heads": g.kv_heads, "head_dim": g.head_dim, "vocab_size": g.vocab,
        "tie_word_embeddings": g.tie_embeddings,
        "torch_dtype": "float32" if g.dtype_bytes == 4 else "bfloat16",
    }


class DenseFamily(FamilyBase):
    name = "dense"
    model_types = ("mistral", "llama")
    is_moe = False

    def geometry(self, config: dict[str, Any]) -> Geometry:
        return dense_from_hf_config(config)

    def tensors(self, config: dict[str, Any]) -> list[Tensor]:
        g = self.geometry(config)
        return decoder_tensors(g, lambda i, prefix: swiglu_mlp(f"{prefix}.mlp", g.hidden,
                                                                g.intermediate, "dense"))

    def hf_config(self, geometry: Geometry) -> dict[str, Any]:
        return common_config(geometry, ARCHITECTURES.get(geometry.model_type,
                                                         "MistralForCausalLM"))

    def synthetic_config(self, **overrides: Any) -> dict[str, Any]:
        g = replace(TINY, **overrides)
        return self.hf_config(g) | SYNTHETIC_EXTRAS


FAMILY = DenseFamily()
