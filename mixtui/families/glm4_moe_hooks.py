"""GLM-4.5's capture hooks (imports MLX): `MoE` in mlx-lm's glm4_moe.py, whose `MoEGate`
(`mlp.gate`) routes as DeepSeek-V3's: a "choice" router, recorded as it hands the chosen
experts and their weights to the block. Dense layers' `mlp` has no `gate`, so
`MoEAdapter.blocks` skips them."""

from __future__ import annotations

from mixtui.families.adapters import MoEAdapter
from mixtui.families.deepseek_v2_hooks import gate_logits

# The scores shown are sigmoid(logits) without the bias: the bias only chooses.
ADAPTER = MoEAdapter("glm4_moe", "mlp", "gate", "switch_mlp", "gate.top_k",
                     scoring="sigmoid", selection_bias_attr="gate.e_score_correction_bias",
                     router_output="choice", choice_logits=gate_logits)
