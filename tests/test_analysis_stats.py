"""The routing statistics against small traces worked out by hand, and the cache replay against
a plain one-expert-at-a-time reference and the Belady bound."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mixtui.app.analysis.stats import (
    NO_EXPERT,
    POLICIES,
    Routing,
    agreement,
    analyze,
    by_weight,
    default_capacities,
    offload,
    topk_baseline,
)
from mixtui.core.routing import RoutingBatch


def routing(experts: list, weights: list | None = None, probs: list | None = None,
            num_experts: int = 4, generated: list[bool] | None = None,
            ids: list[int] | None = None) -> Routing:
    """`experts` (T, L, k) nested lists; weights default to falling in row order."""
    e = np.array(experts, dtype=np.int32)
    t, layers, k = e.shape
    if weights is None:
        w = np.where(e != NO_EXPERT, np.linspace(1.0, 0.5, k)[None, None, :], 0.0)
    else:
        w = np.array(weights, dtype=np.float64)
    p = (np.full((t, layers, num_experts), 1 / num_experts) if probs is None
         else np.array(probs, dtype=np.float64))
    g = np.zeros(t, bool) if generated is None else np.array(generated, bool)
    return Routing(e, w, p, g, tuple(range(layers)), num_experts, k,
                   ids=None if ids is None else np.array(ids))


# -- a hand-worked trace: E = 4, k = 2, one layer, two prompt and two generated tokens ------------
HAND = routing(
    [[[0, 1]], [[1, 0]], [[2, 3]], [[3, 1]]],
    weights=[[[.6, .4]], [[.3, .7]], [[.5, .5]], [[.9, .1]]],
    probs=[[[.25, .25, .25, .25]], [[1, 0, 0, 0]], [[.5, .5, 0, 0]], [[.5, .25, .25, 0]]],
    generated=[False, False, True, True])


def test_top1_is_the_largest_weight_not_the_first_in_the_row() -> None:
    # token 1 lists expert 1 first but gives expert 0 the larger weight; a tie keeps row order
    assert by_weight(HAND.experts, HAND.weights)[:, 0, 0].tolist() == [0, 0, 2, 3]


def test_load_of_the_hand_worked_trace() -> None:
    la = analyze(HAND).layers[0]
    load = la.load["all"]
    assert load.tokens == 4
    assert load.top1_share == pytest.approx((.5, 0, .25, .25))
    assert load.topk_share == pytest.approx((2 / 8, 3 / 8, 1 / 8, 2 / 8))
    assert load.top1_entropy_bits == pytest.approx(1.5)  # .5·1 + 2·(.25·2)
    assert load.topk_entropy_bits == pytest.approx(
        -sum(p * math.log2(p) for p in (.25, .375, .125, .25)))
    assert load.top1_imbalance == pytest.approx(2.0) and load.topk_imbalance == pytest.approx(1.5)
    assert la.load["prompt"].tokens == 2 and la.load["prompt"].top1_share == pytest.approx(
        (1, 0, 0, 0))
    assert la.load["generate"].top1_share == pytest.approx((0, 0, .5, .5))


def test_table5_rates_of_the_hand_worked_trace() -> None:
    a = analyze(HAND)
    la = a.layers[0]
    # top-1: 0,0,2,3 -> one repeat in three pairs; sets {01},{01},{23},{13} -> two meet
    assert la.top1_repeat_rate == pytest.approx(1 / 3)
    assert la.topk_repeat_rate == pytest.approx(2 / 3)
    # a phase counts the pairs inside it; the pair across the phases only in "all"
    assert la.repeat_by_phase["prompt"] == pytest.approx((1.0, 1.0))
    assert la.repeat_by_phase["generate"] == pytest.approx((0.0, 1.0))
    assert a.top1_baseline == pytest.approx(.25)
    assert a.topk_baseline == pytest.approx(1 - math.comb(2, 2) / math.comb(4, 2))  # 5/6


def test_coactivation_of_the_hand_worked_trace_against_independence() -> None:
    la = analyze(HAND).layers[0]
    c = la.coactivation
    assert c[0, 1] == c[1, 0] == 2 and c[2, 3] == 1 and c[1, 3] == 1 and c[0, 2] == 0
    assert np.diag(c).tolist() == [2, 3, 1, 2]  # tokens choosing each expert
    # lift: n_ij / (n_i n_j / T)
    assert la.coactivation_lift[0, 1] == pytest.approx(2 / (2 * 3 / 4))
    assert la.coactivation_lift[2, 3] == pytest.approx(1 / (1 * 2 / 4))
    assert la.coactivation_lift[1, 3] == pytest.approx(1 / (3 * 2 / 4))
    assert la.coactivation_lift[0, 2] == 0 and la.coactivation_lift[1, 1] == 0


def test_uniform_random_routing_sits_at_the_independence_figures() -> None:
    rng = np.random.default_rng(3)
    e, k, t = 8, 2, 6000
    ex = np.array([rng.choice(e, k, replace=False) for _ in range(t)])[:, None, :]
    a = analyze(routing(ex.tolist(), num_experts=e))
    lift = a.layers[0].coactivation_lift
    off = lift[~np.eye(e, dtype=bool)]
    # choosing k distinct experts: P(i and j) = k(k-1)/(E(E-1)) against (k/E)^2
    assert off.mean() == pytest.approx(e * (k - 1) / (k * (e - 1)), rel=0.03)
    assert a.layers[0].top1_repeat_rate == pytest.approx(1 / e, abs=0.015)
    assert a.layers[0].topk_repeat_rate == pytest.approx(topk_baseline(e, k), abs=0.02)


def test_router_confidence_of_the_hand_worked_trace() -> None:
    la = analyze(HAND).layers[0]
    assert la.router_entropy_bits == pytest.approx((2 + 0 + 1 + 1.5) / 4)
    assert la.top1_weight_share == pytest.approx((.6 + .7 + .5 + .9) / 4)


def test_sigmoid_scores_are_normalised_before_their_entropy() -> None:
    r = routing([[[0]]], probs=[[[.9, .9, 0, 0]]])
    assert analyze(r).layers[0].router_entropy_bits == pytest.approx(1.0)


def test_the_cache_of_the_hand_worked_trace() -> None:
    la = analyze(HAND).layers[0]
    # c = k: every policy is forced to evict all it holds that the token does not need
    assert {la.hit_rate(p, 2) for p in POLICIES} == {3 / 8}
    # c = 3: token 2 needs {2,3} with one free slot; LRU and LFU drop expert 1 (older than 0,
    # equal counts), then 0 for 1 at token 3; the optimum drops 0 (never used again)
    assert la.hit_rate("lru", 3) == la.hit_rate("lfu", 3) == 3 / 8
    assert la.hit_rate("optimal", 3) == 4 / 8
    assert {la.hit_rate(p, 4) for p in POLICIES} == {4 / 8}  # only cold misses
    lru3 = next(p for p in la.cache if p.policy == "lru" and p.capacity == 3)
    assert lru3.misses_per_token == pytest.approx(5 / 4)


def test_lru_lfu_and_optimal_part_on_a_hand_worked_sequence() -> None:
    # k = 1, c = 2: 0 1 0 2 1 0
    r = routing([[[x]] for x in (0, 1, 0, 2, 1, 0)])
    la = analyze(r, capacities=[2]).layers[0]
    # LRU: m m h m(evicts 1) m(evicts 0) m(evicts 2)
    assert la.hit_rate("lru", 2) == pytest.approx(1 / 6)
    # LFU, counts kept through eviction: at 2 expert 1 (1 use) goes, at 1 expert 2 goes
    assert la.hit_rate("lfu", 2) == pytest.approx(2 / 6)
    # optimal: at 2 evict 0 (next use farther than 1's), then 1 hits; 0 misses at the end
    assert la.hit_rate("optimal", 2) == pytest.approx(2 / 6)


def test_lfu_counts_survive_eviction() -> None:
    # k = 1, c = 2: expert 0 is used three times, evicted by expert 1's four uses, and comes
    # back; with its old count kept it outlives expert 2 at the end (a count reset at
    # eviction would drop 0 instead and miss the last token: 5/12)
    seq = (0, 0, 0, 1, 1, 1, 1, 2, 3, 0, 2, 0)
    la = analyze(routing([[[x]] for x in seq]), capacities=[2]).layers[0]
    assert la.hit_rate("lfu", 2) == pytest.approx(6 / 12)
    assert reference_hits([[x] for x in seq], 2, "lfu") == 6


def test_one_token() -> None:
    a = analyze(routing([[[2, 0], [1, 3]]]))
    assert a.tokens == 1 and len(a.layers) == 2
    la = a.layers[0]
    assert la.top1_repeat_rate is None and la.topk_repeat_rate is None
    assert la.load["all"].top1_share == pytest.approx((0, 0, 1, 0))
    assert la.load["generate"].tokens == 0 and la.load["generate"].top1_share == (0,) * 4
    assert all(p.hit_rate == 0 for p in la.cache)  # a cold cache only misses


def test_a_layer_where_one_expert_takes_everything() -> None:
    t = 10
    r = routing([[[0], [i % 4]] for i in range(t)])
    a = analyze(r)
    one, spread = a.layers
    assert one.load["all"].top1_share == pytest.approx((1, 0, 0, 0))
    assert one.load["all"].top1_entropy_bits == 0 and one.load["all"].top1_imbalance == 4
    assert one.top1_repeat_rate == 1.0 and spread.top1_repeat_rate == 0.0
    assert spread.load["all"].top1_entropy_bits == pytest.approx(
        -sum(p * math.log2(p) for p in (.3, .3, .2, .2)))
    for policy in POLICIES:
        assert one.hit_rate(policy, 1) == pytest.approx((t - 1) / t)
    # cycling through all four experts in a cache of 1 (or of 3, for LRU) never hits
    assert spread.hit_rate("lru", 1) == 0 and spread.hit_rate("lru", 3) == 0
    assert spread.hit_rate("optimal", 3) > 0  # the optimum keeps what comes back soonest


def test_k_equals_e() -> None:
    t, e = 5, 4
    r = routing([[[0, 1, 2, 3]]] * t, num_experts=e)
    a = analyze(r)
    assert a.capacities == (4,) and a.topk_baseline == 1.0
    la = a.layers[0]
    assert la.topk_repeat_rate == 1.0
    assert la.load["all"].topk_share == pytest.approx((.25,) * 4)
    assert la.load["all"].topk_imbalance == pytest.approx(1.0)
    assert [p.hit_rate for p in la.cache] == pytest.approx([(t - 1) / t] * 3)


def test_k_equals_1_baselines() -> None:
    assert topk_baseline(8, 1) == pytest.approx(1 / 8)
    assert topk_baseline(8, 2) == pytest.approx(1 - 15 / 28)
    assert round(100 * topk_baseline(8, 2), 1) == 46.4  # the paper's Table 5 figure
    assert topk_baseline(4, 3) == 1.0  # two 3-sets of 4 always meet


def test_tokens_without_routing_are_skipped_and_padding_is_not_a_lookup() -> None:
    r = routing([[[0, 1]], [[NO_EXPERT, NO_EXPERT]], [[0, NO_EXPERT]], [[0, 1]]],
                weights=[[[.6, .4]], [[0, 0]], [[1, 0]], [[.6, .4]]])
    a = analyze(r)
    assert a.tokens == 3 and a.skipped_tokens == 1
    la = a.layers[0]
    # lookups: 2 + 1 + 2 = 5; c = 2: m m | h | h h  -> 3 hits
    assert la.hit_rate("lru", 2) == pytest.approx(3 / 5)
    assert la.top1_repeat_rate == 1.0  # 0, 0, 0 over the routed tokens
    assert la.load["all"].topk_share == pytest.approx((3 / 5, 2 / 5, 0, 0))


def test_capacities() -> None:
    assert default_capacities(8, 2) == (2, 3, 4, 5, 6, 7, 8)
    many = default_capacities(128, 8)
    assert many[0] == 8 and many[-1] == 128 and len(many) <= 16
    assert list(many) == sorted(set(many))
    assert default_capacities(20, 6) == tuple(range(6, 21))  # 15 values: every one
    r = routing([[[0, 1]]])
    assert analyze(r, capacities=[4, 2]).capacities == (2, 4)
    with pytest.raises(ValueError, match="between the experts per token"):
        analyze(r, capacities=[1])


# -- the replay against a plain reference ----------------------------------------------------------
def reference_hits(seq: list[list[int]], capacity: int, policy: str) -> int:
    """One layer, one expert at a time in lists and dicts, with the rules of docs/analysis.md.
    `seq`: each token's experts in falling weight."""
    cache: set[int] = set()
    last: dict[int, tuple[int, int]] = {}
    uses: dict[int, int] = {}
    hits = 0
    for t, token in enumerate(seq):
        hits += sum(x in cache for x in token)
        for x in token:
            if x in cache:
                continue
            if len(cache) >= capacity:
                candidates = [y for y in cache if y not in token]

                def next_use(y: int, t: int = t) -> int:
                    return next((u for u in range(t + 1, len(seq)) if y in seq[u]), len(seq))

                if policy == "lru":
                    victim = min(candidates, key=lambda y: last[y])
                elif policy == "lfu":
                    victim = min(candidates, key=lambda y: (uses[y], last[y]))
                else:
                    victim = min(candidates, key=lambda y: (-next_use(y), last[y]))
                cache.remove(victim)
            cache.add(x)
        for rank, x in enumerate(token):
            last[x] = (t, -rank)  # the top-1 counts as the most recent of its token
            uses[x] = uses.get(x, 0) + 1
    return hits


@pytest.mark.parametrize("seed", range(16))
def test_replay_matches_the_reference_and_never_beats_belady(seed: int) -> None:
    rng = np.random.default_rng(seed)
    e = int(rng.choice([3, 4, 5, 6, 8, 10, 16]))  # 8 and 16: the replay counts bits by words
    k = int(rng.integers(1, min(5, e) + 1))  # k > 2: more than two go at once
    t = int(rng.integers(1, 40))
    # skewed choices, so that caches matter
    p = rng.dirichlet(np.full(e, 0.5), size=2)
    ex = np.array([[rng.choice(e, k, replace=False, p=p[j]) for j in range(2)]
                   for _ in range(t)])
    r = routing(ex.tolist(), num_experts=e)
    a = analyze(r)
    for j, la in enumerate(a.layers):
        seq = [list(row) for row in ex[:, j]]
        rates = {}
        for policy in POLICIES:
            for c in a.capacities:
                expected = reference_hits(seq, c, policy) / (t * k)
                assert la.hit_rate(policy, c) == pytest.approx(expected), (policy, c)
                rates[policy, c] = la.hit_rate(policy, c)
        for c in a.capacities:
            assert rates["lru", c] <= rates["optimal", c] + 1e-12
            assert rates["lfu", c] <= rates["optimal", c] + 1e-12
        for policy in ("lru", "optimal"):  # both have the inclusion property
            curve = [rates[policy, c] for c in a.capacities]
            assert curve == sorted(curve)


# -- two runs --------------------------------------------------------------------------------------
def test_agreement_of_two_settings() -> None:
    ids = [5, 6, 7, 8]
    gen = [False, False, True, True]
    k2 = routing([[[0, 1]], [[2, 3]], [[1, 2]], [[0, 3]]], generated=gen, ids=ids)
    k1 = routing([[[0]], [[3]], [[1]], [[2]]], generated=gen, ids=ids)
    ag = agreement(k2, k1)
    assert ag.tokens == 4 and ag.diverged_at is None and (ag.a_top_k, ag.b_top_k) == (2, 1)
    la = ag.layers[0]
    assert la.top1_agree == pytest.approx(2 / 4)  # tokens 0 and 2
    assert la.topk_agree == pytest.approx(3 / 4)  # the one expert inside the pair: 0, 1, 2
    assert la.mean_overlap == pytest.approx(3 / 4)
    same = agreement(k2, k2).layers[0]
    assert (same.top1_agree, same.topk_agree, same.mean_overlap) == (1.0, 1.0, 1.0)


def test_agreement_stops_where_the_answers_part() -> None:
    gen = [False, False, True, True]
    a = routing([[[0]], [[1]], [[2]], [[3]]], generated=gen, ids=[1, 2, 3, 4])
    b = routing([[[0]], [[1]], [[2]], [[0]]], generated=gen, ids=[1, 2, 3, 9])
    ag = agreement(a, b)
    assert ag.diverged_at == 3 and ag.tokens == 3 and ag.layers[0].top1_agree == 1.0
    shorter = routing([[[0]], [[1]], [[2]]], generated=gen[:3], ids=[1, 2, 3])
    ag = agreement(a, shorter)  # one answer stopped sooner: the common tokens
    assert ag.diverged_at is None and ag.tokens == 3 and (ag.a_tokens, ag.b_tokens) == (4, 3)


def test_agreement_refuses_other_texts_and_geometries() -> None:
    gen = [False, False, True]
    a = routing([[[0]], [[1]], [[2]]], generated=gen, ids=[1, 2, 3])
    other_prompt = routing([[[0]], [[1]], [[2]]], generated=gen, ids=[1, 7, 3])
    with pytest.raises(ValueError, match="different texts"):
        agreement(a, other_prompt)
    wider = routing([[[0]], [[1]], [[2]]], generated=gen, ids=[1, 2, 3], num_experts=8)
    with pytest.raises(ValueError, match="different geometries"):
        agreement(a, wider)


# -- the offloading projection ---------------------------------------------------------------------
def test_offload_projection() -> None:
    a = analyze(HAND)
    points = {p.capacity: p for p in offload(a, expert_bytes=1e6, moe_layers=32,
                                             resident_bytes_per_token=2e9, memory_gbps=100,
                                             cache_gbps=4, policy="lru")}
    # c = 3: 5 misses over 4 tokens at the one layer -> 1.25 experts per layer per token
    assert points[3].miss_bytes_per_token == pytest.approx(1.25 * 1e6 * 32)
    assert points[3].tokens_per_s == pytest.approx(1 / (2e9 / 100e9 + 40e6 / 4e9))
    assert points[3].hit_rate == pytest.approx(3 / 8)
    bare = offload(a, 1e6, 32, 2e9, memory_gbps=None, cache_gbps=None)
    assert all(p.tokens_per_s is None for p in bare)
    alone = offload(a, 1e6, 32, 2e9, memory_gbps=None, cache_gbps=4)
    assert alone[1].tokens_per_s == pytest.approx(4e9 / 40e6)


def test_from_batch() -> None:
    batch = RoutingBatch(np.array([[[1, 0]], [[2, 3]]], np.int32),
                         np.array([[[.4, .6]], [[.5, .5]]], np.float32),
                         np.full((2, 1, 4), .25, np.float32))
    r = Routing.from_batch(batch, ["prompt", "generate"], layers=[3], num_experts=4,
                           ids=[10, 11])
    assert r.top_k == 2 and r.layers == (3,) and r.generated.tolist() == [False, True]
    assert analyze(r).layers[0].layer == 3
    with pytest.raises(ValueError, match="layer indices"):
        Routing.from_batch(batch, ["prompt", "generate"], layers=[0, 1], num_experts=4)


@pytest.mark.parametrize("chunk", [1, 5, 8])
def test_replay_across_chunks_matches_the_reference(chunk: int,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The eviction keys are worked out a chunk of tokens at a time: what carries from one
    chunk to the next (last use, counts, next use) must not change a figure."""
    from mixtui.app.analysis import stats

    monkeypatch.setattr(stats, "CHUNK", chunk)
    monkeypatch.setattr(stats, "CHUNK_CELLS", 10**9)
    rng = np.random.default_rng(chunk)
    e, k, t = 6, 2, 37
    p = rng.dirichlet(np.full(e, 0.5))
    ex = np.array([[rng.choice(e, k, replace=False, p=p)] for _ in range(t)])
    la = analyze(routing(ex.tolist(), num_experts=e)).layers[0]
    seq = [list(row) for row in ex[:, 0]]
    for policy in POLICIES:
        for c in range(k, e + 1):
            assert la.hit_rate(policy, c) == pytest.approx(
                reference_hits(seq, c, policy) / (t * k)), (policy, c)
