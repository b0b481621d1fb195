"""Routing capture in-process: shapes, invariants, one record per token, alignment, k."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from mixtui.core.errors import UsageError
from mixtui.core.routing import RoutingBatch
from mixtui.core.types import Sampling
from mixtui.engine.messages import Finished, Generate, Tokens
from mixtui.engine.session import Session

PROMPT = (("user", "w5 w6 w7 w8 w9 w10 w11 w12"),)
NUM_EXPERTS = 8
DEFAULT_K = 2
MOE_LAYERS = 2


def greedy(max_tokens: int = 12, **kw) -> Sampling:
    return Sampling(temperature=0.0, max_tokens=max_tokens, **kw)


class Run:
    """The events of one Generate, split by phase."""

    def __init__(self, events: list[Tokens | Finished]):
        assert isinstance(events[-1], Finished)
        assert all(isinstance(e, Tokens) for e in events[:-1])
        self.finished: Finished = events[-1]  # type: ignore[assignment]
        tokens: list[Tokens] = events[:-1]  # type: ignore[assignment]
        self.prompt = [e for e in tokens if e.phase == "prompt"]
        self.generate = [e for e in tokens if e.phase == "generate"]
        # prompt first (exactly one event), then the generated tokens
        assert len(self.prompt) == 1 and tokens[0] is self.prompt[0]
        self.prompt_ids = list(self.prompt[0].ids)
        self.ids = [i for e in self.generate for i in e.ids]
        self.stats = self.finished.stats

    @property
    def routing(self) -> RoutingBatch:
        """Routing of every processed token, prompt then generated."""
        parts = [self.prompt[0].routing] + [e.routing for e in self.generate]
        assert all(p is not None for p in parts)
        return RoutingBatch.concat(parts)  # type: ignore[arg-type]


def run(session: Session, messages=PROMPT, *, sampling: Sampling | None = None,
        capture: bool = True, system: str | None = None, rid: int = 1) -> Run:
    request = Generate(rid, tuple(messages), system=system, sampling=sampling or greedy(),
                       capture=capture)
    return Run(list(session.generate(request, flush_interval=0.0)))


@pytest.fixture
def session(tiny_moe_dir: Path) -> Session:
    return Session.load(str(tiny_moe_dir))


@pytest.fixture
def dense_session(tiny_dense_dir: Path) -> Session:
    return Session.load(str(tiny_dense_dir))


def check_invariants(r: RoutingBatch, k: int) -> None:
    n = len(r)
    assert r.experts.shape == (n, MOE_LAYERS, k)
    assert r.weights.shape == (n, MOE_LAYERS, k)
    assert r.probs.shape == (n, MOE_LAYERS, NUM_EXPERTS)
    assert r.experts.dtype == np.int32
    assert r.weights.dtype == np.float32 and r.probs.dtype == np.float32
    assert ((r.experts >= 0) & (r.experts < NUM_EXPERTS)).all()
    for t in range(n):
        for layer in range(MOE_LAYERS):
            chosen = r.experts[t, layer]
            assert len(set(chosen.tolist())) == k, (t, layer, chosen)
    np.testing.assert_allclose(r.weights.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(r.probs.sum(-1), 1.0, atol=1e-5)
    assert (r.probs >= 0).all() and (r.weights > 0).all()
    chosen_probs = np.take_along_axis(r.probs, r.experts, axis=-1)  # (n, layers, k)
    # the chosen experts are the top k of the router's probabilities
    mask = np.zeros(r.probs.shape, bool)
    np.put_along_axis(mask, r.experts, True, axis=-1)
    others = np.where(mask, -np.inf, r.probs).max(-1)
    assert (chosen_probs.min(-1) >= others - 1e-7).all()
    # their weights are the softmax of the chosen logits: probs renormalised over the chosen
    np.testing.assert_allclose(r.weights, chosen_probs / chosen_probs.sum(-1, keepdims=True),
                               atol=1e-5)


def assert_same_choices(got: np.ndarray, want: np.ndarray, probs: np.ndarray,
                        tie: float = 1e-5) -> None:
    """Per token, the same set of experts, except where the router is at a near-tie.

    got, want: (tokens, k) expert ids; probs: (tokens, E) the reference probabilities. Two
    computations of the same logits (cached or not, chunked or not) may round differently,
    which can only swap experts whose probabilities are within `tie` of each other.
    """
    assert got.shape == want.shape
    k = got.shape[-1]
    for t in range(len(got)):
        if set(got[t].tolist()) != set(want[t].tolist()):
            ranked = np.sort(probs[t])[::-1]
            assert k < len(ranked) and ranked[k - 1] - ranked[k] < tie, (t, got[t], want[t])


# -- shapes, invariants, one record per processed token ----------------------------------------
def test_routing_shapes_and_invariants(session: Session) -> None:
    out = run(session, sampling=greedy(12))
    info = session.info()
    assert (info.top_k, info.num_experts, info.moe_layers) == (DEFAULT_K, NUM_EXPERTS, (0, 1))
    assert info.weight_bytes == 4 * info.total_params  # float32, and the formula is exact
    check_invariants(out.routing, DEFAULT_K)
    for event in out.prompt + out.generate:
        assert event.routing is not None
        assert len(event.routing) == len(event.ids) == len(event.texts)


def test_one_record_per_processed_token(session: Session) -> None:
    out = run(session, sampling=greedy(20))
    stats = out.stats
    assert out.prompt[0].start == 0
    assert len(out.prompt[0].routing) == len(out.prompt_ids) == stats.prompt_tokens  # type: ignore[arg-type]
    assert stats.cached_tokens == 0
    assert sum(len(e.routing) for e in out.generate) == len(out.ids)  # type: ignore[arg-type]
    assert len(out.ids) == stats.generation_tokens == 20
    assert stats.finish_reason == "length"
    # generate events cover 0..n-1 without gaps or overlaps
    expected_start = 0
    for event in out.generate:
        assert event.start == expected_start and len(event.ids) > 0
        expected_start += len(event.ids)
    assert expected_start == stats.generation_tokens
    assert out.finished.text == "".join(t for e in out.generate for t in e.texts)


def test_prompt_tokens_are_the_chat_template(session: Session) -> None:
    out = run(session, sampling=greedy(2))
    expected = session.tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT[0][1]}], add_generation_prompt=True)
    assert out.prompt_ids == list(expected)
    assert out.prompt_ids[0] == 1  # <s>
    assert [i for i in out.prompt_ids if i > 2] == list(range(5, 13))


def _router_logits(session: Session, tokens: list[int]) -> np.ndarray:
    """Every MoE layer's router logits for every token, from scratch, without a cache.

    An independent reference: the decoder layers are stepped through here by hand (no KV
    cache, no capture), so (tokens, layers, E) can be compared with what capture recorded.
    Any family whose layers are pre-norm attention then feed-forward (its adapter names
    the block and router); layers without a router (dense) contribute no logits.
    """
    from mixtui.families import adapters

    model = session.model
    adapter = session.adapter
    assert adapter is not None
    adapters.detach(adapter, model)  # the next generate attaches it again
    h = model.model.embed_tokens(mx.array(tokens)[None])
    per_layer = []
    for layer in model.layers:
        h = h + layer.self_attn(layer.input_layernorm(h), mask="causal", cache=None)
        normed = layer.post_attention_layernorm(h)
        block = getattr(layer, adapter.block_attr)
        if hasattr(block, adapter.router_attr):
            per_layer.append(getattr(block, adapter.router_attr)(normed)[0])  # (T, E)
        h = h + block(normed)
    logits = mx.stack(per_layer, axis=1).astype(mx.float32)  # (T, moe layers, E)
    mx.eval(logits)
    return np.array(logits)


def assert_matches_reference(routing: RoutingBatch, all_logits: np.ndarray,
                             k: int = DEFAULT_K) -> list[np.ndarray]:
    """Each MoE layer's captured probs and experts against reference logits (tokens, layers, E);
    returns the reference top-k experts per layer."""
    assert routing.probs.shape[1] == all_logits.shape[1]  # one record per MoE layer
    tops = []
    for layer in range(all_logits.shape[1]):
        logits = all_logits[:, layer]
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        np.testing.assert_allclose(routing.probs[:, layer], probs, atol=1e-4)
        expected = np.argsort(-logits, axis=-1)[:, :k]
        assert_same_choices(routing.experts[:, layer], expected, probs)
        tops.append(expected)
    return tops


def test_routing_is_aligned_with_the_tokens(session: Session) -> None:
    out = run(session, sampling=greedy(16))
    routing = out.routing
    sequence = out.prompt_ids + out.ids  # every token the model processed, in order
    assert len(routing) == len(sequence)
    for layer, expected in enumerate(assert_matches_reference(
            routing, _router_logits(session, sequence))):
        # and not merely at a near-tie: most tokens route the same way with a clear margin
        matches = [set(a.tolist()) == set(b.tolist())
                   for a, b in zip(routing.experts[:, layer], expected, strict=True)]
        assert sum(matches) >= len(matches) - 1


def test_long_prompt_in_several_prefill_chunks(session: Session) -> None:
    # mlx-lm prefills 2048 tokens per step: this prompt takes two steps plus the last token
    words = " ".join(f"w{3 + i % 250}" for i in range(2060))
    out = run(session, (("user", words),), sampling=greedy(4))
    assert len(out.prompt_ids) > 2048 + 1
    assert len(out.prompt[0].routing) == len(out.prompt_ids) == out.stats.prompt_tokens  # type: ignore[arg-type]
    routing = out.routing
    check_invariants(routing, DEFAULT_K)
    # every layer, the last included (mlx-lm never computes its output for prefill chunks)
    assert_matches_reference(routing, _router_logits(session, out.prompt_ids + out.ids))


def test_capture_does_not_change_generation(session: Session) -> None:
    for sampling in (greedy(16), Sampling(temperature=0.8, seed=3, max_tokens=16)):
        on = run(session, sampling=sampling, capture=True)
        session.reset_conversation()
        off = run(session, sampling=sampling, capture=False)
        session.reset_conversation()
        again = run(session, sampling=sampling, capture=True)
        session.reset_conversation()
        assert on.ids == off.ids == again.ids, sampling
        assert len(on.ids) == 16
        assert off.prompt[0].routing is None
        assert all(e.routing is None for e in off.generate)
        assert len(again.routing) == len(again.prompt_ids) + len(again.ids)
    # seeded sampling is not greedy decoding in disguise
    assert run(session, sampling=Sampling(temperature=0.8, seed=3, max_tokens=16)).ids != \
        run(session, sampling=greedy(16)).ids


def test_multi_turn_reuses_the_cache(session: Session, tiny_moe_dir: Path) -> None:
    first = run(session, sampling=greedy(6))
    conversation = (*PROMPT, ("assistant", first.finished.text), ("user", "w20 w21 w22"))
    second = run(session, conversation, sampling=greedy(8), rid=2)
    s = second.stats
    assert s.cached_tokens > 0
    assert len(second.prompt[0].routing) == len(second.prompt_ids) == s.prompt_tokens  # type: ignore[arg-type]
    assert sum(len(e.routing) for e in second.generate) == len(second.ids)  # type: ignore[arg-type]
    assert len(second.ids) == s.generation_tokens == 8
    assert [e.request_id for e in second.prompt + second.generate] == [2] * (
        1 + len(second.generate))

    fresh_session = Session.load(str(tiny_moe_dir))
    fresh = run(fresh_session, conversation, sampling=greedy(8))
    assert fresh.stats.cached_tokens == 0
    assert fresh.stats.prompt_tokens == s.cached_tokens + s.prompt_tokens
    assert fresh.prompt_ids[s.cached_tokens:] == second.prompt_ids
    assert fresh.ids == second.ids
    # the routing of the tokens fed in the second turn is the routing of the same positions
    tail = fresh.routing.slice(s.cached_tokens, len(fresh.routing))
    assert len(tail) == len(second.routing)
    for layer in range(MOE_LAYERS):
        assert_same_choices(second.routing.experts[:, layer], tail.experts[:, layer],
                            tail.probs[:, layer])
    np.testing.assert_allclose(tail.probs, second.routing.probs, atol=1e-4)


def test_same_request_again_feeds_only_the_last_token(session: Session) -> None:
    first = run(session, sampling=greedy(6))
    again = run(session, sampling=greedy(6), rid=2)
    n = len(first.prompt_ids)
    assert (again.stats.cached_tokens, again.stats.prompt_tokens) == (n - 1, 1)
    assert again.prompt_ids == first.prompt_ids[-1:]
    assert len(again.prompt[0].routing) == 1  # type: ignore[arg-type]
    assert again.ids == first.ids
    for layer in range(MOE_LAYERS):
        assert_same_choices(again.routing.experts[:1, layer],
                            first.routing.experts[n - 1:n, layer],
                            first.routing.probs[n - 1:n, layer])
    np.testing.assert_allclose(again.routing.probs[0], first.routing.probs[n - 1], atol=1e-4)


def test_quantized_model_routing(tmp_path: Path, moe_config: dict) -> None:
    from mixtui.engine.synthetic import make_model_dir
    from mixtui.registry.local import resolve
    from mixtui.registry.spec import Quantization

    path = make_model_dir(tmp_path / "q4", moe_config, bits=4, group_size=64)
    assert resolve(str(path)).quantization == Quantization(4, 64)
    quantized = Session.load(str(path))
    info = quantized.info()
    assert info.moe_layers == (0, 1) and info.num_experts == NUM_EXPERTS
    assert info.weight_bytes < info.total_params  # about 4.5 bits a weight (float32 scales)
    on = run(quantized, sampling=greedy(8))
    check_invariants(on.routing, DEFAULT_K)
    assert len(on.routing) == len(on.prompt_ids) + 8
    quantized.reset_conversation()
    assert run(quantized, sampling=greedy(8), capture=False).ids == on.ids


# -- experts per token --------------------------------------------------------------------------
def test_experts_per_token_one(session: Session) -> None:
    default_active = session.info().active_params
    session.set_experts_per_token(1)
    info = session.info()
    assert (info.top_k, info.default_top_k) == (1, DEFAULT_K)
    assert info.active_params == session.geometry.active_params(1) < default_active
    out = run(session, sampling=greedy(6))
    check_invariants(out.routing, 1)
    np.testing.assert_allclose(out.routing.weights, 1.0, atol=1e-6)
    assert (out.routing.experts[..., 0] == out.routing.probs.argmax(-1)).all()
    session.set_experts_per_token(None)
    assert session.info().top_k == DEFAULT_K
    assert session.info().active_params == default_active
    check_invariants(run(session, sampling=greedy(3)).routing, DEFAULT_K)


def test_experts_per_token_all(session: Session) -> None:
    session.set_experts_per_token(NUM_EXPERTS)
    info = session.info()
    assert info.top_k == NUM_EXPERTS
    assert info.active_params == info.total_params
    out = run(session, sampling=greedy(6))
    r = out.routing
    check_invariants(r, NUM_EXPERTS)
    assert (np.sort(r.experts, axis=-1) == np.arange(NUM_EXPERTS)).all()
    # with every expert chosen, the gate weights are the router's probabilities
    chosen_probs = np.take_along_axis(r.probs, r.experts, axis=-1)
    np.testing.assert_allclose(r.weights, chosen_probs, atol=1e-5)


def test_experts_per_token_changes_generation_and_resets_cache(session: Session) -> None:
    base = run(session, sampling=greedy(10))
    session.set_experts_per_token(1)
    one = run(session, sampling=greedy(10))
    assert one.stats.cached_tokens == 0  # the old cache was computed with another k
    assert one.ids != base.ids


@pytest.mark.parametrize("k", [0, 9, -1])
def test_experts_per_token_out_of_range(session: Session, k: int) -> None:
    with pytest.raises(UsageError, match=str(k)):
        session.set_experts_per_token(k)
    assert session.info().top_k == DEFAULT_K


# -- dense models ---------------------------------------------------------------------------------
def test_dense_model_has_no_routing(dense_session: Session) -> None:
    info = dense_session.info()
    assert info.moe_layers == () and not info.is_moe
    assert info.num_experts == 0 and info.top_k == 0
    assert info.model_type == "mistral"
    assert info.active_params == info.total_params
    out = run(dense_session, sampling=greedy(5), capture=True)
    assert len(out.ids) == 5
    assert out.prompt[0].routing is None
    assert all(e.routing is None for e in out.generate)
    with pytest.raises(UsageError, match="dense"):
        dense_session.set_experts_per_token(1)


# -- limits, stop tokens, templates ---------------------------------------------------------------
@pytest.mark.parametrize("max_tokens", [1, 3])
def test_max_tokens_is_respected(session: Session, max_tokens: int) -> None:
    out = run(session, sampling=greedy(max_tokens))
    assert len(out.ids) == out.stats.generation_tokens == max_tokens
    assert len(out.routing) == len(out.prompt_ids) + max_tokens
    assert out.stats.finish_reason == "length"


def test_eos_stops_generation(session: Session, tiny_moe_dir: Path, tmp_path: Path) -> None:
    base = run(session, sampling=greedy(12)).ids
    # make the first token that is new at position >= 2 an end-of-sequence token
    stop_at = next(i for i in range(2, len(base)) if base[i] not in base[:i])
    eos = base[stop_at]
    model_dir = tmp_path / "eos-model"
    shutil.copytree(tiny_moe_dir, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config["eos_token_id"] = [2, eos]
    (model_dir / "config.json").write_text(json.dumps(config))

    out = run(Session.load(str(model_dir)), sampling=greedy(12))
    assert out.stats.finish_reason == "stop"
    assert out.ids[:stop_at] == base[:stop_at]
    assert len(out.ids) <= stop_at + 1 and out.stats.generation_tokens == len(out.ids)
    assert f"w{eos}" not in out.finished.text.split()
    assert len(out.routing) == len(out.prompt_ids) + len(out.ids)


def test_prompt_longer_than_context_is_refused(tiny_moe_dir: Path) -> None:
    small = Session.load(str(tiny_moe_dir), max_kv_size=8)
    long_prompt = (("user", " ".join(f"w{i}" for i in range(10, 30))),)
    with pytest.raises(UsageError, match="context holds 8"):
        run(small, long_prompt)
    # the session is still usable with a prompt that fits
    assert len(run(small, (("user", "w5"),), sampling=greedy(2)).ids) == 2


def test_empty_conversation_is_refused(session: Session) -> None:
    with pytest.raises(UsageError):
        run(session, ())


@pytest.mark.parametrize("system", ["w40 w41", "Be brief"])
def test_system_prompt_with_template_that_refuses_system_role(session: Session,
                                                              system: str) -> None:
    plain = run(session, sampling=greedy(4))
    session.reset_conversation()
    out = run(session, sampling=greedy(4), system=system)
    assert len(out.ids) == 4
    # merged into the first user turn: the system words come before the user's
    assert len(out.prompt_ids) == len(plain.prompt_ids) + 2
    user_at = out.prompt_ids.index(5)
    if system == "w40 w41":
        assert out.prompt_ids[user_at - 2:user_at] == [40, 41]
    expected = session.tokenizer.apply_chat_template(
        [{"role": "user", "content": f"{system}\n\n{PROMPT[0][1]}"}], add_generation_prompt=True)
    assert out.prompt_ids == list(expected)
