"""MoE families: how each architecture's config maps to a geometry and where its routing is
computed. One module per family (`mixtral`, `qwen3_moe`, `dense`), each implementing
`base.Family`; its MLX part is a separate `<name>_hooks` module, loaded only by the engine.

Importing this package (and every pure family module) never imports MLX.
"""

from __future__ import annotations

from mixtui.families import (
    deepseek_v2,
    deepseek_v3,
    dense,
    glm4_moe,
    gpt_oss,
    granitemoe,
    mixtral,
    olmoe,
    phimoe,
    qwen2_moe,
    qwen3_moe,
    qwen3_next,
)
from mixtui.families.base import Family, Scoring
from mixtui.families.geometry import register_mapping

__all__ = ["FAMILIES", "Family", "Scoring", "family_for", "moe_model_types"]

FAMILIES: tuple[Family, ...] = (mixtral.FAMILY, qwen3_moe.FAMILY, dense.FAMILY)
# family b: gpt-oss, DeepSeek-V2/V3, GLM-4.5
FAMILIES += (gpt_oss.FAMILY, deepseek_v2.FAMILY, deepseek_v3.FAMILY, glm4_moe.FAMILY)
# families a: OLMoE, Qwen2-MoE, Qwen3-Next, Granite MoE, Phi-3.5-MoE
FAMILIES += (olmoe.FAMILY, qwen2_moe.FAMILY, qwen3_next.FAMILY, granitemoe.FAMILY,
             phimoe.FAMILY)
_BY_MODEL_TYPE: dict[str, Family] = {t: f for f in FAMILIES for t in f.model_types}
for _model_type, _family in _BY_MODEL_TYPE.items():
    register_mapping(_model_type, _family.geometry)


def family_for(model_type: str) -> Family | None:
    """The family of a config's `model_type`, or None where mixtui has none."""
    return _BY_MODEL_TYPE.get(model_type)


def moe_model_types() -> tuple[str, ...]:
    """The MoE `model_type`s whose routing mixtui can read and steer."""
    return tuple(t for f in FAMILIES if f.is_moe for t in f.model_types)
