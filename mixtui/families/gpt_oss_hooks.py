"""gpt-oss's capture hooks (imports MLX): `MLPBlock` in mlx-lm's gpt_oss.py, whose router
(`mlp.router`, a Linear with a bias) gives the logits and whose expert bank
(`mlp.experts`, a SwitchGLU) is called with the chosen ids."""

from __future__ import annotations

from mixtui.families.adapters import MoEAdapter
from mixtui.families.mixtral_hooks import softmax_of_chosen

# As MLPBlock: the k chosen logits (the router's bias is part of its output), then a
# softmax over those k only: Mixtral's rule
ADAPTER = MoEAdapter("gpt_oss", "mlp", "router", "experts", "num_experts_per_tok",
                     softmax_of_chosen, scoring="softmax")
