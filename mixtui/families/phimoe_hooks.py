"""Phi-3.5-MoE's capture hooks (imports MLX): `PhiMoESparseMoeBlock` in mlx-lm's
phimoe.py, which turns its router's logits into experts and weights with mlx-lm's own
`sparsemixer`; the weights are recomputed by that same function."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

# mlx-lm's phimoe holds the rule itself (a hooks module is imported by the engine only)
from mlx_lm.models.phimoe import sparsemixer

from mixtui.families.adapters import MoEAdapter

JITTER_DEFAULT = 0.01  # mlx-lm's default router_jitter_noise, for a call without a block


def sparsemixer_weights(logits: mx.array, indices: mx.array,
                        block: nn.Module | None) -> mx.array:
    # The block's own procedure on the same logits: the same experts in the same order
    # (the recorded `indices`) and the weights it multiplied their outputs by.
    jitter = block.jitter_eps if block is not None else JITTER_DEFAULT
    _, scores = sparsemixer(logits, top_k=int(indices.shape[-1]), jitter_eps=jitter)
    return scores


ADAPTER = MoEAdapter("phimoe", "block_sparse_moe", "gate", "switch_mlp", "top_k",
                     sparsemixer_weights, scoring="softmax")
