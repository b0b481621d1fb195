"""Each family's list of tensors (mixtui.families.inventory) against the model mlx-lm's own
classes build from the same config: the same parameter names and shapes, the same matrices
quantizable, the same quantization exceptions; at the tiny test geometry of every family and
at every registry entry's published geometry (the weights are lazy: nothing is allocated).
Then the figures that follow: totals and active parameters against the published counts.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from mlx.utils import tree_flatten

from mixtui.families import FAMILIES, family_for
from mixtui.families.inventory import Quantization
from mixtui.registry.loader import load_registry

REGISTRY = load_registry(include_user=False)
# a registry geometry of the old [geometry] kind lacks the fields mlx-lm needs but that do
# not change any shape (eps, rope); the family's tiny config has them
_SHAPE_FREE = ("rms_norm_eps", "rope_theta", "max_position_embeddings")


def build(config: dict[str, Any]) -> Any:
    from mlx_lm.utils import MODEL_REMAPPING

    model_type = MODEL_REMAPPING.get(config["model_type"], config["model_type"])
    arch = importlib.import_module(f"mlx_lm.models.{model_type}")
    return arch.Model(arch.ModelArgs.from_dict(config))


def mlx_view(model: Any) -> tuple[dict[str, tuple[int, ...]], set[str], dict[str, Any]]:
    shapes = {name: tuple(a.shape) for name, a in tree_flatten(model.parameters())}
    quantizable = {f"{path}.weight" for path, m in model.named_modules()
                   if hasattr(m, "to_quantized") and "weight" in m}
    predicate = getattr(model, "quant_predicate", None)
    special = {}
    if predicate is not None:
        for path, m in model.named_modules():
            if f"{path}.weight" in quantizable:
                verdict = predicate(path, m)
                if isinstance(verdict, dict):
                    special[path] = verdict
    return shapes, quantizable, special


def assert_inventory_is_mlx_lm(config: dict[str, Any]) -> None:
    family = family_for(config["model_type"])
    assert family is not None
    tensors = family.tensors(config)
    shapes, quantizable, special = mlx_view(build(config))
    ours = {t.name: t.shape for t in tensors}
    assert len(ours) == len(tensors), "a tensor is listed twice"
    assert ours == shapes
    assert {t.name for t in tensors if t.quantizable} == quantizable
    overrides = family.quant_overrides
    for t in tensors:
        if not t.quantizable:
            continue
        matched = [q for suffix, q in overrides.items() if t.module.endswith(suffix)]
        if t.module in special:
            want = special[t.module]
            assert matched and (matched[0].bits, matched[0].group_size) == (
                want["bits"], want["group_size"]), t.module
        else:
            assert not matched, t.module


TINY = [(t, f.synthetic_config(model_type=t)) for f in FAMILIES for t in f.model_types]


@pytest.mark.parametrize("config", [c for _, c in TINY], ids=[t for t, _ in TINY])
def test_tensors_of_every_tiny_model_are_mlx_lm_s(config: dict[str, Any]) -> None:
    assert_inventory_is_mlx_lm(config)


@pytest.mark.parametrize("key", [k for k, s in REGISTRY.items() if s.family is not None])
def test_tensors_at_every_published_geometry_are_mlx_lm_s(key: str) -> None:
    spec = REGISTRY[key]
    family = spec.family
    assert family is not None
    extras = {k: v for k, v in family.synthetic_config().items() if k in _SHAPE_FREE}
    assert_inventory_is_mlx_lm(extras | spec.hf_config)


def test_quantized_bytes_follow_mlx_lm_s_rule() -> None:
    # 4-bit/64: 4.5 bits a weight; MXFP4: 4.25; a matrix whose rows do not divide into
    # groups stays as it is; the family's exception (Qwen3's router) at 8 bits
    q4 = Quantization(4, 64)
    assert q4.bytes_for(64 * 1000) == 64 * 1000 * 4.5 / 8
    assert Quantization(4, 32, "mxfp4").bytes_for(32 * 1000) == 32 * 1000 * 4.25 / 8
    spec = REGISTRY["qwen3-30b-a3b-instruct"]
    inv = spec.inventory
    assert inv is not None
    plain = inv.weight_bytes(q4, 2)
    routers = sum(t.size for t in inv.tensors if t.role == "router")
    assert spec.weight_bytes() - plain == routers * (8.5 - 4.5) / 8
