"""Mixtral's capture hooks (imports MLX): `MixtralSparseMoeBlock` in mlx-lm's mixtral.py."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from mixtui.families.adapters import MoEAdapter


def softmax_of_chosen(logits: mx.array, indices: mx.array, block: nn.Module | None) -> mx.array:
    # Softmax over the k chosen logits, exactly as MixtralSparseMoeBlock does it.
    chosen = mx.take_along_axis(logits, indices, axis=-1)
    return mx.softmax(chosen, axis=-1, precise=True)


ADAPTER = MoEAdapter("mixtral", "block_sparse_moe", "gate", "switch_mlp",
                     "num_experts_per_tok", softmax_of_chosen, scoring="softmax")
