"""The checks every MoE family passes, on a tiny random model of it built from mlx-lm's own
classes: its captured experts and weights equal an independent recomputation from each MoE
block's own input, the tokens are the same with capture on and off, there is exactly one
record per processed token, and experts per token can be changed.

The recomputation is written here, in numpy, from each family's published routing rule
(the reference function of its model_type in REFERENCES); it shares no code with mlx-lm or
with mixtui's capture. It reads the router's weights from the block and the block's input
as the model gave it (recorded by wrapping the block, not by stepping the layers by hand),
so it works for every architecture, linear attention and sliding windows included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from mixtui.core.routing import RoutingBatch
from mixtui.core.types import Sampling
from mixtui.engine.messages import Finished, Generate, Tokens
from mixtui.engine.session import Session
from mixtui.families.adapters import get_path


@dataclass
class Reference:
    """One MoE layer's routing, recomputed: (T, k) experts and weights, (T, E) scores."""

    experts: np.ndarray
    weights: np.ndarray
    probs: np.ndarray


def array(module: nn.Module, path: str) -> np.ndarray:
    """A parameter of the block as float64 numpy (the tiny models are float32)."""
    return np.array(get_path(module, path).astype(mx.float32)).astype(np.float64)


def linear(x: np.ndarray, module: nn.Module, path: str, bias: bool = False) -> np.ndarray:
    out = x @ array(module, f"{path}.weight").T
    return out + array(module, f"{path}.bias") if bias else out


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def top(scores: np.ndarray, k: int) -> np.ndarray:
    """The k largest per row, largest first (ties: the lower id)."""
    return np.argsort(-scores, axis=-1, kind="stable")[..., :k]


# -- each family's rule, from its paper / Hugging Face model card ------------------------------
def top_k_then_softmax(router: str, bias: bool = False
                       ) -> Callable[[nn.Module, np.ndarray, int], Reference]:
    """Mixtral, gpt-oss (a router with a bias), Granite: the router's logits -> top k ->
    a softmax over the k chosen logits (the weights sum to 1)."""
    def rule(block: nn.Module, x: np.ndarray, k: int) -> Reference:
        logits = linear(x, block, router, bias=bias)
        experts = top(logits, k)
        weights = softmax(np.take_along_axis(logits, experts, -1))
        return Reference(experts, weights, softmax(logits))
    return rule


def softmax_then_top_k(block: nn.Module, x: np.ndarray, k: int) -> Reference:
    """Qwen3-MoE, Qwen3-Next, Qwen2-MoE, OLMoE (HF *SparseMoeBlock): a softmax over all
    experts -> top k -> renormalised only when the block's `norm_topk_prob` (a block without
    one, as mlx-lm's Qwen2-MoE, does not). Shared experts are not routed."""
    probs = softmax(linear(x, block, "gate"))
    experts = top(probs, k)
    weights = np.take_along_axis(probs, experts, -1)
    if getattr(block, "norm_topk_prob", False):
        weights = weights / weights.sum(-1, keepdims=True)
    return Reference(experts, weights, probs)


# -- families a: olmoe, qwen2_moe, qwen3_next, granitemoe, phimoe --------------------------------
def phimoe_reference(block: nn.Module, x: np.ndarray, k: int) -> Reference:
    # Phi-3.5-MoE (HF modeling_phimoe `sparsemixer`, inference path), its two rounds taken
    # k times: the best remaining expert; its weight is its softmax probability among the
    # remaining experts whose logit is within the jitter band of the best,
    # (best - logit) / max(|logit|, best) <= 2 * jitter; then it is masked out.
    logits = linear(x, block, "gate")
    jitter = float(block.jitter_eps)
    remaining = logits.copy()
    experts = np.zeros((len(x), k), np.int64)
    weights = np.zeros((len(x), k))
    rows = np.arange(len(x))
    for r in range(k):
        best = remaining.max(-1, keepdims=True)
        chosen = remaining.argmax(-1)
        factor = np.maximum(np.abs(logits), best)
        band = np.where((best - logits) / factor > 2 * jitter, -np.inf, remaining)
        experts[:, r] = chosen
        weights[:, r] = softmax(band)[rows, chosen]
        remaining[rows, chosen] = -np.inf
    return Reference(experts, weights, softmax(logits))


# model_type -> reference; every MoE family must have one (a test says so)
REFERENCES: dict[str, Callable[[nn.Module, np.ndarray, int], Reference]] = {
    "mixtral": top_k_then_softmax("gate"),
    "qwen3_moe": softmax_then_top_k,
}
# families a
REFERENCES |= {
    "olmoe": softmax_then_top_k,
    "qwen2_moe": softmax_then_top_k,
    "qwen3_next": softmax_then_top_k,
    "granitemoe": top_k_then_softmax("router.layer"),
    "phimoe": phimoe_reference,
}


# -- family b: gpt_oss, deepseek_v2, deepseek_v3, glm4_moe -----------------------------------
def group_mask(scores: np.ndarray, n_group: int, topk_group: int, group_score: Callable
               ) -> np.ndarray:
    """HF DeepSeek's group limit: scores of every expert outside the `topk_group` groups with
    the best `group_score` set to 0 (scores (T, E); groups are consecutive ids)."""
    grouped = scores.reshape(scores.shape[0], n_group, -1)  # (T, groups, E / groups)
    keep = top(group_score(grouped), topk_group)  # (T, topk_group)
    mask = np.zeros(grouped.shape[:2], bool)
    np.put_along_axis(mask, keep, True, -1)
    return np.where(mask[..., None], grouped, 0.0).reshape(scores.shape)


def deepseek_v2_reference(block: nn.Module, x: np.ndarray, k: int) -> Reference:
    # HF DeepseekV2 MoEGate: softmax over all experts -> (group_limited_greedy: only the
    # topk_group groups with the highest single probability compete) -> top k -> the chosen
    # probabilities x routed_scaling_factor (norm_topk_prob is false in every published V2;
    # mlx-lm 0.32 does not read it)
    gate = block.gate
    probs = softmax(x @ array(block, "gate.weight").T)
    choosing = probs
    if gate.topk_method == "group_limited_greedy":
        choosing = group_mask(probs, gate.n_group, gate.topk_group, lambda g: g.max(-1))
    experts = top(choosing, k)
    weights = np.take_along_axis(probs, experts, -1) * gate.routed_scaling_factor
    return Reference(experts, weights, probs)


def sigmoid_noaux_reference(block: nn.Module, x: np.ndarray, k: int) -> Reference:
    # HF DeepseekV3 / Glm4Moe MoEGate ("noaux_tc"): s = sigmoid(logits); choose with
    # s + e_score_correction_bias (group-limited: only the topk_group groups whose two best
    # biased scores sum highest compete) -> top k -> weights from the unbiased s,
    # renormalised when norm_topk_prob, x routed_scaling_factor. One difference from HF:
    # at k = 1 mlx-lm 0.32 does not renormalise (HF would give the one expert 1.0), and
    # the reference follows what the block multiplies by.
    gate = block.gate
    scores = 1.0 / (1.0 + np.exp(-(x @ array(block, "gate.weight").T)))
    choosing = scores + array(block, "gate.e_score_correction_bias")
    if gate.n_group > 1:
        choosing = group_mask(choosing, gate.n_group, gate.topk_group,
                              lambda g: np.sort(g, -1)[..., -2:].sum(-1))
    experts = top(choosing, k)
    weights = np.take_along_axis(scores, experts, -1)
    if gate.norm_topk_prob and k > 1:
        weights = weights / weights.sum(-1, keepdims=True)
    return Reference(experts, weights * gate.routed_scaling_factor, scores)


REFERENCES |= {
    "gpt_oss": top_k_then_softmax("router", bias=True),
    "deepseek_v2": deepseek_v2_reference,
    "deepseek_v3": sigmoid_noaux_reference,
    "glm4_moe": sigmoid_noaux_reference,
}


# -- running a tiny model and recording each MoE block's input ------------------------------------
def greedy(max_tokens: int = 8) -> Sampling:
    return Sampling(temperature=0.0, max_tokens=max_tokens)


@dataclass
class Recorded:
    ids: list[int]  # every processed token, prompt then generated
    generated: list[int]
    routing: RoutingBatch | None
    inputs: list[np.ndarray]  # per MoE layer: (T, hidden), the block's input per token


_INPUT_CLASSES: dict[type, type] = {}


def _input_recording(base: type) -> type:
    if base not in _INPUT_CLASSES:
        def call(self: Any, x: mx.array, *args: Any, **kw: Any) -> Any:
            self._test_inputs.append(x)
            return base.__call__(self, x, *args, **kw)
        _INPUT_CLASSES[base] = type(f"InputRecording{base.__name__}", (base,), {"__call__": call})
    return _INPUT_CLASSES[base]


@contextmanager
def block_inputs(session: Session) -> Iterator[list[list[mx.array]]]:
    """Per MoE block, the inputs it is called with while the context is open."""
    assert session.adapter is not None
    blocks = [b for _, b in session.adapter.blocks(session.model)]
    seen: list[list[mx.array]] = []
    for block in blocks:
        block._test_original = type(block)
        block.__class__ = _input_recording(type(block))
        block._test_inputs = []
        seen.append(block._test_inputs)
    try:
        yield seen
    finally:
        for block in blocks:
            block.__class__ = block._test_original
            del block._test_original, block._test_inputs


def generate(session: Session, prompt: str, sampling: Sampling | None = None,
             capture: bool = True) -> Recorded:
    request = Generate(1, (("user", prompt),), sampling=sampling or greedy(), capture=capture)
    with block_inputs(session) as seen:
        events = list(session.generate(request, flush_interval=0.0))
    assert isinstance(events[-1], Finished), events[-1]
    tokens = [e for e in events if isinstance(e, Tokens)]
    ids = [i for e in tokens for i in e.ids]
    generated = [i for e in tokens if e.phase == "generate" for i in e.ids]
    parts = [e.routing for e in tokens]
    routing = RoutingBatch.concat(parts) if capture else None  # type: ignore[arg-type]
    if not capture:
        assert all(p is None for p in parts)
    inputs = []
    for calls in seen:
        flat = [np.array(c.astype(mx.float32)).reshape(-1, c.shape[-1]) for c in calls]
        inputs.append(np.concatenate(flat).astype(np.float64))
    return Recorded(ids, generated, routing, inputs)


def references(session: Session, recorded: Recorded, k: int) -> list[Reference]:
    """Each MoE layer's routing recomputed from its block's recorded input."""
    assert session.adapter is not None
    rule = REFERENCES[session.adapter.model_type]
    blocks = [b for _, b in session.adapter.blocks(session.model)]
    return [rule(block, x, k) for block, x in zip(blocks, recorded.inputs, strict=True)]


def assert_routing_matches(routing: RoutingBatch, refs: list[Reference], *,
                           tie: float = 1e-5, atol: float = 1e-4) -> None:
    """Per layer and token: the same scores; the same set of experts (except at a near-tie
    of the scores that choose them); the same weight for each chosen expert."""
    assert routing.probs.shape[1] == len(refs)  # one record per MoE layer
    for layer, ref in enumerate(refs):
        assert routing.experts.shape[0] == ref.experts.shape[0]
        np.testing.assert_allclose(routing.probs[:, layer], ref.probs, atol=atol)
        for t in range(ref.experts.shape[0]):
            got, want = routing.experts[t, layer], ref.experts[t]
            if set(got.tolist()) != set(want.tolist()):
                ranked = np.sort(ref.probs[t])[::-1]
                k = len(want)
                assert k < len(ranked) and ranked[k - 1] - ranked[k] < tie, (layer, t, got, want)
                continue
            order_got, order_want = np.argsort(got), np.argsort(want)
            np.testing.assert_allclose(routing.weights[t, layer][order_got],
                                       ref.weights[t][order_want], atol=atol,
                                       err_msg=f"layer {layer}, token {t}")


def check_routing(session: Session, prompt: str, k: int | None = None,
                  sampling: Sampling | None = None) -> Recorded:
    """Generate, then check the routing of every processed token against the reference."""
    recorded = generate(session, prompt, sampling)
    session.reset_conversation()
    routing = recorded.routing
    assert routing is not None
    used = k or session.top_k
    assert len(routing) == len(recorded.ids)  # one record per processed token
    assert all(len(x) == len(recorded.ids) for x in recorded.inputs)
    assert routing.experts.shape == (len(recorded.ids), len(session.moe_layers), used)
    assert_routing_matches(routing, references(session, recorded, used))
    return recorded
