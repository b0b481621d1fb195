"""DeepSeek-V3's capture hooks (imports MLX): `DeepseekV3MoE` in mlx-lm's deepseek_v3.py.
Its router, `MoEGate` (`mlp.gate`), returns the chosen experts and their weights (chosen
with the selection bias, weighted without it): a "choice" router, recorded as it hands
them to the block. Dense layers' `mlp` has no `gate`, so `MoEAdapter.blocks` skips them."""

from __future__ import annotations

from mixtui.families.adapters import MoEAdapter
from mixtui.families.deepseek_v2_hooks import gate_logits

# The scores shown are sigmoid(logits) without the bias: the bias only chooses.
ADAPTER = MoEAdapter("deepseek_v3", "mlp", "gate", "switch_mlp", "gate.top_k",
                     scoring="sigmoid", selection_bias_attr="gate.e_score_correction_bias",
                     router_output="choice", choice_logits=gate_logits)
