"""gpt-oss's capture hooks (imports MLX): `MLPBlock` in mlx-lm's gpt_oss.py, whose router
(`mlp.router`, a Linear with a bias) gives the logits and whose expert bank
(`mlp.experts`, a SwitchGLU) is called with the chosen ids."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from mixtui.families.adapters import MoEAdapter


def softmax_of_chosen(logits: mx.array, indices: mx.array, block: nn.Module | None) -> mx.array:
    # As MLPBlock: the k chosen logits (bias included: it is part of the router's output),
    # then a softmax over those k only.
    chosen = mx.take_along_axis(logits, indices, axis=-1)
    return mx.softmax(chosen, axis=-1, precise=True)


ADAPTER = MoEAdapter("gpt_oss", "mlp", "router", "experts", "num_experts_per_tok",
                     softmax_of_chosen, scoring="softmax")
