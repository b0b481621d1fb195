"""Timing and scoring a loaded model, inside the engine process: `mixtui bench`'s measurements.

A run is what a person waiting for an answer sees: the prompt processed from an empty KV
cache (the time to the first token), then `gen_tokens` greedy tokens, decoded as mlx-lm
decodes (`generate_step`: each step queued before the last one's token is read). The
blocks run as mlx-lm wrote them (routing capture detached), and generation never stops at an
end-of-sequence token, so every run of every model decodes the same number of tokens.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import cast

import mlx.core as mx
import mlx.nn as nn

from mixtui.engine.messages import RunFigures

Progress = Callable[[int, int], None]  # (tokens done, tokens in all)

def fit_tokens(ids: Sequence[int], n: int | None) -> list[int]:
    """`ids` cut to `n` tokens, or repeated until it has `n` (None: as it is)."""
    ids = list(ids)
    if n is None or not ids:
        return ids
    while len(ids) < n:
        ids += ids[: n - len(ids)]
    return ids[:n]


def random_prompt(vocab: int, n: int, seed: int = 0) -> list[int]:
    """Token ids for a model without a real tokenizer (a synthetic one): uniform, seeded,
    the three special ids left out."""
    key = mx.random.key(seed)
    return cast(list[int], mx.random.randint(3, max(vocab, 4), (n,), key=key).tolist())


def _greedy(logits: mx.array) -> mx.array:
    return mx.argmax(logits, axis=-1)


def timed_run(model: nn.Module, prompt: list[int], gen_tokens: int,
              should_stop: Callable[[], bool] = lambda: False,
              progress: Progress | None = None) -> RunFigures | None:
    """One run from an empty cache; None if stopped before it finished."""
    # deferred: mlx-lm (with transformers) takes about 2 s to import
    from mlx_lm.generate import generate_step
    from mlx_lm.models.cache import make_prompt_cache

    cache = make_prompt_cache(model)
    mx.synchronize()
    mx.clear_cache()  # every run starts from the same allocator state
    mx.reset_peak_memory()
    start = time.perf_counter()
    first = last = start
    n = 0
    steps = generate_step(mx.array(prompt), model, max_tokens=gen_tokens, sampler=_greedy,
                          prompt_cache=cache)
    try:
        for _token, _ in steps:
            n += 1
            last = time.perf_counter()
            if n == 1:
                first = last
            if progress is not None:
                progress(n, gen_tokens)
            if should_stop():
                return None
    finally:
        steps.close()
    mx.synchronize()
    ttft = first - start
    return RunFigures(
        ttft_s=ttft, prompt_tps=len(prompt) / ttft if ttft > 0 else 0.0,
        # n tokens are n - 1 decode steps after the first (which the prompt's pass gave)
        decode_tps=(n - 1) / (last - first) if n > 1 and last > first else 0.0,
        peak_memory_bytes=int(mx.get_peak_memory()), prompt_tokens=len(prompt), generated=n)


def perplexity(model: nn.Module, ids: Sequence[int], chunk: int, bos: int | None,
               should_stop: Callable[[], bool] = lambda: False,
               progress: Progress | None = None) -> tuple[float, int] | None:
    """exp(mean negative log-likelihood) of `ids` scored in windows of `chunk` tokens, each
    window starting afresh (with `bos` before it when the model has one); the tokens scored.
    None if stopped."""
    step = chunk - 1 if bos is not None else chunk
    total_nll = 0.0
    scored = 0
    windows = [list(ids[i:i + step]) for i in range(0, len(ids), step)]
    for window in windows:
        tokens = ([bos] if bos is not None else []) + window
        if len(tokens) < 2:
            continue
        inputs = mx.array(tokens[:-1])[None]
        targets = mx.array(tokens[1:])[None]
        logits = model(inputs).astype(mx.float32)
        nll = nn.losses.cross_entropy(logits, targets, reduction="sum")
        total_nll += float(nll.item())  # type: ignore[arg-type]
        scored += len(tokens) - 1
        if progress is not None:
            progress(scored, len(ids))
        if should_stop():
            return None
    if scored == 0:
        return None
    return math.exp(total_nll / scored), scored


def probe_bandwidth(mib: int = 512, copies: int = 7) -> float:
    """GB/s of the device MLX uses: a `mib` MiB float32 array copied (read and written) into
    a new one, the median of `copies` after one to warm up. Large enough that no cache holds it
    (an M-series system cache is at most 96 MB; a GPU's L2 tens of MB)."""
    x = mx.random.uniform(shape=(mib * 2**20 // 4,))
    mx.eval(x)
    seconds = []
    for i in range(copies + 1):
        mx.synchronize()
        start = time.perf_counter()
        y = x + 1.0  # one read and one write of every element
        mx.eval(y)
        mx.synchronize()
        if i:
            seconds.append(time.perf_counter() - start)
        del y
    return 2 * x.nbytes / statistics.median(seconds) / 1e9
