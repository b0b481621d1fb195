"""Before any engine starts: can mlx-lm load this model directory without running its code?

Cheap and MLX-free: it reads config.json, looks for the tokenizer and weight files, and finds
which architectures the installed mlx-lm has by reading its package folder (the module files
under `mlx_lm/models/` and the remapping tables in `mlx_lm/utils.py`), never by importing it.
The engine (engine/session.py) turns what only loading can find into the same kind of sentence,
with the message builders below.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import importlib.util
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from mixtui.core.errors import ModelDamaged, ModelNotFound, ModelNotLocal, UsageError
from mixtui.store.known_bad import known_problems

INDEX = "model.safetensors.index.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")
_EXAMPLES = ("mixtral", "mistral", "llama")  # named in messages when mlx-lm has them
_OTHER_WEIGHTS = ("*.bin", "*.pth", "*.pt", "*.gguf", "*.ckpt")


class ModelUnusable(UsageError):
    """A model directory mixtui cannot or will not load (exit code 2)."""


# -- what the installed mlx-lm can build -------------------------------------------------------
@dataclass(frozen=True)
class MlxLm:
    version: str
    models_dir: Path
    remapping: dict[str, str]  # mlx_lm.utils.MODEL_REMAPPING
    arch_remapping: dict[tuple[str, str], str]  # mlx_lm.utils.MODEL_ARCHITECTURE_REMAPPING


def _literal_tables(source: str, names: tuple[str, ...]) -> dict[str, Any]:
    """Module-level `NAME = {...}` literals of a Python source, without running it."""
    found: dict[str, Any] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in names:
            with contextlib.suppress(ValueError):
                found[target.id] = ast.literal_eval(value)
    return found


@lru_cache(maxsize=1)
def mlx_lm() -> MlxLm | None:
    """The installed mlx-lm's architectures, or None where that cannot be read (then the
    engine's own load is the judge)."""
    try:
        spec = importlib.util.find_spec("mlx_lm")  # finds the package; does not import it
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    try:
        tables = _literal_tables((root / "utils.py").read_text(encoding="utf-8"),
                                 ("MODEL_REMAPPING", "MODEL_ARCHITECTURE_REMAPPING"))
    except (OSError, SyntaxError, ValueError):
        return None
    remapping = tables.get("MODEL_REMAPPING")
    if not isinstance(remapping, dict) or not (root / "models").is_dir():
        return None  # an mlx-lm laid out differently: do not guess
    arch_remapping = tables.get("MODEL_ARCHITECTURE_REMAPPING")
    return MlxLm(_version(root), root / "models", dict(remapping),
                 dict(arch_remapping) if isinstance(arch_remapping, dict) else {})


def _version(root: Path) -> str:
    try:
        match = re.search(r"""__version__\s*=\s*['"]([^'"]+)""",
                          (root / "_version.py").read_text(encoding="utf-8"))
        if match:
            return match.group(1)
    except OSError:
        pass
    # deferred: importlib.metadata (with email and zipfile) is needed only here
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mlx-lm")
    except PackageNotFoundError:
        return "(unknown version)"


def _has_model_module(lib: MlxLm, module: str) -> bool:
    if not re.fullmatch(r"\w+", module):
        return False  # not importable as mlx_lm.models.<module>
    file = lib.models_dir / f"{module}.py"
    if file.is_file():
        text = file.read_text(encoding="utf-8", errors="replace")
        return "class Model(" in text and "class ModelArgs" in text
    return (lib.models_dir / module / "__init__.py").is_file()


def architecture_module(config: dict[str, Any], lib: MlxLm) -> str:
    """The mlx_lm.models module that mlx-lm's loader picks for this config (as _get_classes)."""
    model_type = str(config["model_type"])
    architectures = config.get("architectures") or ()
    if isinstance(architectures, str):
        architectures = (architectures,)
    for architecture in architectures:
        remapped = lib.arch_remapping.get((model_type, str(architecture)))
        if remapped is not None:
            return remapped
    return lib.remapping.get(model_type, model_type)


def supported_model_types(lib: MlxLm) -> list[str]:
    modules = sorted(p.stem for p in lib.models_dir.glob("*.py")
                     if not p.stem.startswith("_") and _has_model_module(lib, p.stem))
    return sorted(set(modules) | {k for k, v in lib.remapping.items() if v in modules})


def _examples(lib: MlxLm | None) -> str:
    if lib is None:
        return ", ".join(_EXAMPLES)
    known = set(supported_model_types(lib))
    return ", ".join(t for t in _EXAMPLES if t in known)


# -- the sentences ------------------------------------------------------------------------------
def pick_supported(lib: MlxLm | None = None) -> str:
    return f"pick an MLX conversion of a supported architecture ({_examples(lib)}, …)"


def unsupported_message(config_path: Path, model_type: object, lib: MlxLm | None) -> str:
    version = f"mlx-lm {lib.version}" if lib is not None else "the installed mlx-lm"
    hint = ""
    if lib is not None and isinstance(model_type, str):
        close = difflib.get_close_matches(model_type, supported_model_types(lib), n=1,
                                          cutoff=0.8)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
    return (f"{config_path} has model_type {model_type!r}, which {version} cannot run{hint}; "
            f"{pick_supported(lib)}.")


def remote_code_message(what: str, ref: str, todo: str) -> str:
    """`what` needs the repository's own Python code (`ref`): refused, always."""
    return (f"{what} needs Python code from the model's repository ({ref}), and mixtui never "
            f"runs code from a model repository; {todo}.")


def tokenizer_code_message(model_dir: Path, ref: str) -> str:
    return remote_code_message(f"The tokenizer of {model_dir}", ref,
                               "pick an MLX conversion that ships a tokenizer.json")


def tokenizer_code_ref(model_dir: Path) -> str | None:
    """The auto_map entry of tokenizer_config.json that names the tokenizer's own code."""
    try:
        tok_config = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    auto_map = tok_config.get("auto_map") if isinstance(tok_config, dict) else None
    ref = auto_map.get("AutoTokenizer") if isinstance(auto_map, dict) else auto_map
    if isinstance(ref, list | tuple):
        ref = next((r for r in ref if r), None)
    return f"auto_map AutoTokenizer: {ref}" if ref else None


def hub_repo_of(model_dir: Path) -> str | None:
    """The repo id of a Hugging Face cache snapshot folder (…/models--org--name/snapshots/C)."""
    repo_dir = model_dir.parent.parent
    if model_dir.parent.name != "snapshots" or not repo_dir.name.startswith("models--"):
        return None
    return repo_dir.name.removeprefix("models--").replace("--", "/")


def repair_hint(key: str) -> str:
    return f"run `mixtui verify {key} --repair` (or `mixtui download {key}`) and try again"


def _count(n: int, what: str) -> str:
    return f"{n} {what}s" if n != 1 else f"a {what}"


def _listing(names: list[str], most: int = 3) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


# -- the checks ---------------------------------------------------------------------------------
def read_config(model_dir: Path, fix: str) -> dict[str, Any]:
    """config.json as a dict; `fix` says how to get a good one (the end of the sentence)."""
    config = model_dir / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelNotFound(f"{model_dir} has no config.json, so it is not a model directory; "
                            "point --model at the folder that holds config.json.") from None
    except UnicodeDecodeError:
        raise ModelUnusable(f"{config} is not text; {fix}.") from None
    except ValueError as exc:
        raise ModelUnusable(f"{config} is not valid JSON ({exc}); {fix}.") from None
    if not isinstance(data, dict):
        raise ModelUnusable(f"{config} holds a JSON {type(data).__name__}, not the object "
                            f"of settings a model's config.json is; {fix}.")
    return data


def check_config(config: dict[str, Any], config_path: Path) -> None:
    """Refuse a config that needs the repository's code, or an architecture mlx-lm lacks."""
    lib = mlx_lm()
    model_file = config.get("model_file")
    if model_file is not None:  # mlx-lm's own custom-module hook
        raise ModelUnusable(remote_code_message(f"The architecture in {config_path}",
                                                f"model_file: {model_file}",
                                                pick_supported(lib)))
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise ModelUnusable(f"{config_path} has no model_type, so nothing tells mlx-lm which "
                            f"architecture to build; {pick_supported(lib)}.")
    if lib is None or _has_model_module(lib, architecture_module(config, lib)):
        return
    auto_map = config.get("auto_map")
    if isinstance(auto_map, dict) and auto_map:
        ref = auto_map.get("AutoModelForCausalLM") or next(iter(auto_map.values()))
        raise ModelUnusable(remote_code_message(
            f"The architecture '{model_type}' in {config_path}", f"auto_map: {ref}",
            pick_supported(lib)))
    raise ModelUnusable(unsupported_message(config_path, model_type, lib))


def _weight_problem(model_dir: Path, fix: str) -> tuple[list[str], str | None]:
    """(weight files that are missing, a sentence when the weights cannot be used at all);
    `fix` ends the sentence for a broken index."""
    index = model_dir / INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            shards = sorted({str(s) for s in weight_map.values()})
        except (ValueError, KeyError, TypeError, AttributeError):
            return [], (f"{index} is not a readable weight index (no weight_map of file "
                        f"names); {fix}.")
        return [s for s in shards if not (model_dir / s).is_file()], None
    if list(model_dir.glob("model*.safetensors")):
        return [], None
    others = sorted(p.name for pattern in _OTHER_WEIGHTS for p in model_dir.glob(pattern))
    if others:
        return [], (f"{model_dir} has weights only in a format mlx-lm does not read "
                    f"({_listing(others)}), not MLX safetensors; {pick_supported(mlx_lm())}.")
    return ["model.safetensors"], None


def check_model_dir(model_dir: Path, key: str | None = None) -> dict[str, Any]:
    """Everything mlx-lm needs, with nothing run from the directory; returns config.json.

    `key`: the registry key or repo id of a Hub model, for the what-to-do hints; None for a
    directory given by its path (a Hub cache snapshot folder is still recognised by its
    layout). Raises ModelNotLocal (exit code 1) for an incomplete download, and a UsageError
    (exit code 2) for a directory that is not usable.
    """
    hub_key = key if key is not None else hub_repo_of(model_dir)
    missing: list[str] = []
    if not (model_dir / "config.json").is_file() and hub_key is not None:
        missing.append("config.json")
    tokenizer_ref = None
    if not any((model_dir / n).is_file() for n in TOKENIZER_FILES):
        tokenizer_ref = tokenizer_code_ref(model_dir)
        if tokenizer_ref is None:
            missing.append("tokenizer.json")
    fix = (repair_hint(hub_key) if hub_key is not None
           else "replace it with the one from the model's repository")
    shards, weights_unusable = _weight_problem(model_dir, fix)
    missing += shards
    if hub_key is not None and missing:
        named = "shard" if all(m.endswith(".safetensors") for m in missing) else "file"
        count = f"{len(missing)} {named}s" if len(missing) > 1 else named
        raise ModelNotLocal(f"{hub_key} is incomplete in {model_dir}: the {count} "
                            f"{_listing(missing)} {'are' if len(missing) > 1 else 'is'} "
                            f"missing; {repair_hint(hub_key)}.")
    repo = hub_repo_of(model_dir)
    if repo is not None and hub_key is not None:
        problems = known_problems(model_dir, repo)
        if problems:
            raise ModelDamaged(f"{hub_key} has {_count(len(problems), 'bad file')} in "
                               f"{model_dir} ({_listing(problems)}), so it is not loaded; run "
                               f"`mixtui verify {hub_key} --repair` and try again.")
    config = read_config(model_dir, fix)
    check_config(config, model_dir / "config.json")
    if tokenizer_ref is not None:
        raise ModelUnusable(tokenizer_code_message(model_dir, tokenizer_ref))
    if weights_unusable is not None:
        raise ModelUnusable(weights_unusable)
    if "tokenizer.json" in missing:
        raise ModelUnusable(f"{model_dir} has no tokenizer (tokenizer.json or tokenizer.model); "
                            "copy the tokenizer files from the model's repository into it.")
    if shards == ["model.safetensors"] and not (model_dir / INDEX).is_file():
        raise ModelUnusable(f"{model_dir} has no weights (model*.safetensors); copy them from "
                            "the model's repository into it.")
    if shards:
        raise ModelUnusable(
            f"{model_dir} lacks {'the weight shard' if len(shards) == 1 else 'the weight shards'}"
            f" {_listing(shards)} named in {INDEX}; copy "
            f"{'it' if len(shards) == 1 else 'them'} from the model's repository into it.")
    return config
