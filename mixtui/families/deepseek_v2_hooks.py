"""DeepSeek-V2's capture hooks (imports MLX): `DeepseekV2MoE` in mlx-lm's deepseek_v2.py.
Its router, `MoEGate` (`mlp.gate`), returns the chosen experts and their weights: a
"choice" router, recorded as it hands them to the block. Dense layers' `mlp` has no
`gate`, so `MoEAdapter.blocks` skips them."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from mixtui.families.adapters import MoEAdapter


def gate_logits(gate: nn.Module, x: mx.array) -> mx.array:
    # MoEGate's own first step (`x @ self.weight.T`): its scores over all experts come from
    # these; the choice and the weights are taken from the gate's output, not from here.
    logits: mx.array = x @ gate.weight.T
    return logits


ADAPTER = MoEAdapter("deepseek_v2", "mlp", "gate", "switch_mlp", "gate.top_k",
                     scoring="softmax", router_output="choice", choice_logits=gate_logits)
