"""Float32 activations on MLX's CPU backend, for checkpoints stored in 16-bit floats.

MLX's CPU kernels multiply a bfloat16 input by quantized weights about ten times slower than
a float32 input by the same weights (measured here: a 4-bit 14336 x 4096 product takes 717 ms
with bfloat16 scales and a bfloat16 input, 71 ms with the same scales and a float32 input).
On the CPU the engine therefore turns the embedding's output into float32: every activation
after it (and the KV cache) is float32, while the weights stay exactly as the checkpoint
stores them. On a GPU nothing changes: the model runs as mlx-lm runs it.
"""

from __future__ import annotations

import functools
from typing import Any

import mlx.core as mx
import mlx.nn as nn


@functools.cache
def _float32_output(cls: type) -> type:
    """A subclass of an embedding class whose lookups come out in float32 (its parameters,
    their names and `as_linear`, for a head that shares them, are the class's own)."""
    def __call__(self: Any, x: mx.array) -> mx.array:
        return cls.__call__(self, x).astype(mx.float32)

    return type(f"Float32{cls.__name__}", (cls,), {"__call__": __call__,
                                                    "__module__": __name__})


def float32_activations(model: nn.Module) -> bool:
    """On the CPU backend, make a 16-bit model's activations float32 (see above); whether it
    did. Models whose embedding is not at `model.embed_tokens` are left as they are."""
    if mx.default_device().type != mx.cpu:
        return False
    embedding = getattr(getattr(model, "model", None), "embed_tokens", None)
    if not isinstance(embedding, nn.Module):
        return False
    source = getattr(embedding, "scales", None)
    if source is None:
        source = getattr(embedding, "weight", None)
    if source is None or source.dtype not in (mx.bfloat16, mx.float16):
        return False
    embedding.__class__ = _float32_output(type(embedding))
    return True
