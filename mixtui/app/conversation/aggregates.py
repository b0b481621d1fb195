"""Expert counts kept up to date as routing arrives: per answer and phase, and in total.

The routing panel shows each expert's share of the assignments in the current answer and in
the whole conversation; counting them again from all the routing on every refresh would cost
more with every token. Here each batch is counted once, when it arrives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mixtui.app.conversation.routing import NO_EXPERT
from mixtui.app.conversation.tokens import PHASES
from mixtui.core.types import Phase

if TYPE_CHECKING:
    import numpy as np
else:  # numpy loads when routing first needs it (core/lazy.py)
    from mixtui.core.lazy import np


def count_experts(experts: np.ndarray, num_experts: int) -> np.ndarray:
    """(layers, num_experts) int64 counts of the expert ids in `experts` (tokens, layers, k),
    padding (NO_EXPERT) left out."""
    layers = experts.shape[1]
    valid = experts != NO_EXPERT
    flat = (np.arange(layers, dtype=np.int64)[None, :, None] * num_experts + experts)[valid]
    return np.bincount(flat, minlength=layers * num_experts).reshape(layers, num_experts)


class ExpertCounts:
    """How often each expert was among a token's chosen ones, per answer and phase."""

    def __init__(self) -> None:
        self._per_request: list[np.ndarray] = []  # per answer: (phases, layers, E) int64
        self._total: np.ndarray | None = None  # (phases, layers, E): all answers
        self._views: dict[tuple[int | None, Phase | None], np.ndarray] = {}  # until a change

    def add(self, request: int, phase: Phase, experts: np.ndarray, num_experts: int) -> None:
        """Count the expert ids `experts` (tokens, layers, k) of answer `request`."""
        counts = count_experts(experts, num_experts)
        if self._total is None:
            self._total = np.zeros((len(PHASES), *counts.shape), np.int64)
        while len(self._per_request) <= request:
            self._per_request.append(np.zeros_like(self._total))
        p = PHASES.index(phase)
        self._per_request[request][p] += counts
        self._total[p] += counts
        self._views.clear()

    def drop_from(self, request: int) -> None:
        """Forget the counts of answer `request` and all later ones."""
        for dropped in self._per_request[request:]:
            assert self._total is not None
            self._total -= dropped
        del self._per_request[request:]
        self._views.clear()

    def clear(self) -> None:
        self._per_request.clear()
        self._total = None
        self._views.clear()

    def get(self, request: int | None = None, phase: Phase | None = None) -> np.ndarray | None:
        """(layers, E) counts, over all answers or one, over both phases or one; None before
        any routing arrived."""
        if self._total is None:
            return None
        if (request, phase) in self._views:
            return self._views[request, phase]
        if request is None:
            source = self._total
        elif request < len(self._per_request):
            source = self._per_request[request]
        else:
            source = np.zeros_like(self._total)
        counts = source.sum(axis=0) if phase is None else source[PHASES.index(phase)].copy()
        counts.flags.writeable = False
        self._views[request, phase] = counts
        return counts
