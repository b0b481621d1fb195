"""Where a model's files are on this machine, and whether they are all there."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Literal

from mixtui.core.errors import ModelNotFound, ModelNotLocal
from mixtui.core.paths import PACKAGE_DIR
from mixtui.families.geometry import Geometry
from mixtui.registry.check import check_config, check_model_dir, read_config, repair_hint
from mixtui.registry.loader import load_registry
from mixtui.registry.spec import Kind, ModelSpec, Quantization
from mixtui.store.cache import snapshot_dir

LocalState = Literal["bundled", "complete", "partial", "absent"]
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def missing_files(model_dir: Path) -> list[str]:
    """Files MLX needs that are absent: config, tokenizer, and every weight shard."""
    missing = [] if (model_dir / "config.json").is_file() else ["config.json"]
    if not any((model_dir / n).is_file() for n in ("tokenizer.json", "tokenizer.model")):
        missing.append("tokenizer.json")
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError):
            return [*missing, "model.safetensors.index.json (unreadable)"]
        missing += [s for s in shards if not (model_dir / s).is_file()]
    elif not list(model_dir.glob("model*.safetensors")):  # what mlx-lm loads
        missing.append("model.safetensors")
    return missing


def local_dir(spec: ModelSpec) -> Path | None:
    """The directory holding the model's files, if there is one on this machine."""
    if spec.path is not None:
        path = Path(spec.path).expanduser()
        if not path.is_absolute():
            path = PACKAGE_DIR / path if spec.bundled else path.resolve()
        return path if path.is_dir() else None
    assert spec.repo is not None
    return snapshot_dir(spec.repo, spec.revision)


def require_local(spec: ModelSpec) -> Path:
    """The model's directory, checked before any engine starts (registry/check.py): a
    ModelNotLocal saying what is missing and how to get it, or a UsageError saying why the
    directory cannot be used."""
    where = local_dir(spec)
    if where is None:
        if spec.path is not None and not spec.bundled:
            raise ModelNotFound(f"No such directory: {spec.path} (the path of {spec.key} in "
                                f"{spec.source}) does not exist; check the path.",
                                code="no-such-directory",
                                facts={"model": spec.key, "path": spec.path})
        size = spec.weight_bytes() / 1e9
        raise ModelNotLocal(f"{spec.name} ({spec.repo}) is not on this machine ({size:.1f} GB "
                            f"of weights); download it with `mixtui download {spec.key}` and "
                            "try again.", facts={"model": spec.key, "repo": spec.repo,
                                                 "weight_bytes": spec.weight_bytes()})
    check_model_dir(where, spec.key if spec.repo is not None else None)
    return where


def local_state(spec: ModelSpec) -> LocalState:
    where = local_dir(spec)
    if where is None:
        return "absent"
    if missing_files(where):
        return "partial"
    return "bundled" if spec.bundled else "complete"


def _spec_from_dir(name: str, model_dir: Path, repo: str | None = None) -> ModelSpec:
    config = read_config(model_dir, repair_hint(repo) if repo else
                         "replace it with the one from the model's repository")
    check_config(config, model_dir / "config.json")
    try:
        geometry = Geometry.from_hf_config(config)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelNotFound(f"{model_dir / 'config.json'} lacks {exc} that mixtui needs; "
                            "check that this is a causal language model.") from None
    kind: Kind = "chat" if _has_chat_template(model_dir) else "base"
    quant = config.get("quantization")
    quantization = (Quantization(int(quant["bits"]), int(quant["group_size"]),
                                 "mxfp4" if quant.get("mode") == "mxfp4" else "affine")
                    if quant else None)
    return ModelSpec(key=name, name=name, geometry=geometry, kind=kind, repo=repo,
                     path=None if repo else str(model_dir), quantization=quantization,
                     source="command line", config=config)


def _has_chat_template(model_dir: Path) -> bool:
    if any((model_dir / n).is_file() for n in ("chat_template.jinja", "chat_template.json")):
        return True
    try:
        tok_config = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(tok_config.get("chat_template"))


def resolve(name: str, registry: dict[str, ModelSpec] | None = None) -> ModelSpec:
    """A registry key, a local directory or a Hub repo id, as mlx-lm accepts them."""
    registry = load_registry() if registry is None else registry
    if name in registry:
        return registry[name]
    path = Path(name).expanduser()
    if path.is_dir():
        return _spec_from_dir(name, path.resolve())
    looks_like_path = name.startswith((".", "~", os.sep)) or name.count("/") > 1
    if looks_like_path or (path.exists() and not path.is_dir()):
        kind = "is not a directory" if path.exists() else "does not exist"
        raise ModelNotFound(f"No such directory: {name} {kind}; check the path, or give a "
                            "model key from `mixtui models`.", code="no-such-directory",
                            facts={"path": name})
    if REPO_ID.match(name):
        for spec in registry.values():
            if spec.repo == name:
                return spec
        snap = snapshot_dir(name)
        if snap is None and path.parent.is_dir():  # `models/tyop`, next to a models/ folder
            raise ModelNotFound(f"No such directory: {name} does not exist, and no Hub repo of "
                                f"that name is downloaded; check the path, or fetch the repo "
                                f"with `mixtui download {name}`.", code="no-such-directory",
                                facts={"path": name})
        if snap is None or not (snap / "config.json").is_file():
            raise ModelNotLocal(f"{name} is not downloaded; fetch it with `mixtui download {name}` "
                                "and run the command again.", facts={"model": name, "repo": name})
        if missing_files(snap):
            check_model_dir(snap, name)  # says which files are missing
        return _spec_from_dir(name, snap, repo=name)
    keys = ", ".join(registry)
    raise ModelNotFound(f"Unknown model '{name}'; use one of {keys}, a Hub repo id (org/name) "
                        "or a local directory.", facts={"model": name, "known": list(registry)})
