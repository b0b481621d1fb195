"""Granite MoE's capture hooks (imports MLX): `GraniteMoeMoE` in mlx-lm's granitemoe.py,
whose router (`GraniteMoeTopKGating`) returns (indices, weights): a "choice" router, its
weights recorded as they come out."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from mixtui.families.adapters import MoEAdapter


def router_logits(router: Any, x: mx.array) -> mx.array:
    # The gating module's own Linear: the logits it chose the top k of.
    logits: mx.array = router.layer(x)
    return logits


ADAPTER = MoEAdapter("granitemoe", "block_sparse_moe", "router", "switch_mlp", "router.top_k",
                     scoring="softmax", router_output="choice", choice_logits=router_logits)
