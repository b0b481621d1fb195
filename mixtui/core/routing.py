"""Routing of a run of tokens on the host: numpy only, so any process can use it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

NO_EXPERT = -1  # expert id of padding and of tokens without routing


@dataclass(frozen=True)
class RoutingBatch:
    """Routing of consecutive processed tokens, in the order the model processed them."""

    experts: np.ndarray  # (tokens, moe_layers, k) int32: chosen expert ids
    weights: np.ndarray  # (tokens, moe_layers, k) float32: their gate weights (sum to 1)
    probs: np.ndarray  # (tokens, moe_layers, num_experts) float32: router probabilities

    def __len__(self) -> int:
        return int(self.experts.shape[0])

    @classmethod
    def empty(cls, moe_layers: int, k: int, num_experts: int) -> RoutingBatch:
        import numpy as np  # deferred: the UI process needs numpy only once tokens arrive

        return cls(np.zeros((0, moe_layers, k), np.int32), np.zeros((0, moe_layers, k), np.float32),
                   np.zeros((0, moe_layers, num_experts), np.float32))

    def slice(self, start: int, stop: int) -> RoutingBatch:
        return RoutingBatch(self.experts[start:stop], self.weights[start:stop],
                            self.probs[start:stop])

    @staticmethod
    def concat(batches: list[RoutingBatch]) -> RoutingBatch:
        import numpy as np  # deferred: the UI process needs numpy only once tokens arrive

        return RoutingBatch(np.concatenate([b.experts for b in batches]),
                            np.concatenate([b.weights for b in batches]),
                            np.concatenate([b.probs for b in batches]))
