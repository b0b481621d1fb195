"""The routing store: the routing rows of every token of a conversation, in order.

Routing arrives in small batches (about 20 a second while generating); they are queued and
copied into growing arrays only when someone reads them, so reading all of the routing costs
the new rows only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mixtui.core.routing import NO_EXPERT, RoutingBatch

if TYPE_CHECKING:
    import numpy as np
else:  # numpy loads when routing first needs it (core/lazy.py)
    from mixtui.core.lazy import np



class RoutingStore:
    """Routing rows of every token in order; rows of tokens without routing are padding.

    Batches are queued as they arrive and written into arrays with spare capacity when the
    routing is read. The k axis is as wide as the widest batch (experts per token can change
    between requests); narrower rows are padded with expert NO_EXPERT and weight 0, and the
    rows of tokens that came without routing are all padding (probs 0). Rows once handed out
    never change: dropping tokens copies the kept rows into new arrays.
    """

    def __init__(self) -> None:
        self.layers: int | None = None  # geometry, from the first batch with routing
        self.num_experts: int | None = None
        self.k = 0
        self.total = 0  # tokens logged, queued ones included
        self.routed = 0  # tokens logged with routing
        self._queue: list[tuple[int, RoutingBatch]] = []  # (first row, batch)
        self._rows = 0  # rows written into the arrays
        # (capacity, layers, k) and (capacity, layers, E); allocated with the first routing
        self._experts: np.ndarray | None = None
        self._weights: np.ndarray | None = None
        self._probs: np.ndarray | None = None
        self._view: RoutingBatch | None = None

    def append(self, count: int, batch: RoutingBatch | None) -> None:
        if batch is not None:
            e, w, p = batch.experts, batch.weights, batch.probs
            if e.ndim != 3 or w.shape != e.shape or p.ndim != 3 or p.shape[:2] != e.shape[:2]:
                raise ValueError(f"malformed routing batch: experts {e.shape}, weights "
                                 f"{w.shape}, probs {p.shape}")
            if len(e) != count:
                raise ValueError(f"routing for {len(e)} tokens arrived with {count} tokens")
            layers, num_experts = e.shape[1], p.shape[2]
            if self.layers is not None and (layers, num_experts) != (self.layers,
                                                                     self.num_experts):
                raise ValueError(f"routing of {layers} layers x {num_experts} experts does not "
                                 f"match the conversation's {self.layers} x {self.num_experts}")
            self.layers, self.num_experts = layers, num_experts
            if count:
                self._queue.append((self.total, batch))
                self.routed += count
        self.total += count

    def _allocate(self, capacity: int, k: int) -> None:
        assert self.layers is not None and self.num_experts is not None
        experts = np.full((capacity, self.layers, k), NO_EXPERT, np.int32)
        weights = np.zeros((capacity, self.layers, k), np.float32)
        probs = np.zeros((capacity, self.layers, self.num_experts), np.float32)
        n = self._rows
        if n:
            assert self._experts is not None and self._weights is not None
            assert self._probs is not None
            old_k = self._experts.shape[2]
            experts[:n, :, :old_k] = self._experts[:n]
            weights[:n, :, :old_k] = self._weights[:n]
            probs[:n] = self._probs[:n]
        self._experts, self._weights, self._probs, self.k = experts, weights, probs, k

    def _flush(self) -> None:
        if self.routed == 0 or self._rows == self.total:
            return
        k = max([self.k] + [b.experts.shape[2] for _, b in self._queue])
        capacity = 0 if self._experts is None else len(self._experts)
        if self.total > capacity or k != self.k:
            self._allocate(max(self.total, 2 * capacity, 64) if self.total > capacity
                           else capacity, k)
        assert self._experts is not None and self._weights is not None
        assert self._probs is not None
        for row, b in self._queue:  # rows past _rows are still padding: fill the routed ones
            n, bk = len(b), b.experts.shape[2]
            self._experts[row:row + n, :, :bk] = b.experts
            self._weights[row:row + n, :, :bk] = b.weights
            self._probs[row:row + n] = b.probs
        self._queue.clear()
        self._rows = self.total
        self._view = None

    def batch(self) -> RoutingBatch | None:
        """All rows (read-only views), or None when no token has routing."""
        if self.routed == 0:
            return None
        self._flush()
        if self._view is None:
            assert self._experts is not None and self._weights is not None
            assert self._probs is not None
            views = [a[:self._rows] for a in (self._experts, self._weights, self._probs)]
            for v in views:
                v.flags.writeable = False
            self._view = RoutingBatch(*views)
        return self._view

    def truncate(self, n: int) -> None:
        """Keep the first n rows."""
        if n >= self.total:
            return
        self._flush()
        if self.routed:
            assert self._experts is not None  # flushed: allocated
            kept = self._experts[:n]
            self.routed = int((kept[:, 0, 0] != NO_EXPERT).sum()) if kept.size else 0
            self._rows = n
            self._allocate(len(self._experts), self.k)  # fresh arrays: handed-out views stay
        self.total = self._rows = n
        self._view = None

    @classmethod
    def from_arrays(cls, experts: np.ndarray, weights: np.ndarray,
                    probs: np.ndarray) -> RoutingStore:
        log = cls()
        log.layers, log.num_experts, log.k = experts.shape[1], probs.shape[2], experts.shape[2]
        log._experts, log._weights, log._probs = experts, weights, probs
        log.total = log._rows = len(experts)
        log.routed = int((experts[:, 0, 0] != NO_EXPERT).sum()) if experts.size else 0
        return log
