"""Family b — gpt-oss, DeepSeek-V2, DeepSeek-V3, GLM-4.5 — beyond what every family passes
(test_family_routing.py, test_family_inventory.py): the registry's figures against the
published counts in /work/shared/reference/model-configs/moe/README.md and the conversions'
sizes, each family's cache rule by hand, its dense layers and shared experts, the limit on
experts per token, and the engine's context bound on gpt-oss's own caches.
"""

from __future__ import annotations

import pytest

from mixtui.core.errors import UsageError
from mixtui.core.types import Sampling
from mixtui.engine.messages import Finished, Generate
from mixtui.engine.session import Session
from mixtui.families import family_for
from mixtui.registry.loader import load_registry

REGISTRY = load_registry(include_user=False)
B = 1e9


def embeddings(key: str) -> int:
    inv = REGISTRY[key].inventory
    assert inv is not None
    return sum(t.size for t in inv.tensors if t.role == "embedding")


def assert_near(got: float, want: float, rel: float) -> None:
    assert abs(got - want) <= rel * want, (got, want)


# -- gpt-oss --------------------------------------------------------------------------------
def test_gpt_oss_20b_figures() -> None:
    spec = REGISTRY["gpt-oss-20b"]
    # README: 20.91 B total, 4.19 B active with the embeddings, 3.61 B without (the card's 3.6)
    assert_near(spec.total_params() / B, 20.91, 0.01)
    assert_near(spec.active_params() / B, 4.19, 0.01)
    assert_near((spec.active_params() - embeddings("gpt-oss-20b")) / B, 3.61, 0.01)
    # mlx-community/gpt-oss-20b-MXFP4-Q8: 12,025,908,224 bytes (experts MXFP4, the rest 8-bit)
    assert_near(spec.weight_bytes(), 12_025_908_224, 0.03)
    assert "4.19 B" in spec.description and "3.6 B" in spec.description


def test_gpt_oss_120b_is_mlx_lm_s_defaults() -> None:
    spec = REGISTRY["gpt-oss-120b"]
    # gpt-oss model card (arXiv 2508.10925): 116.83 B total, 5.13 B active (embeddings out)
    assert_near(spec.total_params() / B, 116.83, 0.01)
    assert_near((spec.active_params() - embeddings("gpt-oss-120b")) / B, 5.13, 0.01)
    family = family_for("gpt_oss")
    assert family is not None
    # a config without the fields is read at mlx-lm's defaults: the same model
    assert family.geometry({"model_type": "gpt_oss"}) == spec.geometry
    assert spec.geometry.experts == 128 and spec.geometry.layers == 36


def test_gpt_oss_cache_rule() -> None:
    spec = REGISTRY["gpt-oss-20b"]
    per_layer = 2 * 8 * 64 * 2  # keys and values, 8 kv heads of 64, bfloat16
    # 12 full-attention layers keep every token; 12 sliding ones at most the 128 of the window
    assert spec.kv_bytes_per_token() == 12 * per_layer
    for tokens in (1, 100, 128, 129, 4096):
        assert spec.cache_bytes(tokens) == per_layer * (12 * tokens + 12 * min(tokens, 128))
    g = spec.geometry
    assert g.dense_layers == () and g.shared_experts == 0
    family = spec.family
    assert family is not None
    assert family.max_experts_per_token(spec.hf_config) == 32
    assert family.experts_per_token_note(spec.hf_config) == ""


def test_gpt_oss_context_bound_holds_with_its_own_caches(tiny_family_dir) -> None:
    from mlx_lm.models.cache import KVCache, RotatingKVCache

    context = 40
    session = Session.load(str(tiny_family_dir("gpt_oss")), max_kv_size=context)
    window = int(session.config["sliding_window"])
    long_prompt = " ".join(f"w{i}" for i in range(5, 5 + context))
    with pytest.raises(UsageError) as refused:
        list(session.generate(Generate(1, (("user", long_prompt),))))
    assert refused.value.code == "context-overflow"
    events = list(session.generate(Generate(2, (("user", "w5 w6 w7 w8 w9 w10"),),
                                            sampling=Sampling(temperature=0.0)),
                                   flush_interval=0.0))
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert finished.stats.finish_reason == "context"
    assert finished.stats.prompt_tokens + finished.stats.generation_tokens <= context
    cache = session._cache
    assert cache is not None
    for kind, c in zip(session.model.model.layer_types, cache, strict=True):
        if kind == "full_attention":  # mlx-lm's KVCache: bounded only by the engine's limit
            assert isinstance(c, KVCache) and c.offset <= context
        else:
            assert isinstance(c, RotatingKVCache) and c.max_size == window
            assert c.keys.shape[2] <= window
    assert window < context  # the sliding caches did rotate


# -- DeepSeek-V2 ----------------------------------------------------------------------------
def test_deepseek_v2_lite_figures() -> None:
    spec = REGISTRY["deepseek-v2-lite-chat"]
    # README: 15.71 B total, 2.66 B active with the embeddings, 2.45 B without (the card's 2.4)
    assert_near(spec.total_params() / B, 15.71, 0.01)
    assert_near(spec.active_params() / B, 2.66, 0.01)
    assert_near((spec.active_params() - embeddings("deepseek-v2-lite-chat")) / B, 2.45, 0.01)
    # The reference's 8.2 "GB" is GiB: 4-bit/64 is 4.5 bits a weight, so 15.7 B weights take
    # at least 8.83e9 bytes; 8.84e9 bytes are 8.23 GiB (the routers stay in bfloat16).
    assert_near(spec.weight_bytes(), 8.2 * 2**30, 0.03)
    assert spec.weight_bytes() > 15.7e9 * 4.5 / 8
    # config.json's null q_lora_rank reaches mlx-lm as None (its default would be 1536)
    assert spec.hf_config["q_lora_rank"] is None


def test_deepseek_v2_cache_rule_is_mlx_lm_s_not_the_paper_s() -> None:
    spec = REGISTRY["deepseek-v2-lite-chat"]
    # mlx-lm caches the decompressed keys (128 + 64 wide) and values (128) of all 16 heads
    # in each of the 27 layers, in bfloat16; the paper's compressed cache would be
    # 27 * (512 + 64) * 2 = 31,104 bytes a token.
    per_token = 27 * 16 * (128 + 64 + 128) * 2
    assert spec.kv_bytes_per_token() == per_token == 276_480
    for tokens in (1, 1000, 32768):
        assert spec.cache_bytes(tokens) == tokens * per_token


def test_deepseek_v2_dense_layers_shared_experts_and_group_limit() -> None:
    spec = REGISTRY["deepseek-v2-lite-chat"]
    g = spec.geometry
    assert g.dense_layers == (0,) and g.moe_layers == tuple(range(1, 27))
    assert g.shared_experts == 2 and g.shared_intermediate == 2 * 1408
    family = spec.family
    assert family is not None
    # V2-Lite routes greedily (n_group 1): any k up to 64, nothing to say
    assert family.max_experts_per_token(spec.hf_config) == 64
    assert family.experts_per_token_note(spec.hf_config) == ""
    # the tiny model routes group-limited: 2 of 4 groups of 4 compete, so at most 8
    tiny = family.synthetic_config()
    assert family.max_experts_per_token(tiny) == 8
    assert family.experts_per_token_note(tiny) == (
        "Routing is group-limited: a token's experts come from its 2 best of 4 groups of 4, "
        "so at most 8 experts per token.")
    # moe_layer_freq 2 with first_k_dense_replace 1: layers 2, 4, ... are MoE
    every_other = tiny | {"num_hidden_layers": 6, "moe_layer_freq": 2}
    assert family.geometry(every_other).dense_layers == (0, 1, 3, 5)


def test_deepseek_v2_tiny_model_reports_its_shared_experts(tiny_family_dir) -> None:
    session = Session.load(str(tiny_family_dir("deepseek_v2")))
    info = session.info()
    assert info.moe_layers == (1, 2) and info.shared_experts == 2
    assert info.top_k_note.startswith("Routing is group-limited")
    with pytest.raises(UsageError, match="between 1 and 8, not 9. Routing is group-limited"):
        session.set_experts_per_token(9)  # 16 experts, but only 2 groups of 4 compete
    assert session.top_k == 3


# -- DeepSeek-V3 (no registry entry: no published config at hand) ----------------------------
def test_deepseek_v3_cache_rule_and_group_limit() -> None:
    family = family_for("deepseek_v3")
    assert family is not None
    tiny = family.synthetic_config()
    # mlx-lm's V3 caches the compressed latent (kv_lora_rank 32) and the rotary key (8) once
    # per layer, whatever the heads: 3 layers x 40 x 4 bytes (float32)
    assert family.kv_bytes_per_token(tiny, 4) == 3 * (32 + 8) * 4
    assert family.cache_bytes(tiny, 100, 2) == 100 * 3 * 40 * 2
    g = family.geometry(tiny)
    assert g.dense_layers == (0,) and g.shared_experts == 1 and g.shared_intermediate == 32
    assert family.max_experts_per_token(tiny) == 8
    assert "2 best of 4 groups of 4" in family.experts_per_token_note(tiny)
    # without groups nothing limits k
    ungrouped = tiny | {"n_group": 1, "topk_group": 1}
    assert family.max_experts_per_token(ungrouped) == 16
    assert family.experts_per_token_note(ungrouped) == ""


# -- every family of b: the cache rule against the cache mlx-lm really filled ----------------
@pytest.mark.parametrize("model_type", ["gpt_oss", "deepseek_v2", "deepseek_v3", "glm4_moe"])
def test_cache_rule_is_what_mlx_lm_stores(model_type: str, tiny_family_dir) -> None:
    family = family_for(model_type)
    assert family is not None
    session = Session.load(str(tiny_family_dir(model_type)))
    events = list(session.generate(Generate(1, (("user", "w5 w6 w7 w8 w9 w10 w11"),),
                                            sampling=Sampling(temperature=0.0,
                                                              max_tokens=12)),
                                   flush_interval=0.0))
    finished = events[-1]
    assert isinstance(finished, Finished)
    tokens = finished.stats.prompt_tokens + finished.stats.generation_tokens
    stored = 0
    assert session._cache is not None
    for c in session._cache:
        keys, values = c.keys, c.values
        held = min(c.offset, keys.shape[2])  # KVCache allocates ahead in steps of 256
        per_token = (keys.shape[1] * keys.shape[3] + values.shape[1] * values.shape[3])
        stored += held * per_token * keys.itemsize
    # mlx-lm runs every token it yields through the model (the next step is queued ahead)
    assert stored == family.cache_bytes(session.config, tokens, 4)
    assert tokens > int(session.config.get("sliding_window") or 0)  # windows full


# -- GLM-4.5 --------------------------------------------------------------------------------
def test_glm_4_5_air_figures() -> None:
    spec = REGISTRY["glm-4.5-air"]
    # README: 106.85 B total, 13.42 B active with the embeddings, 12.80 B without (card: 12 B)
    assert_near(spec.total_params() / B, 106.85, 0.01)
    assert_near(spec.active_params() / B, 13.42, 0.01)
    assert_near((spec.active_params() - embeddings("glm-4.5-air")) / B, 12.80, 0.01)
    # mlx-community/GLM-4.5-Air-4bit: 60.2 GB (the routers, bare weights, in bfloat16)
    assert_near(spec.weight_bytes(), 60.2e9, 0.03)
    assert spec.hf_config["rope_scaling"] is None  # config_nulls


def test_glm_4_5_air_cache_layers_and_k() -> None:
    spec = REGISTRY["glm-4.5-air"]
    # grouped-query attention in all 46 layers: 8 kv heads of 128 (heads x head_dim is
    # 12,288, not hidden 4,096: the head_dim field, not hidden / heads), bfloat16
    per_token = 46 * 2 * 8 * 128 * 2
    assert spec.kv_bytes_per_token() == per_token == 188_416
    for tokens in (1, 4096, 131072):
        assert spec.cache_bytes(tokens) == tokens * per_token
    g = spec.geometry
    assert g.dense_layers == (0,) and len(g.moe_layers) == 45
    assert g.shared_experts == 1 and g.shared_intermediate == 1408
    family = spec.family
    assert family is not None and family.scoring == "sigmoid"
    # n_group 1 (the notes' value): nothing limits k
    assert family.max_experts_per_token(spec.hf_config) == 128
    assert family.experts_per_token_note(spec.hf_config) == ""
    tiny = family.synthetic_config()
    assert family.max_experts_per_token(tiny) == 8
    assert family.experts_per_token_note(tiny) == (
        "Routing is group-limited: a token's experts come from its 2 best of 4 groups of 4, "
        "so at most 8 experts per token.")


def test_config_nulls_must_name_fields(isolated_config_dir) -> None:
    from mixtui.core.errors import RegistryError

    (isolated_config_dir / "models.toml").write_text(
        '[models.x]\nrepo = "org/x"\nconfig_nulls = "q_lora_rank"\n'
        '[models.x.config]\nmodel_type = "deepseek_v2"\n')
    with pytest.raises(RegistryError, match="config_nulls"):
        load_registry()
