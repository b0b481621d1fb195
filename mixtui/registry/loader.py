"""Read models.toml (the built-in one, then the user's) into ModelSpec entries."""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from mixtui.core.errors import RegistryError
from mixtui.core.paths import builtin_registry_path, config_dir
from mixtui.families import family_for
from mixtui.families.geometry import Geometry
from mixtui.registry.spec import Card, ModelSpec, Quantization

_GEOMETRY_FIELDS = {f.name: f for f in fields(Geometry)}
# Geometry's fields that are not ints: named here, not read from annotation strings.
_BOOL_FIELDS = {"tie_embeddings", "qk_norm"}
_LAYER_LIST_FIELDS = {"dense_layers"}
_ENTRY_KEYS = {"name", "repo", "revision", "path", "kind", "quantization", "description",
               "geometry", "config", "config_nulls", "card"}


def user_registry_path() -> Path:
    return config_dir() / "models.toml"


def _line_of(text: str, key: str) -> int:
    """Line number of an entry's table header, for error messages."""
    pattern = re.compile(rf"^[ \t]*\[[ \t]*models\.\"?{re.escape(key)}\"?[\].]", re.MULTILINE)
    match = pattern.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else 1


def _parse_entry(key: str, raw: Any, where: str) -> ModelSpec:
    def bad(what: str) -> RegistryError:
        return RegistryError(f"{where}: model '{key}' {what}; fix the entry or remove it.")

    if not isinstance(raw, dict):
        raise bad("is not a table")
    unknown = set(raw) - _ENTRY_KEYS
    if unknown:
        raise bad(f"has unknown field(s) {', '.join(sorted(unknown))}")
    if "repo" not in raw and "path" not in raw:
        raise bad("needs a 'repo' (Hub repo id) or a 'path' (local directory)")
    kind = raw.get("kind", "chat")
    if kind not in ("chat", "base"):
        raise bad(f"has kind '{kind}', which must be 'chat' or 'base'")
    config = raw.get("config")
    nulls = raw.get("config_nulls", [])
    if not (isinstance(nulls, list) and all(isinstance(n, str) for n in nulls)) or (
            nulls and not isinstance(config, dict)):
        raise bad("has 'config_nulls', which must be a list of [config] field names")
    if nulls and isinstance(config, dict):
        # TOML has no null: the config.json fields that are null (DeepSeek-V2-Lite's
        # q_lora_rank, where mlx-lm's default is a number) are named here
        config = dict(config) | dict.fromkeys(nulls)
    if config is not None:
        geometry = _geometry_of_config(config, bad)
    else:
        geometry = _parse_geometry(raw.get("geometry"), bad)
        family = family_for(geometry.model_type)
        if family is not None:
            try:
                family.hf_config(geometry)
            except ValueError:  # the family reads its own config.json fields only
                raise bad(f"is a {geometry.model_type} model, which mixtui describes by its "
                          "config.json: give its fields in a [config] table instead of "
                          "[geometry]") from None
    quantization = _parse_quantization(raw.get("quantization"), bad)
    card = _parse_card(raw.get("card"), bad)
    for text_field in ("name", "repo", "revision", "path", "description"):
        if text_field in raw and not isinstance(raw[text_field], str):
            raise bad(f"field '{text_field}' must be a string")
    return ModelSpec(
        key=key, name=raw.get("name", key), geometry=geometry, kind=kind,
        repo=raw.get("repo"), revision=raw.get("revision"), path=raw.get("path"),
        quantization=quantization, description=raw.get("description", ""),
        source="built-in" if where.startswith("built-in") else where,
        config=dict(config) if config is not None else None, card=card,
    )


def _parse_geometry(geo_raw: Any, bad: Callable[[str], RegistryError]) -> Geometry:
    """A [geometry] table: mixtui's own description of a model's shape."""
    if not isinstance(geo_raw, dict):
        raise bad("needs a [geometry] table (model_type, layers, hidden, ...)")
    missing = [n for n, f in _GEOMETRY_FIELDS.items() if n not in geo_raw and f.default is MISSING]
    if missing:
        raise bad(f"geometry lacks {', '.join(missing)}")
    unknown_geo = set(geo_raw) - set(_GEOMETRY_FIELDS)
    if unknown_geo:
        raise bad(f"geometry has unknown field(s) {', '.join(sorted(unknown_geo))}")
    for name, value in geo_raw.items():
        if name in _LAYER_LIST_FIELDS:
            if not isinstance(value, list) or not all(
                    isinstance(i, int) and not isinstance(i, bool) for i in value):
                raise bad(f"geometry field '{name}' must be a list of layer numbers, "
                          f"not {value!r}")
            if not all(0 <= i < int(geo_raw.get("layers") or 0) for i in value):
                raise bad(f"geometry field '{name}' names a layer outside 0..layers-1")
            continue
        expected = str if name == "model_type" else bool if name in _BOOL_FIELDS else int
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise bad(f"geometry field '{name}' must be {expected.__name__}, not {value!r}")
        if isinstance(value, int) and value < 0:
            raise bad(f"geometry field '{name}' must not be negative")
    values: dict[str, Any] = {k: tuple(v) if k in _LAYER_LIST_FIELDS else v
                              for k, v in geo_raw.items()}
    geometry = Geometry(**values)
    if geometry.is_moe and not 1 <= geometry.experts_per_token <= geometry.experts:
        raise bad("geometry needs 1 <= experts_per_token <= experts")
    return geometry


def _geometry_of_config(config: Any, bad: Callable[[str], RegistryError]) -> Geometry:
    """A [config] table: the model's published config.json fields, read by its family."""
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise bad("has a [config] table without a model_type")
    family = family_for(config["model_type"])
    if family is None:
        raise bad(f"has model_type '{config['model_type']}' in its [config], which mixtui has "
                  "no family for; describe it with a [geometry] table instead")
    try:
        geometry = family.geometry(config)
        for name in ("layers", "hidden", "heads", "kv_heads", "head_dim", "vocab"):
            if getattr(geometry, name) <= 0:
                raise ValueError(f"its {name} must be positive, not {getattr(geometry, name)}")
        # everything else the figures read from it, so that a gap is said here, not later
        family.tensors(config)
        family.cache_bytes(config, 1)
        family.max_experts_per_token(config)
    except KeyError as exc:
        raise bad(f"has a [config] table that lacks {exc}") from None
    except (TypeError, ValueError, ZeroDivisionError, AttributeError) as exc:
        raise bad(f"has a [config] table that mixtui cannot read ({exc})") from None
    if geometry.is_moe and not 1 <= geometry.experts_per_token <= geometry.experts:
        raise bad("config needs 1 <= experts per token <= experts")
    return geometry


_BITS = (2, 3, 4, 5, 6, 8)  # what MLX's quantizer packs
_GROUP_SIZES = (32, 64, 128)


def _parse_quantization(quant: Any, bad: Callable[[str], RegistryError]
                        ) -> Quantization | None:
    """{ bits = N, group_size = N[, mode = "affine" | "mxfp4"][, experts = { ... }] }"""
    if quant is None:
        return None
    usage = ("quantization must be { bits = N, group_size = N } with bits 2, 3, 4, 5, 6 or 8 "
             "and group_size 32, 64 or 128 (optionally with mode = \"affine\" or \"mxfp4\", "
             "and experts = { ... } for the routed experts)")
    if not (isinstance(quant, dict) and quant.get("bits") in _BITS
            and quant.get("group_size") in _GROUP_SIZES
            and quant.get("mode", "affine") in ("affine", "mxfp4")
            and set(quant) <= {"bits", "group_size", "mode", "experts"}):
        raise bad(usage)
    if quant.get("mode") == "mxfp4" and (quant["bits"], quant["group_size"]) != (4, 32):
        raise bad('has mode = "mxfp4", which is bits = 4 with group_size = 32')
    experts = quant.get("experts")
    if experts is not None and (not isinstance(experts, dict) or "experts" in experts):
        raise bad(usage)
    return Quantization(bits=quant["bits"], group_size=quant["group_size"],
                        mode=quant.get("mode", "affine"),
                        experts=_parse_quantization(experts, bad))


def _parse_card(card: Any, bad: Callable[[str], RegistryError]) -> Card | None:
    """{ total = 20.9e9, active = 3.6e9, note = "..." }: the model card's own counts."""
    if card is None:
        return None
    ok = (isinstance(card, dict) and set(card) <= {"total", "active", "note"}
          and all(isinstance(card.get(f), int | float) and not isinstance(card.get(f), bool)
                  and math.isfinite(card[f]) and card[f] > 0 for f in ("total", "active"))
          and card["active"] <= card["total"] and isinstance(card.get("note", ""), str))
    if not ok:
        raise bad('card must be { total = N, active = N, note = "..." } (parameter counts, '
                  'active at most total)')
    return Card(int(card["total"]), int(card["active"]), card.get("note", ""))


def parse_registry(text: str, origin: Path, *, builtin: bool) -> dict[str, ModelSpec]:
    """Parse one models.toml; errors name the file and line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"{origin} is not valid TOML ({exc}); fix that line.") from None
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise RegistryError(f"{origin}: 'models' must be a table of [models.KEY] entries; "
                            "fix the file.")
    specs = {}
    for key, raw in models.items():
        where = f"{'built-in ' if builtin else ''}{origin}, line {_line_of(text, key)}"
        specs[key] = _parse_entry(key, raw, where)
    return specs


def load_registry(include_user: bool = True) -> dict[str, ModelSpec]:
    """All models, in order: built-in entries first; the user's file adds or overrides."""
    path = builtin_registry_path()
    specs = parse_registry(path.read_text(encoding="utf-8"), path, builtin=True)
    user = user_registry_path()
    if include_user and user.is_file():
        specs.update(parse_registry(user.read_text(encoding="utf-8"), user, builtin=False))
    return specs
