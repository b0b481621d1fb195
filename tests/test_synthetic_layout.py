"""Full-size synthetic models in the real MLX checkpoint's layout.

The layout is checked against what mlx-lm's own conversion (`mlx_lm.convert`, the path
the mlx-community checkpoints come from) writes for the same tiny architecture: the same
tensor names, dtypes and shapes, and the same config "quantization" entry. The byte totals
of the full-size models (lazy: nothing is allocated) are checked against the published
sizes of the mlx-community conversions and against the registry's own arithmetic.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from mixtui.families.depth import config_with_layers
from mixtui.families.inventory import Quantization

DATA = Path(__file__).parent / "data"
Q4 = Quantization(4, 64)
# gpt-oss's "MXFP4-Q8" (mlx-community/gpt-oss-20b-MXFP4-Q8): experts MXFP4, the rest 8-bit
MXFP4_Q8 = Quantization(8, 64, experts=Quantization(4, 32, "mxfp4"))

# Tiny geometries whose matrices divide into groups of 64, so that quantization is exercised
# (a few, such as Qwen3-MoE's dense layer of width 96, do not: those stay bfloat16, in both)
TINY: dict[str, dict[str, Any]] = {
    "mixtral": {},
    "mistral": {},
    "qwen3_moe": {"expert_intermediate": 64},
    "gpt_oss": {"intermediate": 64, "expert_intermediate": 64},
    "deepseek_v2": {},
    "glm4_moe": {},
    "qwen3_next": {"expert_intermediate": 64, "shared_intermediate": 64},
}


def _tiny_config(model_type: str) -> dict[str, Any]:
    from mixtui.engine.synthetic import synthetic_config

    # bfloat16, so that the conversion casts the float32 weights as it does a real model's
    return synthetic_config(model_type, **TINY[model_type]) | {"torch_dtype": "bfloat16"}


def _gpt_oss_predicate(path: str, module: Any) -> bool | dict[str, Any]:
    """The MXFP4-Q8 recipe, written out: experts MXFP4, the router 8-bit (mlx-lm's own
    gpt_oss predicate), the rest at the conversion's 8 bits."""
    if ".mlp.experts." in path:
        return {"group_size": 32, "bits": 4, "mode": "mxfp4"}
    if path.endswith("mlp.router"):
        return {"group_size": 64, "bits": 8}
    return True


def _convert(tmp_path: Path, model_type: str) -> tuple[dict[str, Any], Path]:
    """mlx-lm's conversion of a tiny float model: the reference checkpoint."""
    from mlx_lm.convert import convert

    from mixtui.engine.synthetic import make_model_dir

    config = _tiny_config(model_type)
    src = make_model_dir(tmp_path / "float", config)
    dst = tmp_path / "mlx"
    if model_type == "gpt_oss":
        convert(str(src), str(dst), quantize=True, q_bits=8, q_group_size=64,
                quant_predicate=_gpt_oss_predicate)
    else:
        convert(str(src), str(dst), quantize=True, q_bits=4, q_group_size=64)
    return config, dst


@pytest.mark.parametrize("model_type", list(TINY))
def test_layout_matches_mlx_lm_conversion(tmp_path: Path, model_type: str) -> None:
    import mlx.core as mx

    from mixtui.engine.synthetic import build_full_size, layout

    config, converted = _convert(tmp_path, model_type)
    written = mx.load(str(converted / "model.safetensors"))
    expected = {name: (tuple(v.shape), str(v.dtype).rsplit(".", 1)[-1])
                for name, v in written.items()}
    expected_config = json.loads((converted / "config.json").read_text())

    quantization = MXFP4_Q8 if model_type == "gpt_oss" else Q4
    model, built_config = build_full_size(config, quantization, materialize=False)
    got = layout(model)

    assert set(got) == set(expected), (sorted(set(got) ^ set(expected)))[:10]
    assert {n: got[n] for n in expected if got[n] != expected[n]} == {}
    assert built_config["quantization"] == expected_config["quantization"]
    # quantization was exercised: packed weights, 16-bit scales, and (gpt-oss) mxfp4 scales
    dtypes = {dtype for _, dtype in got.values()}
    assert "uint32" in dtypes and "bfloat16" in dtypes
    if model_type == "gpt_oss":
        assert got["model.layers.0.mlp.experts.gate_proj.scales"][1] == "uint8"
        assert built_config["quantization"]["model.layers.0.mlp.router"]["bits"] == 8


def test_family_overrides_agree_with_mlx_lm_predicates() -> None:
    """Each family's `quant_overrides` gives what its mlx-lm model's own quant_predicate
    does, module by module, for every family's tiny model."""
    import importlib

    import mlx.nn as nn
    from mlx_lm.utils import MODEL_REMAPPING

    from mixtui.engine.synthetic import synthetic_config
    from mixtui.families import FAMILIES

    checked = 0
    for family in FAMILIES:
        for model_type in family.model_types:
            config = synthetic_config(model_type)
            arch = importlib.import_module(
                f"mlx_lm.models.{MODEL_REMAPPING.get(model_type, model_type)}")
            model = arch.Model(arch.ModelArgs.from_dict(config))
            predicate = getattr(model, "quant_predicate", None)
            for path, module in model.named_modules():
                if not hasattr(module, "to_quantized") or not isinstance(module, nn.Module):
                    continue
                theirs = predicate(path, module) if predicate is not None else True
                ours = next((q for suffix, q in family.quant_overrides.items()
                             if path.endswith(suffix)), None)
                if theirs is True:
                    assert ours is None, (model_type, path)
                else:
                    assert ours is not None, (model_type, path, theirs)
                    assert (theirs["bits"], theirs["group_size"]) == (ours.bits,
                                                                      ours.group_size)
                checked += 1
    assert checked > 100


def _registry() -> dict[str, Any]:
    from mixtui.registry.loader import load_registry

    return load_registry(include_user=False)


def test_full_size_bytes_match_published_sizes() -> None:
    from mixtui.engine.synthetic import build_full_size, layout_bytes

    published = json.loads((DATA / "published-sizes.json").read_text())
    assert published["source"]
    registry = _registry()
    for key, figure in published["sizes_gb"].items():
        spec = registry[key]
        model, _ = build_full_size(spec.hf_config, spec.quantization, materialize=False)
        gb = layout_bytes(model) / 1e9
        low, high = figure if isinstance(figure, list) else (figure, figure)
        assert low * 0.98 <= gb <= high * 1.02, (key, gb, figure)


def test_full_size_bytes_equal_registry_arithmetic() -> None:
    """For every registry entry with a family (gpt-oss's MXFP4 included): the synthetic
    layout's bytes are the registry's `weight_bytes()`, to the byte."""
    from mixtui.engine.synthetic import build_full_size, layout_bytes

    checked = []
    for key, spec in _registry().items():
        if spec.family is None:
            continue
        model, _ = build_full_size(spec.hf_config, spec.quantization, materialize=False)
        assert layout_bytes(model) == spec.weight_bytes(), key
        checked.append(key)
    assert {"mistral-7b-instruct", "gpt-oss-20b", "glm-4.5-air"} <= set(checked)


def test_lazy_build_allocates_nothing() -> None:
    """A 79 GB model built lazily: no memory is taken (the float init is never evaluated)."""
    import mlx.core as mx

    from mixtui.engine.synthetic import build_full_size, layout_bytes

    spec = _registry()["mixtral-8x22b"]
    mx.clear_cache()
    before = mx.get_active_memory()
    model, config = build_full_size(spec.hf_config, spec.quantization, materialize=False)
    assert layout_bytes(model) > 70e9
    assert mx.get_active_memory() - before < 10e6
    assert config["quantization"] == {"group_size": 64, "bits": 4, "mode": "affine"}


def test_materialized_build_generates(tmp_path: Path) -> None:
    """A small build, materialized layer by layer, decodes with mlx-lm: finite logits, and
    dequantized weights of the intended spread."""
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    from mixtui.engine.synthetic import build_full_size, synthetic_config

    steps: list[tuple[int, int]] = []
    wide = {"hidden": 128, "intermediate": 128, "heads": 4, "head_dim": 32, "layers": 4}
    for model_type, quantization, fields in (
            ("mixtral", Q4, wide),
            ("gpt_oss", MXFP4_Q8, wide | {"expert_intermediate": 128}),
            ("qwen3_next", Q4, {"expert_intermediate": 64, "shared_intermediate": 64})):
        config = synthetic_config(model_type, **fields) | {"torch_dtype": "bfloat16"}
        steps.clear()
        model, _ = build_full_size(config, quantization, seed=1,
                                   progress=lambda done, total: steps.append((done, total)))
        assert steps == [(i, 6) for i in range(1, 7)]
        prompt = mx.array([1, 5, 9, 13, 17], dtype=mx.uint32)
        tokens = []
        for (token, logprobs), _ in zip(generate_step(prompt, model, max_tokens=4),
                                        range(4), strict=False):
            assert bool(mx.all(mx.isfinite(logprobs)).item()), model_type
            tokens.append(int(token))
        assert len(tokens) == 4
        if model_type == "qwen3_next":
            continue  # its first layer is linear attention: no q_proj
        q = model.layers[0].self_attn.q_proj
        w = mx.dequantize(q.weight, q.scales, q.get("biases"), group_size=q.group_size,
                          bits=q.bits, mode=q.mode).astype(mx.float32)
        assert abs(mx.mean(w).item()) < 0.01
        assert math.isclose(mx.std(w).item(), 128 ** -0.5, rel_tol=0.1)


def test_seed_decides_the_weights() -> None:
    import mlx.core as mx

    from mixtui.engine.synthetic import build_full_size, synthetic_config

    config = synthetic_config("mixtral", dtype_bytes=2)
    a, _ = build_full_size(config, Q4, seed=0)
    b, _ = build_full_size(config, Q4, seed=0)
    c, _ = build_full_size(config, Q4, seed=1)
    wa, wb, wc = (m.layers[0].block_sparse_moe.switch_mlp.up_proj.weight for m in (a, b, c))
    assert mx.array_equal(wa, wb) and not mx.array_equal(wa, wc)
    # all 32 bits of the packed codes are random (the top 4-bit code too)
    top = (wa >> 28).astype(mx.int32)
    assert mx.max(top).item() == 15 and mx.min(top).item() == 0


def test_config_with_layers_cuts_per_layer_lists() -> None:
    from mixtui.families import gpt_oss

    config = gpt_oss.FAMILY.hf_config(gpt_oss.TINY) | {"eos_token_id": [2, 3, 4, 5]}
    assert len(config["layer_types"]) == 4
    cut = config_with_layers(config, 3)
    assert cut["num_hidden_layers"] == 3
    assert cut["layer_types"] == ["sliding_attention", "full_attention", "sliding_attention"]
    assert cut["eos_token_id"] == [2, 3, 4, 5]  # not a per-layer list, however long
    assert config["num_hidden_layers"] == 4  # the original is left as it was
    assert gpt_oss.FAMILY.geometry(cut).layers == 3
    with pytest.raises(ValueError, match="1 to 4"):
        config_with_layers(config, 5)


def test_config_with_layers_builds_the_first_layers() -> None:
    """A cut gpt-oss-20b: the first two layers of the full model, tensor for tensor."""
    from mixtui.engine.synthetic import build_full_size, layout

    spec = _registry()["gpt-oss-20b"]
    full, _ = build_full_size(spec.hf_config, spec.quantization, materialize=False)
    cut, _ = build_full_size(config_with_layers(spec.hf_config, 2), spec.quantization,
                             materialize=False)
    full_layout, cut_layout = layout(full), layout(cut)
    assert cut_layout == {n: v for n, v in full_layout.items()
                          if not n.startswith("model.layers.")
                          or int(n.split(".")[2]) < 2}
    assert cut.model.layer_types == ["sliding_attention", "full_attention"]
