"""Randomly initialised models with real geometries, for tests and benchmarks.

Real weights cannot be fetched everywhere; the code paths that matter (mlx-lm's loader,
its MoE blocks, quantized expert kernels) are the same with random weights. Each family
(mixtui.families) gives the config of a tiny model of its own.

The tokenizer is a word-level one with `vocab` tokens "w0", "w1", ... so that any
vocabulary size works.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from mixtui.families import dense, family_for, mixtral

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
    "{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
    "{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
)


def mixtral_config(*, layers: int = 2, hidden: int = 64, intermediate: int = 128,
                   heads: int = 4, kv_heads: int = 2, vocab: int = 256, experts: int = 8,
                   top_k: int = 2, model_type: str = "mixtral") -> dict[str, Any]:
    """A tiny Mixtral, or with model_type "mistral" the dense Mistral of the same shape."""
    shape = {"layers": layers, "hidden": hidden, "intermediate": intermediate, "heads": heads,
             "kv_heads": kv_heads, "head_dim": hidden // heads, "vocab": vocab}
    if model_type == "mixtral":
        return mixtral.FAMILY.synthetic_config(**shape, experts=experts, experts_per_token=top_k)
    return dense.FAMILY.synthetic_config(**shape, model_type=model_type)


def synthetic_config(model_type: str, **fields: Any) -> dict[str, Any]:
    """A tiny config of `model_type`'s family; `fields` replace its Geometry's defaults."""
    family = family_for(model_type)
    if family is None:
        raise ValueError(f"mixtui has no family for model_type {model_type!r}")
    return family.synthetic_config(**({"model_type": model_type} | fields))


def write_tokenizer(path: Path, vocab: int, chat: bool) -> None:
    # deferred: only building a model needs it
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    words = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"w{i}": i for i in range(3, vocab)}
    tok = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok.save(str(path / "tokenizer.json"))
    tok_config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "model_max_length": 32768, "add_bos_token": True,
    }
    if chat:
        tok_config["chat_template"] = CHAT_TEMPLATE
    (path / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=1))
    (path / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}))


def _no_zero_parameters(weights: dict[str, mx.array]) -> dict[str, mx.array]:
    """Small random values for the parameters mlx-lm creates as zeros (DeepSeek's and GLM's
    router weights and selection bias, gpt-oss's attention sinks and expert biases): a
    router of zeros scores every expert the same, and its routing would be all ties. The
    other parameters keep the values (and the draws) they had."""
    for name, value in weights.items():
        if (mx.issubdtype(value.dtype, mx.floating) and value.size
                and not mx.any(value).item()):
            scale = value.shape[-1] ** -0.5 if value.ndim > 1 else 0.1
            weights[name] = mx.random.uniform(-scale, scale, value.shape, value.dtype)
    return weights


def make_model_dir(path: Path, config: dict[str, Any], *, seed: int = 0, chat: bool = True,
                   bits: int | None = None, group_size: int = 64) -> Path:
    """Write config.json, random safetensors weights and a tokenizer that mlx_lm.load reads."""
    # deferred: mlx-lm (with transformers) takes about 2 s to import
    from mlx_lm.utils import MODEL_REMAPPING

    model_type = MODEL_REMAPPING.get(config["model_type"], config["model_type"])
    arch = importlib.import_module(f"mlx_lm.models.{model_type}")
    path.mkdir(parents=True, exist_ok=True)
    mx.random.seed(seed)
    model = arch.Model(arch.ModelArgs.from_dict(config))
    config = dict(config)
    if bits is not None:
        nn.quantize(model, group_size=group_size, bits=bits)
        config["quantization"] = {"group_size": group_size, "bits": bits}
    weights = _no_zero_parameters(dict(tree_flatten(model.parameters())))
    mx.save_safetensors(str(path / "model.safetensors"), weights, metadata={"format": "mlx"})
    (path / "config.json").write_text(json.dumps(config, indent=1))
    write_tokenizer(path, int(config["vocab_size"]), chat)
    return path
