"""Plain values every layer shares: sampling settings, the context default, model facts and
the statistics of an answer. No behaviour, no imports beyond the standard library."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Phase = Literal["prompt", "generate"]

DEFAULT_CONTEXT = 4096  # KV-cache size (max_kv_size) unless the user picks another


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    max_tokens: int = 256


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: str
    model_type: str
    num_layers: int
    moe_layers: tuple[int, ...]  # layer indices with an MoE block; empty for a dense model
    num_experts: int
    top_k: int  # experts per token in use now
    default_top_k: int
    total_params: int
    active_params: int
    weight_bytes: int  # as loaded
    kv_bytes_per_token: int
    max_kv_size: int | None
    chat_template: bool
    vocab_size: int
    device: str = ""  # where MLX runs, e.g. "gpu" or "cpu, OpenBLAS"
    family: str = ""  # mixtui's family of the model ("" where it has none)
    scoring: str = "softmax"  # what routing `probs` are: "softmax" or "sigmoid" scores
    shared_experts: int = 0  # always-on shared experts in every MoE layer (0: none)
    # one sentence on how the family constrains experts per token ("" where it does not)
    top_k_note: str = ""
    max_top_k: int = 0  # the most experts per token its routing can choose (0: num_experts)

    @property
    def is_moe(self) -> bool:
        return bool(self.moe_layers)


@dataclass(frozen=True)
class Stats:
    prompt_tokens: int  # tokens run through the model for the prompt
    cached_tokens: int  # prompt tokens reused from the previous turn's KV cache
    generation_tokens: int
    ttft_s: float
    prompt_tps: float
    generation_tps: float
    peak_memory_bytes: int
    kv_cache_bytes: int
    finish_reason: str  # "stop", "length", "context" (the context is full) or "cancelled"
    # the chat template has no system role: the system prompt went into the first user turn
    system_merged: bool = False
