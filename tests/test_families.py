"""MoE families as plugins: the protocol, the config mappings, and Qwen3-MoE end to end.

The Qwen3-MoE models here are tiny random float32 `qwen3_moe` models built from mlx-lm's
own classes (mixtui.engine.synthetic): three layers, the middle one dense
(`mlp_only_layers`), 8 experts, 2 per token, with `norm_topk_prob` true and false.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from test_routing_capture import (
    _router_logits,
    assert_matches_reference,
    assert_same_choices,
    greedy,
    run,
)

from mixtui.app.trace import read_trace
from mixtui.core.errors import UsageError
from mixtui.core.routing import RoutingBatch
from mixtui.core.types import Sampling
from mixtui.engine.session import Session
from mixtui.families import FAMILIES, family_for, moe_model_types
from mixtui.families.geometry import Geometry
from mixtui.registry.loader import load_registry

QWEN_EXPERTS = 8
QWEN_K = 2
QWEN_MOE_LAYERS = (0, 2)  # layer 1 is dense
PROMPT = "w5 w6 w7 w8 w9"


def qwen_config(norm_topk_prob: bool) -> dict:
    from mixtui.engine.synthetic import synthetic_config

    return synthetic_config("qwen3_moe") | {"norm_topk_prob": norm_topk_prob}


@pytest.fixture(scope="module", params=[True, False], ids=["norm", "no-norm"])
def qwen_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mixtui.engine.synthetic import make_model_dir

    norm = bool(request.param)
    return make_model_dir(tmp_path_factory.mktemp("qwen") / f"tiny-qwen3-{norm}",
                          qwen_config(norm), chat=True)


@pytest.fixture
def qwen(qwen_dir: Path) -> Session:
    return Session.load(str(qwen_dir))


def reference_weights(probs: np.ndarray, experts: np.ndarray, norm: bool) -> np.ndarray:
    """Qwen3MoeSparseMoeBlock's gate weights, from the reference probabilities (T, E) and
    the chosen experts (T, k): the chosen probabilities, renormalised when `norm`."""
    chosen = np.take_along_axis(probs, experts, axis=-1)
    return chosen / chosen.sum(-1, keepdims=True) if norm else chosen


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def check_against_reference(session: Session, routing: RoutingBatch, tokens: list[int],
                            k: int = QWEN_K) -> None:
    """Experts and probs against an independent recomputation; weights by Qwen3's rule."""
    logits = _router_logits(session, tokens)  # (T, moe layers, E)
    assert logits.shape == (len(tokens), len(QWEN_MOE_LAYERS), QWEN_EXPERTS)
    assert_matches_reference(routing, logits, k=k)
    norm = bool(session.config["norm_topk_prob"])
    for layer in range(logits.shape[1]):
        probs = softmax(logits[:, layer])
        np.testing.assert_allclose(
            routing.weights[:, layer], reference_weights(probs, routing.experts[:, layer], norm),
            atol=1e-4)


# -- the protocol and the mappings (pure) --------------------------------------------------------
def test_every_family_maps_its_registry_geometries_both_ways() -> None:
    specs = load_registry(include_user=False)
    seen = set()
    for spec in specs.values():
        family = family_for(spec.geometry.model_type)
        assert family is not None, spec.key
        seen.add(family.name)
        if spec.config is not None:  # given by its published config.json: read it the same way
            config = spec.config
            assert family.geometry(config) == spec.geometry, spec.key
        else:  # a [geometry] table: the family writes the config.json fields and reads them back
            config = family.hf_config(spec.geometry)
            back = family.geometry(config)
            assert back == replace(spec.geometry, dtype_bytes=back.dtype_bytes), spec.key
        assert config["model_type"] == spec.geometry.model_type
        assert Geometry.from_hf_config(config) == family.geometry(config)  # through Geometry
        assert spec.kv_bytes_per_token() == family.kv_bytes_per_token(
            config, spec.geometry.dtype_bytes)
    assert {"mixtral", "qwen3_moe", "dense"} <= seen
    assert seen <= {f.name for f in FAMILIES}
    assert {"mixtral", "qwen3_moe"} <= set(moe_model_types())
    assert {f.scoring for f in FAMILIES if f.is_moe} <= {"softmax", "sigmoid"}


def test_qwen3_dense_layers_follow_mlx_lm_rules() -> None:
    family = family_for("qwen3_moe")
    assert family is not None
    base = qwen_config(True) | {"num_hidden_layers": 6, "mlp_only_layers": [4]}
    every_second = family.geometry(base | {"decoder_sparse_step": 2})
    assert every_second.moe_layers == (1, 3, 5) and every_second.dense_layers == (0, 2, 4)
    assert family.geometry(base).moe_layers == (0, 1, 2, 3, 5)
    no_experts = family.geometry(base | {"num_experts": 0})
    assert not no_experts.is_moe and no_experts.moe_layers == ()
    # each dense layer costs a dense feed-forward instead of the experts and the router
    g = family.geometry(base)
    all_moe = replace(g, dense_layers=())
    assert all_moe.total_params() - g.total_params() == (
        g.router_params() + g.experts * g.expert_params() - g.dense_ffn_params())
    assert g.active_params(g.experts) == g.total_params()


def test_synthetic_config_of_a_type_without_a_family_is_refused() -> None:
    from mixtui.engine.synthetic import synthetic_config

    with pytest.raises(ValueError, match="ernie4_5_moe"):
        synthetic_config("ernie4_5_moe")


def test_sigmoid_scoring_is_declared_and_reports_sigmoid_scores() -> None:
    from mixtui.families.qwen3_moe_hooks import ADAPTER

    logits = mx.array([[[0.5, -1.0, 2.0, 0.0]]])
    softmax_probs = np.array(ADAPTER.router_probs(logits))
    np.testing.assert_allclose(softmax_probs, softmax(np.array(logits)), atol=1e-6)
    sigmoid = replace(ADAPTER, scoring="sigmoid")
    np.testing.assert_allclose(np.array(sigmoid.router_probs(logits)),
                               1 / (1 + np.exp(-np.array(logits))), atol=1e-6)


# -- Qwen3-MoE in the engine ---------------------------------------------------------------------
def test_qwen3_info_and_routing_match_an_independent_recomputation(qwen: Session) -> None:
    info = qwen.info()
    assert info.model_type == "qwen3_moe"
    assert (info.moe_layers, info.num_experts, info.top_k) == (QWEN_MOE_LAYERS, QWEN_EXPERTS,
                                                               QWEN_K)
    assert info.weight_bytes == 4 * info.total_params  # the accounting is exact (float32)
    assert info.active_params == qwen.geometry.active_params(QWEN_K) < info.total_params
    out = run(qwen, (("user", PROMPT),), sampling=greedy(12))
    routing = out.routing
    tokens = out.prompt_ids + out.ids
    assert len(routing) == len(tokens)
    assert routing.experts.shape == (len(tokens), len(QWEN_MOE_LAYERS), QWEN_K)
    np.testing.assert_allclose(routing.probs.sum(-1), 1.0, atol=1e-5)
    sums = routing.weights.sum(-1)
    if qwen.config["norm_topk_prob"]:
        np.testing.assert_allclose(sums, 1.0, atol=1e-5)
    else:  # the chosen experts' share of the probability, not renormalised
        assert (sums < 1 - 1e-3).all()
    check_against_reference(qwen, routing, tokens)


def test_qwen3_capture_does_not_change_the_tokens(qwen: Session) -> None:
    for sampling in (greedy(12), Sampling(temperature=0.8, seed=5, max_tokens=12)):
        on = run(qwen, (("user", PROMPT),), sampling=sampling, capture=True)
        qwen.reset_conversation()
        off = run(qwen, (("user", PROMPT),), sampling=sampling, capture=False)
        qwen.reset_conversation()
        assert on.ids == off.ids and len(on.ids) == 12, sampling
        assert off.prompt[0].routing is None


def test_qwen3_experts_per_token(qwen: Session) -> None:
    tokens = mx.array([[1, 5, 6, 7, 8]])
    base = qwen.model(tokens)  # the model's own output (logits) at the default k
    qwen.set_experts_per_token(1)
    # the blocks use the new k (greedy tokens of a random model may well stay the same)
    assert not np.allclose(np.array(qwen.model(tokens)), np.array(base), atol=1e-4)
    assert (qwen.info().top_k, qwen.info().default_top_k) == (1, QWEN_K)
    assert qwen.info().active_params == qwen.geometry.active_params(1)
    one = run(qwen, (("user", PROMPT),), sampling=greedy(8))
    assert one.stats.cached_tokens == 0  # the cache was computed with another k
    assert one.routing.experts.shape[-1] == 1
    assert (one.routing.experts[..., 0] == one.routing.probs.argmax(-1)).all()
    check_against_reference(qwen, one.routing, one.prompt_ids + one.ids, k=1)
    qwen.set_experts_per_token(QWEN_EXPERTS)
    every = run(qwen, (("user", PROMPT),), sampling=greedy(4)).routing
    assert (np.sort(every.experts, axis=-1) == np.arange(QWEN_EXPERTS)).all()
    with pytest.raises(UsageError, match="between 1 and 8"):
        qwen.set_experts_per_token(9)
    qwen.set_experts_per_token(None)
    assert qwen.info().top_k == QWEN_K


def test_moe_type_without_a_family_names_it_and_says_what_to_do(qwen: Session) -> None:
    # The same real model, presented as a MoE type mixtui has no family for.
    config = dict(qwen.config, model_type="ernie4_5_moe")
    stranger = Session(qwen.model, qwen.tokenizer, config, qwen.path, "stranger")
    assert stranger.geometry.is_moe and stranger.capture is None
    assert stranger.info().moe_layers == ()
    with pytest.raises(UsageError) as caught:
        stranger.set_experts_per_token(1)
    message = str(caught.value)
    assert "ernie4_5_moe" in message and ", ".join(moe_model_types()) in message
    assert "Adding a family" in message and "only Mixtral" not in message


# -- the CLI ---------------------------------------------------------------------------------------
def mixtui(env: dict[str, str], *args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mixtui", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("k", [1])  # the model's own k: tests/test_family_routing.py
def test_generate_trace_on_qwen3(cli_env: dict[str, str], qwen_dir: Path, tmp_path: Path,
                                 k: int | None) -> None:
    trace = tmp_path / "t.jsonl"
    extra = [] if k is None else ["--experts-per-token", k]
    proc = mixtui(cli_env, "generate", "--model", qwen_dir, "--prompt", "x", "--max-tokens", 6,
                  "--temp", 0, "--trace", trace, *extra)
    assert proc.returncode == 0, proc.stderr
    header, records, summary = read_trace(trace)
    used = k or QWEN_K
    assert header["model_type"] == "qwen3_moe"
    assert (header["num_layers"], header["moe_layers"]) == (3, list(QWEN_MOE_LAYERS))
    assert (header["num_experts"], header["top_k"]) == (QWEN_EXPERTS, used)
    assert summary is not None and summary["generation_tokens"] == 6
    tokens = [r["id"] for r in records]
    routing = RoutingBatch(np.array([r["experts"] for r in records], np.int32),
                           np.array([r["weights"] for r in records], np.float32),
                           np.array([r["probs"] for r in records], np.float32))
    assert routing.experts.shape == (len(tokens), len(QWEN_MOE_LAYERS), used)
    session = Session.load(str(qwen_dir))
    if k is not None:
        session.set_experts_per_token(k)
    check_against_reference(session, routing, tokens, k=used)
    # and the text is what the engine in this process says for the same request
    same = run(session, (("user", "x"),), sampling=greedy(6))
    assert same.ids == summary["token_ids"]
    for layer in range(len(QWEN_MOE_LAYERS)):
        assert_same_choices(routing.experts[:, layer], same.routing.experts[:, layer],
                            same.routing.probs[:, layer])


# -- the TUI ---------------------------------------------------------------------------------------
@pytest.mark.usefixtures("empty_hf_cache", "fixed_budget")
async def test_tui_chats_with_qwen3_and_records_its_routing(tmp_path_factory:
                                                            pytest.TempPathFactory) -> None:
    from textual.widgets import Input

    from mixtui.engine.synthetic import make_model_dir
    from mixtui.tui.app import MixtuiApp

    path = make_model_dir(tmp_path_factory.mktemp("qwen-tui") / "tiny-qwen3", qwen_config(True))
    app = MixtuiApp(model=str(path), sampling=Sampling(temperature=0.0, max_tokens=8),
                    persist=False)
    async with app.run_test(size=(140, 45)) as pilot:
        async def until(condition, timeout: float = 60.0) -> None:
            deadline = time.monotonic() + timeout
            while not condition():
                assert time.monotonic() < deadline, "timed out waiting for the app"
                await pilot.pause(0.05)

        await until(lambda: app.conversation.info is not None)
        prompt = app.query_one("#prompt", Input)
        prompt.value = PROMPT
        prompt.focus()
        await pilot.press("enter")
        await until(lambda: len(app.conversation.stats) == 1)
        conversation = app.conversation
        assert [role for role, _ in conversation.turns] == ["user", "assistant"]
        info = conversation.info
        assert info is not None and info.model_type == "qwen3_moe"
        assert info.moe_layers == QWEN_MOE_LAYERS
        routing = conversation.routing()
        assert routing is not None and len(routing) == len(conversation)
        stats = conversation.stats[-1]
        assert len(conversation) == stats.prompt_tokens + stats.generation_tokens
        # the model's MoE-layer count and expert count, not the number of decoder layers
        assert routing.probs.shape[1:] == (len(QWEN_MOE_LAYERS), QWEN_EXPERTS)
        assert routing.experts.shape[1:] == (len(QWEN_MOE_LAYERS), QWEN_K)
