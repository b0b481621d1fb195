"""Mixtral (mlx-lm's `mixtral`): every layer MoE, softmax over the k chosen logits. Pure
Python; its hooks (MLX) are in `mixtral_hooks`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mixtui.families.base import FamilyBase
from mixtui.families.dense import SYNTHETIC_EXTRAS, common_config, decoder_tensors
from mixtui.families.geometry import Geometry, dense_from_hf_config
from mixtui.families.inventory import Tensor, linear, switch_glu

TINY = Geometry(model_type="mixtral", layers=2, hidden=64, intermediate=128, heads=4,
                kv_heads=2, head_dim=16, vocab=256, experts=8, experts_per_token=2,
                dtype_bytes=4)


class MixtralFamily(FamilyBase):
    name = "mixtral"
    model_types = ("mixtral",)
    scoring = "softmax"

    def geometry(self, config: dict[str, Any]) -> Geometry:
        # One feed-forward width: the experts' (`intermediate_size`); no dense layers.
        experts = int(config.get("num_local_experts") or 0)
        k = int(config.get("num_experts_per_tok") or 0) if experts else 0
        return dense_from_hf_config(config, experts=experts, experts_per_token=k)

    def tensors(self, config: dict[str, Any]) -> list[Tensor]:
        g = self.geometry(config)
        return decoder_tensors(g, lambda i, prefix: [
            *linear(f"{prefix}.block_sparse_moe.gate", g.experts, g.hidden, "router"),
            *switch_glu(f"{prefix}.block_sparse_moe.switch_mlp", g.experts, g.hidden,
                        g.intermediate)])

    def hf_config(self, geometry: Geometry) -> dict[str, Any]:
        if geometry.dense_layers or geometry.shared_intermediate:
            raise ValueError("a Mixtral has neither dense layers nor shared experts")
        width = geometry.expert_intermediate or geometry.intermediate
        config = common_config(replace(geometry, intermediate=width), "MixtralForCausalLM")
        return config | {"num_local_experts": geometry.experts,
                         "num_experts_per_tok": geometry.experts_per_token}

    def synthetic_config(self, **overrides: Any) -> dict[str, Any]:
        return self.hf_config(replace(TINY, **overrides)) | SYNTHETIC_EXTRAS


FAMILY = MixtralFamily()
