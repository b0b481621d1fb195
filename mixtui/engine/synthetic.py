"""Randomly initialised models with real geometries, for tests and benchmarks.

Real weights cannot be fetched everywhere; the code paths that matter (mlx-lm's loader,
its MoE blocks, quantized expert kernels) are the same with random weights. Each family
(mixtui.families) gives the config of a tiny model of its own. `build_full_size` builds a
model of any size in the layout of its MLX checkpoint (same tensors, dtypes and
quantization), for timing a model before (or without) downloading it.

The tokenizer is a word-level one with `vocab` tokens "w0", "w1", ... so that any
vocabulary size works.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from mixtui.families import dense, family_for, mixtral
from mixtui.families.inventory import Quantization

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


# -- full-size models in the real checkpoint's layout -------------------------------------------
# The dtypes mlx_lm.convert casts a model's floats to (its MODEL_CONVERSION_DTYPES)
_CONVERSION_DTYPES = ("float16", "bfloat16", "float32")
# Fields that mlx-lm's ModelArgs require but that change no tensor and no timing: a registry
# entry given as a [geometry] table has none of them (the published values of Mistral and
# Mixtral, used only where a config lacks them)
_NUMERIC_DEFAULTS: dict[str, Any] = {"rms_norm_eps": 1e-5, "rope_theta": 1e6,
                                     "max_position_embeddings": 32768}
# E2M1 (the 4-bit float of MXFP4): the mean square of its 16 codes drawn uniformly, so that
# a scale of 2**e gives a dequantized weight of standard deviation 2**e * sqrt(this)
_E2M1_MEAN_SQUARE = sum(v * v for v in (0, 0.5, 1, 1.5, 2, 3, 4, 6)) / 8


def _mix(x: mx.array) -> mx.array:
    """A 32-bit integer hash (lowbias32): random bits from a counter, elementwise. MLX's own
    randint draws a float32 per value (24 random bits, and about 0.1 GB/s here); hashing a
    counter gives all 32 bits at memory speed once compiled."""
    x = x ^ (x >> 16)
    x = x * 0x7FEB352D
    x = x ^ (x >> 15)
    x = x * 0x846CA68B
    return x ^ (x >> 16)


_mix_compiled = mx.compile(_mix)


def _random_bits(shape: tuple[int, ...], stream: int) -> mx.array:
    """uint32 random bits of `shape`; `stream` (any int) tells the tensors apart."""
    counter = mx.arange(math.prod(shape), dtype=mx.uint32).reshape(shape)
    return _mix_compiled(counter + mx.array(stream & 0xFFFFFFFF, dtype=mx.uint32))


def _random_uniform(shape: tuple[int, ...], stream: int, limit: float, dtype: mx.Dtype
                    ) -> mx.array:
    """Uniform in [-limit, limit): the top 23 random bits as a float32 mantissa in [1, 2)."""
    ones = mx.array(0x3F800000, dtype=mx.uint32)
    unit = ((_random_bits(shape, stream) >> 9) | ones).view(mx.float32) - 1.5  # [-0.5, 0.5)
    return (unit * (2 * limit)).astype(dtype)


def _stream(seed: int, index: int) -> int:
    """A 32-bit stream number per (seed, tensor): splitmix64's finaliser of the pair."""
    z = (seed * 0x9E3779B97F4A7C15 + index + 1) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & 0xFFFFFFFF


def _quantized_values(module: nn.Module, name: str, value: mx.array, stream: int
                      ) -> mx.array:
    """A quantized module's `weight`, `scales` or `biases` (its own `bias` is a float like
    any other): codes uniformly random, scales (and affine biases) such that the dequantized
    weight has mean 0 and standard deviation in_dims**-0.5, the usual initialisation's."""
    mode = str(getattr(module, "mode", "affine"))
    bits, group_size = int(module.bits), int(module.group_size)
    in_dims = module["scales"].shape[-1] * group_size
    target_std = in_dims ** -0.5
    if name == "weight":
        return _random_bits(value.shape, stream).view(value.dtype)
    if mode == "mxfp4":
        if name != "scales":
            raise ValueError(f"an MXFP4 module has no parameter {name!r}")
        # E8M0 scales: 2**(s - 127); the nearest power of two to the target (never 255, NaN)
        exponent = round(math.log2(target_std / math.sqrt(_E2M1_MEAN_SQUARE)))
        return mx.full(value.shape, min(max(127 + exponent, 1), 254), dtype=value.dtype)
    if mode != "affine":
        raise ValueError(f"synthetic weights support affine and mxfp4, not {mode!r}")
    levels = 2 ** bits
    # codes uniform on 0 .. levels-1: mean (levels-1)/2, variance (levels**2 - 1)/12
    scale = target_std / math.sqrt((levels * levels - 1) / 12)
    if name == "scales":
        return mx.full(value.shape, scale, dtype=value.dtype)
    if name == "biases":
        return mx.full(value.shape, -scale * (levels - 1) / 2, dtype=value.dtype)  # mean 0
    raise ValueError(f"a quantized module has no parameter {name!r}")


def _random_parameters(model: nn.Module, seed: int) -> dict[str, mx.array]:
    """A new value for every parameter of `model`, of its shape and dtype, lazily."""
    names = {name for name, _ in _flat(model)}
    new: dict[str, mx.array] = {}
    index = 0
    for path, module in model.named_modules():
        # its own parameters: not its private arrays (a RoPE's `_freqs`) nor its children's
        own = {k: v for k, v in module.items() if isinstance(v, mx.array)
               and (f"{path}.{k}" if path else k) in names}
        quantized = "scales" in own
        is_norm = "Norm" in type(module).__name__
        for name, value in own.items():
            stream = _stream(seed, index)
            index += 1
            if quantized and name in ("weight", "scales", "biases"):
                fresh = _quantized_values(module, name, value, stream)
            elif is_norm and name == "weight":
                fresh = mx.ones(value.shape, dtype=value.dtype)
            elif mx.issubdtype(value.dtype, mx.floating):
                limit = value.shape[-1] ** -0.5 if value.ndim > 1 else 0.02
                fresh = _random_uniform(value.shape, stream, limit, value.dtype)
            else:
                fresh = _random_bits(value.shape, stream).astype(value.dtype)
            new[f"{path}.{name}" if path else name] = fresh
    if set(new) != names:  # else an initialisation would be evaluated
        raise RuntimeError("a parameter outside any module's own arrays: mixtui cannot "
                           "give it random values")
    return new


def _quant_params(q: Quantization) -> dict[str, Any]:
    """A Quantization as mlx-lm's predicates and config.json write it."""
    return {"group_size": q.group_size, "bits": q.bits, "mode": q.mode}


def _quantize(model: nn.Module, config: dict[str, Any], quantization: Quantization
              ) -> dict[str, Any]:
    """Quantize as mlx_lm.convert does (its own quantize_model), the routed experts at
    `quantization.experts` where there is one; returns the config with its "quantization"."""
    # deferred: mlx-lm (with transformers) takes about 2 s to import
    from mlx_lm.models.switch_layers import SwitchLinear
    from mlx_lm.utils import quantize_model

    own = getattr(model, "quant_predicate", None)  # e.g. routers at 8 bits
    experts = quantization.experts

    def predicate(path: str, module: nn.Module) -> bool | dict[str, Any]:
        if experts is not None and isinstance(module, SwitchLinear):
            return _quant_params(experts)
        return own(path, module) if own is not None else True

    # quantize_model prints its bits per weight on stdout, which may be a JSON report's
    with contextlib.redirect_stdout(io.StringIO()):
        _, quantized = quantize_model(model, config, quantization.group_size,
                                      quantization.bits, mode=quantization.mode,
                                      quant_predicate=predicate)
    result: dict[str, Any] = quantized
    return result


def _materialize(model: nn.Module, progress: Callable[[int, int], None] | None) -> None:
    """Evaluate the embeddings, each layer, then the rest, so that the peak is the weights."""
    layers = list(getattr(model, "layers", []))
    total = len(layers) + 2
    in_layers = {id(v) for layer in layers for _, v in _flat(layer)}
    everything = _flat(model)
    steps: list[list[mx.array]] = [
        [v for k, v in everything if id(v) not in in_layers and "embed" in k],
        *([v for _, v in _flat(layer)] for layer in layers),
        [v for _, v in everything if id(v) not in in_layers],
    ]
    for done, arrays in enumerate(steps, 1):
        mx.eval(arrays)
        if progress is not None:
            progress(done, total)


def build_full_size(config: dict[str, Any], quantization: Quantization | None, *,
                    seed: int = 0, materialize: bool = True,
                    progress: Callable[[int, int], None] | None = None
                    ) -> tuple[nn.Module, dict[str, Any]]:
    """A model of `config`'s geometry with random weights in the layout of its MLX
    checkpoint: mlx-lm's own class for its model_type, the floats cast to the config's dtype
    (as mlx_lm.convert casts them), quantized by mlx-lm's own quantize_model, then every
    parameter replaced by random values of the same shape and dtype (seeded by `seed`).

    Nothing is downloaded, and the float initialisation is never evaluated. With
    `materialize` the weights are evaluated layer by layer (`progress(done, total)` after
    each step); without, they stay lazy: `nbytes` of every parameter is known, nothing is
    allocated. For the first N layers only, pass `config_with_layers(config, N)`.

    Returns the model and the config as the conversion's config.json has it (with its
    "quantization" entry, per-module entries included)."""
    # deferred: mlx-lm (with transformers) takes about 2 s to import
    from mlx.utils import tree_map_with_path
    from mlx_lm.utils import MODEL_REMAPPING

    config = _NUMERIC_DEFAULTS | {k: v for k, v in config.items()
                                  if k not in ("quantization", "quantization_config")}
    model_type = MODEL_REMAPPING.get(config["model_type"], config["model_type"])
    arch = importlib.import_module(f"mlx_lm.models.{model_type}")
    model: nn.Module = arch.Model(arch.ModelArgs.from_dict(config))

    # As mlx_lm.convert: floats to the config's dtype, but for what cast_predicate keeps
    # (DeepSeek-V3's and GLM's selection bias stays in float32)
    dtype_name = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")
    if dtype_name not in _CONVERSION_DTYPES:
        raise ValueError(f"cannot build a model in {dtype_name!r}: use one of "
                         f"{', '.join(_CONVERSION_DTYPES)}")
    dtype = getattr(mx, dtype_name)
    keep = getattr(model, "cast_predicate", lambda _: True)

    def cast(name: str, value: mx.array) -> mx.array:
        if keep(name) and mx.issubdtype(value.dtype, mx.floating):
            return value.astype(dtype)
        return value

    model.update(tree_map_with_path(cast, model.parameters()))
    if quantization is not None:
        config = _quantize(model, config, quantization)
    # Every parameter anew: the lazy initialisation, cast and quantization above are
    # dropped unevaluated (they only gave the layout)
    model.update(tree_unflatten(list(_random_parameters(model, seed).items())))
    if materialize:
        _materialize(model, progress)
    return model, config


def layout(model: nn.Module) -> dict[str, tuple[tuple[int, ...], str]]:
    """Parameter name -> (shape, dtype name), as the checkpoint's safetensors list them."""
    return {name: (tuple(value.shape), _dtype_name(value.dtype))
            for name, value in _flat(model)}


def layout_bytes(model: nn.Module) -> int:
    """Bytes of all parameters (known for lazy arrays too: nothing is evaluated)."""
    return sum(value.nbytes for _, value in _flat(model))


def _flat(module: nn.Module) -> list[tuple[str, mx.array]]:
    """(name, array) of every parameter (tree_flatten, typed)."""
    return list(dict(tree_flatten(module.parameters())).items())


def _dtype_name(dtype: mx.Dtype) -> str:
    return str(dtype).rsplit(".", 1)[-1]  # "mlx.core.bfloat16" -> "bfloat16"
