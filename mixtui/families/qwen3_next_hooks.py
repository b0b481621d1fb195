"""Qwen3-Next's capture hooks (imports MLX): `Qwen3NextSparseMoeBlock` in mlx-lm's
qwen3_next.py. Dense layers' `mlp` has no `gate`, so `MoEAdapter.blocks` skips them; the
shared expert is not routed."""

from __future__ import annotations

from mixtui.families.adapters import MoEAdapter
from mixtui.families.qwen3_moe_hooks import chosen_probabilities

# The block's rule is Qwen3-MoE's: the chosen experts' softmax probabilities over all
# experts, renormalised when its `norm_topk_prob` says so (Qwen3-Next-80B: it does).
ADAPTER = MoEAdapter("qwen3_next", "mlp", "gate", "switch_mlp", "top_k", chosen_probabilities,
                     scoring="softmax")
