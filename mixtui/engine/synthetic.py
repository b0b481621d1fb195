"""Randomly initialised models with real geometries, for tests and benchmarks.

Real Mistral/Mixtral weights cannot be fetched everywhere; the code paths that matter
(mlx-lm's loader, its Mixtral blocks, quantized expert kernels) are the same with random
weights. The tokenizer is a word-level one with `vocab` tokens "w0", "w1", ... so that any
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

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
    "{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
    "{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
)


def mixtral_config(*, layers: int = 2, hidden: int = 64, intermediate: int = 128,
                   heads: int = 4, kv_heads: int = 2, vocab: int = 256, experts: int = 8,
                   top_k: int = 2, model_type: str = "mixtral") -> dict[str, Any]:
    config: dict[str, Any] = {
        "model_type": model_type,
        "architectures": ["MixtralForCausalLM" if model_type == "mixtral"
                          else "MistralForCausalLM"],
        "hidden_size": hidden, "intermediate_size": intermediate,
        "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "head_dim": hidden // heads, "vocab_size": vocab,
        "rms_norm_eps": 1e-5, "rope_theta": 1e6, "max_position_embeddings": 32768,
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
        "torch_dtype": "float32",
    }
    if model_type == "mixtral":
        config |= {"num_local_experts": experts, "num_experts_per_tok": top_k}
    return config


def write_tokenizer(path: Path, vocab: int, chat: bool) -> None:
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


def make_model_dir(path: Path, config: dict[str, Any], *, seed: int = 0, chat: bool = True,
                   bits: int | None = None, group_size: int = 64) -> Path:
    """Write config.json, random safetensors weights and a tokenizer that mlx_lm.load reads."""
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
    weights = dict(tree_flatten(model.parameters()))
    mx.save_safetensors(str(path / "model.safetensors"), weights, metadata={"format": "mlx"})
    (path / "config.json").write_text(json.dumps(config, indent=1))
    write_tokenizer(path, int(config["vocab_size"]), chat)
    return path
