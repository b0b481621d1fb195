"""A model cut to its first layers: the config of the same architecture, shallower. Pure
Python, so that the application layer can size and label a cut model without MLX.

`mixtui bench --synthetic --layers N` runs the first N layers of a full-size model (the
embeddings and the head in full) and scales its time to the full depth; the cut model must
be the first N layers of the real one, layer kinds and all.
"""

from __future__ import annotations

from typing import Any

__all__ = ["config_with_layers"]

# Lists that are not one entry per layer, however long: layer *indices* (they keep their
# meaning in a cut model as they are) and token ids (a tiny model's two eos ids and its two
# layers must not be confused).
_NOT_PER_LAYER = frozenset({"mlp_only_layers", "architectures", "eos_token_id",
                            "bos_token_id", "pad_token_id"})


def config_with_layers(config: dict[str, Any], layers: int) -> dict[str, Any]:
    """`config` cut to its first `layers` layers: `num_hidden_layers` set, and every list with
    one entry per layer (gpt-oss's `layer_types`, say) cut to its first `layers` entries.

    Fields that count layers from the start (DeepSeek's and GLM's `first_k_dense_replace`,
    Qwen2-MoE's `mlp_only_layers`, Qwen3-Next's `full_attention_interval`) keep their meaning
    and are left as they are. Raises ValueError if `layers` is not 1 to the model's depth."""
    total = int(config["num_hidden_layers"])
    if not 1 <= layers <= total:
        raise ValueError(f"the model has {total} layers: choose 1 to {total}, not {layers}")
    cut = dict(config)
    cut["num_hidden_layers"] = layers
    for key, value in config.items():
        if isinstance(value, list) and len(value) == total and key not in _NOT_PER_LAYER:
            cut[key] = value[:layers]
    return cut
