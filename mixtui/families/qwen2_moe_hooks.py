"""Qwen2-MoE's capture hooks (imports MLX): `Qwen2MoeSparseMoeBlock` in mlx-lm's
qwen2_moe.py. The shared expert is not routed: nothing to capture there."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from mixtui.families.adapters import MoEAdapter


def chosen_probabilities(logits: mx.array, indices: mx.array,
                         block: nn.Module | None) -> mx.array:
    # As Qwen2MoeSparseMoeBlock: softmax over all experts, the chosen ones' probabilities,
    # never renormalised (the block has no norm_topk_prob).
    probs = mx.softmax(logits, axis=-1, precise=True)
    return mx.take_along_axis(probs, indices, axis=-1)


ADAPTER = MoEAdapter("qwen2_moe", "mlp", "gate", "switch_mlp", "top_k", chosen_probabilities,
                     scoring="softmax")
