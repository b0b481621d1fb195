"""OLMoE's capture hooks (imports MLX): `OlmoeSparseMoeBlock` in mlx-lm's olmoe.py. The
block routes its tokens flattened, (L, E); the capture gives them the batch axis back."""

from __future__ import annotations

from mixtui.families.adapters import MoEAdapter
from mixtui.families.qwen3_moe_hooks import chosen_probabilities

# The block's rule is Qwen3-MoE's: the chosen experts' softmax probabilities over all
# experts, renormalised only when its `norm_topk_prob` says so.
ADAPTER = MoEAdapter("olmoe", "mlp", "gate", "switch_mlp", "top_k", chosen_probabilities,
                     scoring="softmax")
