"""Qwen2-MoE's capture hooks (imports MLX): `Qwen2MoeSparseMoeBlock` in mlx-lm's
qwen2_moe.py. Its routed experts are weighted as Qwen3-MoE's, never renormalised (the block
has no `norm_topk_prob`); the sigmoid-gated shared expert is not routed."""

from __future__ import annotations

from mixtui.families.adapters import MoEAdapter
from mixtui.families.qwen3_moe_hooks import chosen_probabilities

ADAPTER = MoEAdapter("qwen2_moe", "mlp", "gate", "switch_mlp", "top_k", chosen_probabilities,
                     scoring="softmax")
