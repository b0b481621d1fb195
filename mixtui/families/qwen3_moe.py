"""Qwen3-MoE (mlx-lm's `qwen3_moe`, `Qwen3MoeSparseMoeBlock`): softmax over all experts,
the top k chosen, their probabilities renormalised when `norm_topk_prob`; routed experts
are `moe_intermediate_size` wide; layers in `mlp_only_layers`, and those off the
`decoder_sparse_step` grid, have a dense feed-forward of `intermediate_size` instead.
Queries and keys are RMS-normalised per head. Pure Python; the hooks are in
`qwen3_moe_hooks`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mixtui.families.base import FamilyBase
from mixtui.families.dense import SYNTHETIC_EXTRAS, common_config, decoder_tensors
from mixtui.families.geometry import Geometry, dense_from_hf_config
from mixtui.families.inventory import Quantization, Tensor, linear, swiglu_mlp, switch_glu

# Three layers, the middle one dense: a MoE layer on each side of a dense one.
TINY = Geometry(model_type="qwen3_moe", layers=3, hidden=64, intermediate=96, heads=4,
                kv_heads=2, head_dim=16, vocab=256, experts=8, experts_per_token=2,
                dtype_bytes=4, expert_intermediate=32, dense_layers=(1,), qk_norm=True)


def dense_layers(config: dict[str, Any]) -> tuple[int, ...]:
    """The layers that Qwen3MoeDecoderLayer builds with a dense MLP (its own rule)."""
    experts = int(config["num_experts"])
    step = int(config.get("decoder_sparse_step") or 1)
    mlp_only = {int(i) for i in config.get("mlp_only_layers") or ()}
    return tuple(i for i in range(int(config["num_hidden_layers"]))
                 if i in mlp_only or not (experts > 0 and (i + 1) % step == 0))


class Qwen3MoeFamily(FamilyBase):
    name = "qwen3_moe"
    model_types = ("qwen3_moe",)
    scoring = "softmax"
    # mlx-lm's qwen3_moe quant_predicate: the router stays at 8 bits
    quant_overrides = {"mlp.gate": Quantization(8, 64)}  # noqa: RUF012

    def geometry(self, config: dict[str, Any]) -> Geometry:
        return dense_from_hf_config(
            config, experts=int(config["num_experts"]),
            experts_per_token=int(config["num_experts_per_tok"]),
            expert_intermediate=int(config["moe_intermediate_size"]),
            dense_layers=dense_layers(config), qk_norm=True)

    def tensors(self, config: dict[str, Any]) -> list[Tensor]:
        g = self.geometry(config)
        dense = set(g.dense_layers)

        def ffn(i: int, prefix: str) -> list[Tensor]:
            if i in dense:
                return swiglu_mlp(f"{prefix}.mlp", g.hidden, g.intermediate, "dense")
            return [*linear(f"{prefix}.mlp.gate", g.experts, g.hidden, "router"),
                    *switch_glu(f"{prefix}.mlp.switch_mlp", g.experts, g.hidden,
                                g.expert_intermediate)]

        return decoder_tensors(g, ffn, qk_norm=True)

    def hf_config(self, geometry: Geometry) -> dict[str, Any]:
        if geometry.shared_intermediate:
            raise ValueError("a Qwen3-MoE has no shared experts")
        return common_config(geometry, "Qwen3MoeForCausalLM") | {
            "num_experts": geometry.experts, "num_experts_per_tok": geometry.experts_per_token,
            "moe_intermediate_size": geometry.expert_intermediate or geometry.intermediate,
            "decoder_sparse_step": 1, "mlp_only_layers": list(geometry.dense_layers),
            "norm_topk_prob": True,
        }

    def synthetic_config(self, **overrides: Any) -> dict[str, Any]:
        return self.hf_config(replace(TINY, **overrides)) | SYNTHETIC_EXTRAS | {
            "rms_norm_eps": 1e-6}


FAMILY = Qwen3MoeFamily()
