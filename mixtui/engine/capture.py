"""Collect routing as the model computes it; move it to the host in batches.

Per-token host reads stall a GPU pipeline (mlx-lm queues step n+1 before it hands out token
n), so nothing here reads an array inside the forward pass or per token. The sink only keeps
references to the router logits and expert ids that the forward pass computes anyway: they
are evaluated together with the token they belong to, by the same `async_eval`. `drain()`
then turns the steps that are known to be finished into one packed array, on a stream of its
own so it never queues behind the step in flight, and copies that to the host in one read.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import numpy as np

from mixtui.core.routing import RoutingBatch
from mixtui.families.adapters import MoEAdapter


class RoutingCapture:
    """The sink that recording MoE blocks report to: one record per forward pass (step)."""

    def __init__(self, adapter: MoEAdapter, num_moe_layers: int, block: Any = None):
        self.adapter = adapter
        self.num_moe_layers = num_moe_layers
        # One MoE block of the model: settings its gate weights depend on (all blocks share
        # them, e.g. Qwen3's norm_topk_prob) are read from it when routing is drained.
        self.block = block
        self._logits: list[list[mx.array]] = []  # per step: per MoE layer (1, L, E)
        self._ids: list[list[mx.array]] = []  # per step: per MoE layer (1, L, k)
        # "choice" routers only: per step, per MoE layer (1, L, k), as the router gave them
        self._weights: list[list[mx.array]] = []
        self._stream = mx.new_stream(mx.default_device())
        self.transfers = 0  # device-to-host reads so far (one per drain), for the benchmark

    # -- RoutingSink: called inside the forward pass; only keeps references --------------
    def router_logits(self, ordinal: int, logits: mx.array) -> None:
        if ordinal == 0:
            self._logits.append([])
            self._ids.append([])
            self._weights.append([])
        self._logits[-1].append(_per_step(logits))

    def expert_ids(self, ordinal: int, indices: mx.array) -> None:
        self._ids[-1].append(_per_step(indices))

    def gate_weights(self, ordinal: int, weights: mx.array) -> None:
        self._weights[-1].append(_per_step(weights))

    # -- host side -------------------------------------------------------------------------
    @property
    def pending_steps(self) -> int:
        return len(self._logits)

    def schedule_pending(self) -> None:
        """Start computing the newest step's routing now, without reading it to the host."""
        if self._logits:
            mx.async_eval(self._logits[-1], self._ids[-1], self._weights[-1])

    def discard(self) -> None:
        self._logits.clear()
        self._ids.clear()
        self._weights.clear()

    def drain(self, steps: int | None = None) -> RoutingBatch | None:
        """Move the first `steps` recorded steps (all by default) to the host in one read."""
        count = len(self._logits) if steps is None else min(steps, len(self._logits))
        if count <= 0:
            return None
        logits_steps, self._logits = self._logits[:count], self._logits[count:]
        id_steps, self._ids = self._ids[:count], self._ids[count:]
        weight_steps, self._weights = self._weights[:count], self._weights[count:]
        with mx.stream(self._stream):
            # (tokens, moe_layers, E) and (tokens, moe_layers, k), tokens in processing order
            logits = _tokens_by_layer(logits_steps)
            ids = _tokens_by_layer(id_steps)
            if self.adapter.router_output == "choice":  # as the router handed them over
                weights = _tokens_by_layer(weight_steps)
            else:
                assert self.adapter.gate_weights is not None
                weights = self.adapter.gate_weights(logits, ids, self.block)
            weights = weights.astype(mx.float32)
            probs = self.adapter.router_probs(logits)  # the family's scoring
            packed = mx.concatenate([probs, weights, ids.astype(mx.float32)], axis=-1)
        host = np.array(packed, copy=False)  # the one device-to-host read of this batch
        self.transfers += 1
        num_experts = int(logits.shape[-1])
        k = int(ids.shape[-1])
        return RoutingBatch(
            experts=host[..., num_experts + k:].astype(np.int32),
            weights=np.ascontiguousarray(host[..., num_experts:num_experts + k]),
            probs=np.ascontiguousarray(host[..., :num_experts]),
        )


def _per_step(a: mx.array) -> mx.array:
    """(1, L, X) as most blocks compute it; some (OLMoE) route the flattened tokens, (L, X):
    the same records, given the batch axis (the session runs one sequence)."""
    return a[None] if a.ndim == 2 else a


def _tokens_by_layer(steps: list[list[mx.array]]) -> mx.array:
    """Per step, per layer (1, L, X) arrays -> (tokens, layers, X), in a handful of ops.

    The number of operations stays the same however many steps a batch holds (decode steps
    all have L = 1 and go through one concatenate), so draining costs little per token.
    """
    runs: list[mx.array] = []
    start = 0
    while start < len(steps):
        length = steps[start][0].shape[1]
        stop = start
        while stop < len(steps) and steps[stop][0].shape[1] == length:
            stop += 1
        layers = len(steps[start])
        flat = mx.concatenate([a for step in steps[start:stop] for a in step], axis=0)
        # (steps * layers, L, X) -> (steps, layers, L, X) -> (steps, L, layers, X)
        grouped = flat.reshape(stop - start, layers, length, -1).transpose(0, 2, 1, 3)
        runs.append(grouped.reshape((stop - start) * length, layers, -1))
        start = stop
    return runs[0] if len(runs) == 1 else mx.concatenate(runs)
