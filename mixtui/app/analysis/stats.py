"""The routing statistics of a run of tokens: load, the Mixtral paper's Table 5, co-activation,
router confidence, an expert-cache replay and an offloading projection (docs/analysis.md).

numpy only — no MLX, no Textual — so the same figures come out of a trace on any machine, the
command line and the TUI alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mixtui.core.routing import NO_EXPERT, RoutingBatch

POLICIES = ("lru", "lfu", "optimal")
# Above this many capacities per policy the replay runs on a bounded set (docs/analysis.md).
MAX_CAPACITIES = 16


@dataclass(frozen=True)
class Routing:
    """The routing that is analysed, one row per processed token in order."""

    experts: np.ndarray  # (T, L, k) int: chosen ids, NO_EXPERT padding
    weights: np.ndarray  # (T, L, k) float: gate weights (0 where padding)
    probs: np.ndarray  # (T, L, E) float: router scores
    generated: np.ndarray  # (T,) bool: True for generate-phase tokens
    layers: tuple[int, ...]  # the model's layer index of each of the L MoE layers
    num_experts: int
    top_k: int  # k in use (the widest row)
    scoring: str = "softmax"  # or "sigmoid"
    ids: np.ndarray | None = None  # (T,) token ids (for compare)

    def __post_init__(self) -> None:
        e, w, p = self.experts, self.weights, self.probs
        if e.ndim != 3 or w.shape != e.shape or p.shape != (*e.shape[:2], self.num_experts):
            raise ValueError(f"routing of mismatched shapes: experts {e.shape}, weights "
                             f"{w.shape}, probs {p.shape} for {self.num_experts} experts")
        if len(self.layers) != e.shape[1] or self.generated.shape != (e.shape[0],):
            raise ValueError(f"routing of {e.shape[1]} layers and {e.shape[0]} tokens came with "
                             f"{len(self.layers)} layer indices and {len(self.generated)} phases")
        if self.ids is not None and self.ids.shape != (e.shape[0],):
            raise ValueError(f"{len(self.ids)} token ids for {e.shape[0]} tokens")

    @property
    def tokens(self) -> int:
        return int(self.experts.shape[0])

    @classmethod
    def from_batch(cls, batch: RoutingBatch, phases: Sequence[str], layers: Sequence[int],
                   num_experts: int, scoring: str = "softmax",
                   ids: Sequence[int] | np.ndarray | None = None) -> Routing:
        """A RoutingBatch (e.g. RoutingStore.batch()) with each token's phase."""
        return cls(np.asarray(batch.experts), np.asarray(batch.weights),
                   np.asarray(batch.probs),
                   np.array([p == "generate" for p in phases], dtype=bool),
                   tuple(int(i) for i in layers), int(num_experts), int(batch.experts.shape[2]),
                   scoring, None if ids is None else np.asarray(ids, dtype=np.int64))


@dataclass(frozen=True)
class Load:
    """How the assignments of one layer spread over its experts (0 everywhere without tokens)."""

    tokens: int
    top1_share: tuple[float, ...]  # per expert: share of tokens whose top-1 it is
    topk_share: tuple[float, ...]  # per expert: share of all top-k assignments
    top1_entropy_bits: float
    topk_entropy_bits: float
    top1_imbalance: float  # max share / (1/E): 1 is perfectly even, E is one expert for all
    topk_imbalance: float


@dataclass(frozen=True)
class CachePoint:
    policy: str  # "lru" | "lfu" | "optimal"
    capacity: int  # experts held per layer
    hit_rate: float  # hits / lookups, cold start included
    misses_per_token: float  # experts loaded per token at this layer


@dataclass(frozen=True)
class LayerAnalysis:
    layer: int  # the model's layer index
    load: dict[str, Load]  # "all", "prompt", "generate"
    top1_repeat_rate: float | None  # Table 5 "1st choice"; None under 2 tokens
    topk_repeat_rate: float | None  # Table 5 "1st or 2nd choice": the top-k sets intersect
    repeat_by_phase: dict[str, tuple[float | None, float | None]]  # phase -> (top1, topk)
    coactivation: np.ndarray  # (E, E) int: tokens choosing both i and j; diagonal: i at all
    coactivation_lift: np.ndarray  # (E, E) float: observed / independent; diagonal 0
    router_entropy_bits: float  # mean entropy of the router's distribution
    top1_weight_share: float  # mean share of the gate weight on the top-1 expert
    cache: tuple[CachePoint, ...]  # POLICIES x capacities, in that order

    def hit_rate(self, policy: str, capacity: int) -> float:
        for point in self.cache:
            if point.policy == policy and point.capacity == capacity:
                return point.hit_rate
        raise KeyError(f"no {policy} cache of {capacity} experts was replayed")


@dataclass(frozen=True)
class Analysis:
    tokens: int  # tokens with routing (the others are skipped)
    prompt_tokens: int
    generated_tokens: int
    num_experts: int
    top_k: int
    top1_baseline: float  # 1/E
    topk_baseline: float  # 1 - C(E-k, k) / C(E, k)
    capacities: tuple[int, ...]
    layers: tuple[LayerAnalysis, ...]
    capacities_bounded: bool = False  # a bounded set of c, not every c = k..E
    skipped_tokens: int = 0  # tokens without routing

    def hit_rate(self, policy: str, capacity: int) -> float:
        """Mean over the layers."""
        return float(np.mean([la.hit_rate(policy, capacity) for la in self.layers]))

    def misses_per_token(self, policy: str, capacity: int) -> float:
        """Mean over the layers of the experts loaded per token at one layer."""
        return float(np.mean([p.misses_per_token for la in self.layers for p in la.cache
                              if p.policy == policy and p.capacity == capacity]))

    @property
    def top1_repeat_rate(self) -> float | None:
        rates = [la.top1_repeat_rate for la in self.layers if la.top1_repeat_rate is not None]
        return float(np.mean(rates)) if rates else None

    @property
    def topk_repeat_rate(self) -> float | None:
        rates = [la.topk_repeat_rate for la in self.layers if la.topk_repeat_rate is not None]
        return float(np.mean(rates)) if rates else None


@dataclass(frozen=True)
class LayerAgreement:
    layer: int
    top1_agree: float  # share of tokens whose top-1 experts are the same
    topk_agree: float  # share whose smaller top-k set lies inside the larger
    mean_overlap: float  # mean |A ∩ B| / min(|A|, |B|)


@dataclass(frozen=True)
class Agreement:
    tokens: int  # tokens compared (both routed, before the first differing id)
    a_tokens: int
    b_tokens: int
    a_top_k: int
    b_top_k: int
    diverged_at: int | None  # the first differing token id's index; None: none differs (the
    # longer trace may go on past the shorter)
    layers: tuple[LayerAgreement, ...] = field(default=())


@dataclass(frozen=True)
class OffloadPoint:
    capacity: int
    policy: str
    hit_rate: float
    miss_bytes_per_token: float  # expert bytes loaded per token over all the model's MoE layers
    tokens_per_s: float | None  # None without a cache bandwidth


# -- baselines -------------------------------------------------------------------------------------
def top1_baseline(num_experts: int) -> float:
    """The chance that two uniformly random top-1 choices repeat: 1/E."""
    return 1.0 / num_experts


def topk_baseline(num_experts: int, k: int) -> float:
    """The chance that two uniformly random k-sets of E intersect: 1 − C(E−k, k) / C(E, k)."""
    return 1.0 - math.comb(num_experts - k, k) / math.comb(num_experts, k)


# -- the analysis ----------------------------------------------------------------------------------
def default_capacities(num_experts: int, k: int) -> tuple[int, ...]:
    """Every c = k..E when that is at most MAX_CAPACITIES values; else k, E and a geometric
    ladder between them (the replay's cost grows with the number of capacities)."""
    if num_experts - k + 1 <= MAX_CAPACITIES:
        return tuple(range(k, num_experts + 1))
    ladder = np.geomspace(k, num_experts, MAX_CAPACITIES - 2)
    return tuple(sorted({k, num_experts, *(int(round(c)) for c in ladder)}))


def by_weight(experts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each row's experts in falling gate weight, padding last: the model's own order is not
    a ranking (mlx-lm picks the top k with argpartition), so top-1 means the largest weight."""
    valid = experts != NO_EXPERT
    key = np.where(valid, weights.astype(np.float64), -np.inf)
    order = np.argsort(-key, axis=-1, kind="stable")
    return np.take_along_axis(experts, order, axis=-1)


def routed_mask(experts: np.ndarray) -> np.ndarray:
    """(T,) True for tokens with routing (padding rows are all NO_EXPERT)."""
    return (experts != NO_EXPERT).reshape(len(experts), -1).any(axis=1)


def _entropy_bits(share: np.ndarray) -> float:
    p = share[share > 0]
    return float(-(p * np.log2(p)).sum()) if p.size else 0.0


def _load(top1: np.ndarray, ranked: np.ndarray, num_experts: int) -> Load:
    """`top1` (n,), `ranked` (n, k) of one layer."""
    n = len(top1)
    if n == 0:
        zeros = (0.0,) * num_experts
        return Load(0, zeros, zeros, 0.0, 0.0, 0.0, 0.0)
    s1 = np.bincount(top1, minlength=num_experts) / n
    chosen = ranked[ranked != NO_EXPERT]
    sk = np.bincount(chosen, minlength=num_experts) / max(len(chosen), 1)
    return Load(n, tuple(float(x) for x in s1), tuple(float(x) for x in sk), _entropy_bits(s1),
                _entropy_bits(sk), float(s1.max() * num_experts), float(sk.max() * num_experts))


def _rate(hits: np.ndarray, pairs: np.ndarray) -> float | None:
    return float(hits[pairs].mean()) if pairs.any() else None


def _coactivation(ranked: np.ndarray, num_experts: int) -> tuple[np.ndarray, np.ndarray]:
    """`ranked` (n, k) of one layer: counts of tokens choosing each pair, and their lift."""
    n, k = ranked.shape
    e = num_experts
    a = ranked[:, :, None]
    b = ranked[:, None, :]
    both = (a != NO_EXPERT) & (b != NO_EXPERT)  # (n, k, k); the diagonal j == j' counts i alone
    pair = (np.where(both, a, 0) * e + np.where(both, b, 0))[both]
    counts = np.bincount(pair, minlength=e * e).reshape(e, e).astype(np.int64)
    chosen = np.diag(counts).astype(np.float64)
    expected = np.outer(chosen, chosen) / max(n, 1)  # tokens choosing both if independent
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = np.where(expected > 0, counts / np.where(expected > 0, expected, 1), 0.0)
    np.fill_diagonal(lift, 0.0)
    return counts, lift


def _router_entropy(probs: np.ndarray) -> float:
    """Mean entropy in bits of each token's router distribution (a sigmoid router's scores are
    normalised to sum to 1 first)."""
    total = probs.sum(axis=-1, keepdims=True)
    rows = total[:, 0] > 0
    if not rows.any():
        return 0.0
    p = probs[rows] / total[rows]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log2(np.where(p > 0, p, 1)), 0.0)
    return float(-terms.sum(axis=-1).mean())


def _top1_weight_share(weights: np.ndarray, valid: np.ndarray) -> float:
    w = np.where(valid, weights.astype(np.float64), 0.0)
    total = w.sum(axis=-1)
    rows = total > 0
    return float((w.max(axis=-1)[rows] / total[rows]).mean()) if rows.any() else 0.0


def analyze(routing: Routing, capacities: Sequence[int] | None = None) -> Analysis:
    """Every statistic of docs/analysis.md, per MoE layer. Tokens without routing are
    skipped; `capacities` (each k..E) replaces the default set of cache sizes."""
    e, k = routing.num_experts, routing.top_k
    caps = default_capacities(e, k) if capacities is None else tuple(sorted(set(capacities)))
    if not caps or min(caps) < k or max(caps) > e:
        raise ValueError(f"cache capacities must lie between the experts per token ({k}) and "
                         f"the number of experts ({e}), not {list(caps)}.")
    keep = routed_mask(routing.experts)
    ranked = by_weight(routing.experts, routing.weights)[keep]  # (T, L, k)
    weights = routing.weights[keep]
    probs = routing.probs[keep]
    generated = routing.generated[keep]
    t = len(ranked)
    valid = ranked != NO_EXPERT
    top1 = ranked[..., 0]  # (T, L)
    # consecutive pairs (t, t+1) of the routed tokens, in the order they were processed
    same1 = top1[:-1] == top1[1:]  # (T-1, L)
    meet = ((ranked[:-1, :, :, None] == ranked[1:, :, None, :])
            & valid[:-1, :, :, None]).any(axis=(2, 3))  # (T-1, L)
    pair_phase = {"all": np.ones(max(t - 1, 0), bool),
                  "prompt": ~generated[:-1] & ~generated[1:],
                  "generate": generated[:-1] & generated[1:]}
    token_phase = {"all": np.ones(t, bool), "prompt": ~generated, "generate": generated}
    hits, lookups = _replay(ranked, e, caps)  # (P, C, L), (L,)
    out = []
    for j, layer in enumerate(routing.layers):
        load = {ph: _load(top1[m, j], ranked[m, j], e) for ph, m in token_phase.items()}
        repeats = {ph: (_rate(same1[:, j], m), _rate(meet[:, j], m))
                   for ph, m in pair_phase.items()}
        counts, lift = _coactivation(ranked[:, j], e)
        cache = tuple(
            CachePoint(policy, c, float(hits[p, i, j] / lookups[j]) if lookups[j] else 0.0,
                       float((lookups[j] - hits[p, i, j]) / t) if t else 0.0)
            for p, policy in enumerate(POLICIES) for i, c in enumerate(caps))
        out.append(LayerAnalysis(
            layer, load, repeats["all"][0], repeats["all"][1], repeats, counts, lift,
            _router_entropy(probs[:, j]), _top1_weight_share(weights[:, j], valid[:, j]),
            cache))
    return Analysis(t, int((~generated).sum()), int(generated.sum()), e, k, top1_baseline(e),
                    topk_baseline(e, k), caps, tuple(out),
                    capacities is None and caps != tuple(range(k, e + 1)),
                    int((~keep).sum()))


# -- the expert-cache replay -----------------------------------------------------------------------
# Tokens whose eviction keys are worked out at once: up to 256, fewer for wide models so that
# a chunk's key arrays (about 6 of tokens x L x E int64) stay near 100 MB.
CHUNK = 256
CHUNK_CELLS = 2**21


def _chunk_need(ranked: np.ndarray, num_experts: int) -> np.ndarray:
    """(b, L, E) True where a token of the chunk needs an expert."""
    b, layers, _ = ranked.shape
    need = np.zeros((b, layers, num_experts + 1), dtype=bool)  # the last column: padding
    t_idx = np.arange(b)[:, None, None]
    l_idx = np.arange(layers)[None, :, None]
    need[t_idx, l_idx, np.where(ranked != NO_EXPERT, ranked, num_experts)] = True
    return need[..., :num_experts]


def _first_use_from(need: np.ndarray, start: int, after: np.ndarray, never: int) -> np.ndarray:
    """(b, L, E): for each token of a chunk beginning at `start`, the first token at or after
    it that uses each expert; `after` (L, E) is that for the token after the chunk."""
    b = len(need)
    at = np.where(need, (start + np.arange(b))[:, None, None], never)
    rev = np.minimum.accumulate(np.concatenate([after[None], at[::-1]]), axis=0)
    return rev[:0:-1]


def _count(mask: np.ndarray) -> np.ndarray:
    """True values along the last axis of a C-contiguous bool array: its bytes read as
    uint64 words and their bits counted (several times faster than sum for small E)."""
    e = mask.shape[-1]
    if e % 8 or not hasattr(np, "bitwise_count"):  # numpy < 2.0 has no bitwise_count
        return mask.sum(axis=-1)
    words = mask.view(np.uint64)
    counted = np.bitwise_count(words)
    return counted[..., 0].astype(np.int64) if e == 8 else counted.sum(axis=-1, dtype=np.int64)


def _replay(ranked: np.ndarray, num_experts: int,
            capacities: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Hits (policies, capacities, L) and lookups (L,) of every policy and capacity at once.

    The cache of each (policy, capacity, layer) starts empty. Each token's experts are looked
    up together: hits refresh, misses are loaded, and when the cache is full the cached
    experts this token does not need with the smallest eviction key go:
    - lru: last use (a token's experts in falling weight count as used in that order);
    - lfu: uses so far, counted over the whole trace (they survive eviction), then last use;
    - optimal: the next use, farthest first (never again before all), then last use.
    The keys depend on the trace alone, not on what is cached, so they are worked out for a
    chunk of tokens at once with cumulative sums and maxima; only the cache itself steps
    token by token. An expert that is evicted is not used by the token, so its key counted
    up to and including that token is its key before it.
    """
    t, layers, k = ranked.shape
    e = num_experts
    caps = np.array(capacities)
    room = caps[None, :, None]  # (1, C, 1)
    hits = np.zeros((len(POLICIES), len(caps), layers), dtype=np.int64)
    lru, others = hits[0], hits[1:]  # views: LRU by stack depth, the others step by step
    cached = np.zeros((*others.shape, e), dtype=bool)  # (P-1, C, L, E)
    size = np.zeros(others.shape, dtype=np.int64)
    valid = (ranked != NO_EXPERT).sum(axis=2)  # (T, L) lookups per token
    lookups = valid.sum(axis=0).astype(np.int64)
    if t == 0:
        return hits, lookups
    stamp = t * (k + 1) + k + 1  # larger than any recency key
    size_chunk = max(1, min(CHUNK, CHUNK_CELLS // (layers * e)))
    starts = list(range(0, t, size_chunk))
    # the first use at or after each chunk's end, from the last chunk back
    after = {starts[-1]: np.full((layers, e), t, dtype=np.int64)}
    for s0, s1 in zip(starts[::-1], starts[::-1][1:], strict=False):
        need = _chunk_need(ranked[s0:s0 + size_chunk], e)
        after[s1] = np.where(need.any(axis=0), s0 + need.argmax(axis=0), after[s0])
    last = np.full((layers, e), -1, dtype=np.int64)
    uses = np.zeros((layers, e), dtype=np.int64)
    rank_key = (k - np.arange(k))[None, None, :]  # the top-1 counts as the latest of its token
    for s0 in starts:
        chunk = ranked[s0:s0 + size_chunk]
        b = len(chunk)
        ok = chunk != NO_EXPERT
        need = _chunk_need(chunk, e)  # (b, L, E)
        when = np.full((b, layers, e + 1), -1, dtype=np.int64)
        t_idx = np.arange(b)[:, None, None]
        when[t_idx, np.arange(layers)[None, :, None], np.where(ok, chunk, e)] \
            = (s0 + t_idx) * (k + 1) + rank_key
        recency = np.maximum.accumulate(np.concatenate([last[None], when[..., :e]]), axis=0)
        # LRU keeps the c latest experts (its inclusion property holds for a token's
        # experts looked up together, as each token needs at most k <= c): an expert hits
        # at every capacity above the number of experts used since it was
        before = recency[:-1]  # (b, L, E) last use before each token
        mine = np.take_along_axis(before, np.where(ok, chunk, 0), axis=2)  # (b, L, k)
        depth = (before[:, :, None, :] > mine[..., None]).sum(axis=-1)
        depth = np.where(ok & (mine >= 0), depth, e)  # a first use misses at every size
        lru += (depth[None] < caps[:, None, None, None]).sum(axis=(1, 3))
        recency = recency[1:]
        count = uses[None] + np.cumsum(need, axis=0)
        nxt = _first_use_from(need, s0, after[s0], t)
        raw = np.stack([count * stamp + recency, (t - nxt) * stamp + recency], axis=1)
        # each expert's place in its layer's eviction order (0 goes first), small integers
        # that argmin reads faster than the raw keys
        order = np.argsort(raw, axis=-1)  # the experts in the order they would go
        place = np.empty(order.shape, dtype=np.int16)  # its inverse: each expert's place
        np.put_along_axis(place, order, np.arange(e, dtype=np.int16), axis=-1)
        keys = place[:, :, None]  # (b, P-1, 1, L, E)
        orders = order.astype(np.int16)[:, :, None]
        last, uses = recency[-1], count[-1]
        lookups_here = valid[s0:s0 + b]
        for i in range(b):
            nd = need[i]
            hit = cached & nd
            n_hit = _count(hit)
            others += n_hit
            total = size + (lookups_here[i] - n_hit)
            evict = total - room
            size = np.minimum(total, room)
            most = int(evict.max())
            if most > 2:  # many go: the candidates in eviction order, the first ones
                candidates = cached ^ hit  # cached, not needed
                ranked_out = np.take_along_axis(candidates, orders[i], axis=-1)
                ranked_out &= np.cumsum(ranked_out, axis=-1) <= evict[..., None]
                cached &= ~np.take_along_axis(ranked_out, keys[i], axis=-1)
            elif most > 0:  # one or two go: a minimum a round beats a sort
                key = np.where(cached ^ hit, keys[i], e)  # cached, not needed: candidates
                for r in range(most):
                    # places are distinct in a layer: the minimum is one expert
                    gone = (key == key.min(axis=-1, keepdims=True)) & (evict > r)[..., None]
                    cached &= ~gone
                    if r + 1 < most:
                        np.putmask(key, gone, e)
            cached |= nd
    return hits, lookups


# -- comparing two runs ----------------------------------------------------------------------------
def agreement(a: Routing, b: Routing) -> Agreement:
    """Per layer, how often two runs over the same tokens chose the same experts.

    The two must share their geometry and their first prompt; they are compared up to the
    first token id that differs (the answers of two settings part at some token). Raises
    ValueError with one sentence otherwise.
    """
    if (a.layers, a.num_experts) != (b.layers, b.num_experts):
        raise ValueError(f"the two traces have different geometries ({len(a.layers)} MoE layers "
                         f"of {a.num_experts} experts against {len(b.layers)} of "
                         f"{b.num_experts}); compare traces of the same model.")
    if a.ids is None or b.ids is None:
        raise ValueError("a trace without token ids cannot be compared; write both with "
                         "`mixtui generate --trace`.")
    n = min(a.tokens, b.tokens)
    differ = np.nonzero(a.ids[:n] != b.ids[:n])[0]
    diverged = int(differ[0]) if differ.size else None
    upto = n if diverged is None else diverged
    prompt_a = int(np.argmax(a.generated)) if a.generated.any() else a.tokens
    prompt_b = int(np.argmax(b.generated)) if b.generated.any() else b.tokens
    if prompt_a != prompt_b or upto < prompt_a:
        raise ValueError("the two traces are of different texts (their prompts differ); "
                         "compare two runs of the same prompt.")
    both = routed_mask(a.experts[:upto]) & routed_mask(b.experts[:upto])
    ra = by_weight(a.experts[:upto], a.weights[:upto])[both]  # (n, L, ka)
    rb = by_weight(b.experts[:upto], b.weights[:upto])[both]
    m = len(ra)
    out = []
    if m:
        va, vb = ra != NO_EXPERT, rb != NO_EXPERT
        shared = ((ra[:, :, :, None] == rb[:, :, None, :]) & va[:, :, :, None]).sum(axis=(2, 3))
        smaller = np.minimum(va.sum(-1), vb.sum(-1))
        for j, layer in enumerate(a.layers):
            out.append(LayerAgreement(
                layer, float((ra[:, j, 0] == rb[:, j, 0]).mean()),
                float((shared[:, j] == smaller[:, j]).mean()),
                float((shared[:, j] / np.maximum(smaller[:, j], 1)).mean())))
    return Agreement(m, a.tokens, b.tokens, a.top_k, b.top_k, diverged, tuple(out))


# -- the offloading projection ---------------------------------------------------------------------
def offload(analysis: Analysis, expert_bytes: float, moe_layers: int,
            resident_bytes_per_token: float, memory_gbps: float | None,
            cache_gbps: float | None, policy: str = "lru") -> tuple[OffloadPoint, ...]:
    """Per capacity c, the decode speed of an engine that keeps c experts per layer in memory
    and loads the misses at `cache_gbps`:
    t = resident / memory_bw + miss_bytes_per_token(c) / cache_bw, tokens/s = 1/t,
    miss_bytes_per_token = mean misses per MoE layer per token × expert_bytes × moe_layers
    (the trace's mean miss rate applied to every MoE layer of the model). Without
    `memory_gbps` the time is the misses' alone."""
    if policy not in POLICIES:
        raise ValueError(f"no cache policy {policy!r}; choose one of {', '.join(POLICIES)}.")
    points = []
    for c in analysis.capacities:
        misses = analysis.misses_per_token(policy, c) if analysis.layers else 0.0
        moved = misses * expert_bytes * moe_layers
        tps = None
        if cache_gbps:
            seconds = moved / (cache_gbps * 1e9)
            if memory_gbps:
                seconds += resident_bytes_per_token / (memory_gbps * 1e9)
            tps = 1.0 / seconds if seconds > 0 else math.inf
        points.append(OffloadPoint(c, policy, analysis.hit_rate(policy, c) if analysis.layers
                                   else 0.0, moved, tps))
    return tuple(points)
