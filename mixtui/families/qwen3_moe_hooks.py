"""Qwen3-MoE's capture hooks (imports MLX): `Qwen3MoeSparseMoeBlock` in mlx-lm's
qwen3_moe.py. Dense layers' `mlp` has no `gate`, so `MoEAdapter.blocks` skips them."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from mixtui.families.adapters import MoEAdapter


def chosen_probabilities(logits: mx.array, indices: mx.array,
                         block: nn.Module | None) -> mx.array:
    # As Qwen3MoeSparseMoeBlock: softmax over all experts, the chosen ones' probabilities,
    # renormalised to sum to 1 only when the block's `norm_topk_prob` says so.
    probs = mx.softmax(logits, axis=-1, precise=True)
    scores = mx.take_along_axis(probs, indices, axis=-1)
    # (a block without the setting, as Qwen2-MoE's in mlx-lm, never renormalises)
    if block is not None and getattr(block, "norm_topk_prob", False):
        scores = scores / mx.sum(scores, axis=-1, keepdims=True)
    return scores


ADAPTER = MoEAdapter("qwen3_moe", "mlp", "gate", "switch_mlp", "top_k", chosen_probabilities,
                     scoring="softmax")
