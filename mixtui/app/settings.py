"""The user's settings in `config_dir() / "settings.json"` (docs/conversation-format.md, end).

Loading never fails: a missing file gives the defaults, and a damaged one gives every value
that is still valid plus one sentence for the user saying what was wrong. The same checks
turn what the user types into values (`parse_sampling` and friends), with one sentence that
says what a field accepts.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mixtui.core.errors import MixtuiError, UsageError
from mixtui.core.files import atomic_write_text
from mixtui.core.paths import config_dir
from mixtui.core.types import DEFAULT_CONTEXT, Sampling

SETTINGS_FILE = "settings.json"
VERSION = 1
MIN_CONTEXT = 16  # the smallest max_kv_size accepted


class SettingsError(MixtuiError):
    """The settings file cannot be written."""


@dataclass
class Settings:
    last_model: str | None = None  # model key, Hub repo id or local path
    sampling: Sampling = field(default_factory=Sampling)
    system_prompt: str = ""
    experts_per_token: dict[str, int] = field(default_factory=dict)  # per model; absent: default
    expert_colouring: bool = True
    max_kv_size: int = DEFAULT_CONTEXT
    favourites: list[str] = field(default_factory=list)  # pinned model keys: keys 1-5 first

    def experts_for(self, model: str) -> int | None:
        """Experts per token chosen for `model`, or None for the model's own number."""
        return self.experts_per_token.get(model)


def settings_path() -> Path:
    return config_dir() / SETTINGS_FILE


# -- checks shared by the file and the UI --------------------------------------------------------
# Each check takes a Python value (from JSON or from parsed text) and returns the accepted value
# or raises ValueError; `_RULES` holds the sentence that says what the field accepts.
def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError
    value = float(value)
    if not math.isfinite(value):
        raise ValueError
    return value


def _whole(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if not isinstance(value, int):
        raise ValueError
    return value


def _at_least(low: float, convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        value = convert(value)
        if value < low:
            raise ValueError
        return value
    return check


def _top_p(value: Any) -> float:
    value = _number(value)
    if not 0 < value <= 1:
        raise ValueError
    return value


def _min_p(value: Any) -> float:
    value = _number(value)
    if not 0 <= value <= 1:
        raise ValueError
    return value


def _seed(value: Any) -> int | None:
    if value is None:
        return None
    value = _whole(value)
    if not 0 <= value < 2**64:
        raise ValueError
    return value


# field: (label, what it accepts, check)
_RULES: dict[str, tuple[str, str, Callable[[Any], Any]]] = {
    "temperature": ("Temperature", "a number >= 0", _at_least(0, _number)),
    "top_p": ("Top-p", "a number greater than 0 and at most 1", _top_p),
    "top_k": ("Top-k", "a whole number >= 0 (0 turns it off)", _at_least(0, _whole)),
    "min_p": ("Min-p", "a number from 0 to 1 (0 turns it off)", _min_p),
    "seed": ("Seed", "a whole number >= 0, or empty for a random seed", _seed),
    "max_tokens": ("Max tokens", "a whole number >= 1", _at_least(1, _whole)),
    "max_kv_size": ("Context size", f"a whole number >= {MIN_CONTEXT}",
                    _at_least(MIN_CONTEXT, _whole)),
}
SAMPLING_FIELDS = tuple(f.name for f in fields(Sampling))


def _usage(name: str, text: str) -> UsageError:
    label, accepts, _ = _RULES[name]
    return UsageError(f"{label} must be {accepts}, not {text!r}.")


def _from_text(text: str) -> int | float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        return float(text)  # ValueError for anything that is not a number


def parse_value(name: str, text: str) -> Any:
    """One field (a Sampling field name or "max_kv_size") from what the user typed.

    Raises UsageError with one sentence, e.g. "Temperature must be a number >= 0, not 'abc'."
    Only the seed may be empty (None: a random seed).
    """
    if name not in _RULES:
        raise KeyError(f"no setting called {name!r}")
    check = _RULES[name][2]
    try:
        value = _from_text(text)
        if value is None and name != "seed":
            raise ValueError
        return check(value)
    except (ValueError, OverflowError):
        raise _usage(name, text) from None


def parse_sampling(text_fields: Mapping[str, str], current: Sampling) -> Sampling:
    """`current` with the fields the user typed (keys: Sampling field names) replaced.

    Fields left out of `text_fields` keep their current value. The first bad field raises
    UsageError with one sentence that says what it accepts.
    """
    unknown = set(text_fields) - set(SAMPLING_FIELDS)
    if unknown:
        raise KeyError(f"not sampling fields: {sorted(unknown)}")
    changes = {name: parse_value(name, text_fields[name])
               for name in SAMPLING_FIELDS if name in text_fields}
    return replace(current, **changes)


def validate_sampling(sampling: Sampling) -> None:
    """Raise UsageError (one sentence) if any field of `sampling` is out of range."""
    for name in SAMPLING_FIELDS:
        value = getattr(sampling, name)
        try:
            _RULES[name][2](value)
        except ValueError:
            raise _usage(name, str(value)) from None


def parse_max_kv_size(text: str) -> int:
    """The context size (KV-cache tokens) the user typed; UsageError when it is not >= 16."""
    return int(parse_value("max_kv_size", text))


def parse_experts_per_token(text: str, num_experts: int | None = None, why: str = ""
                            ) -> int | None:
    """Experts per token the user typed: None (empty or "default") for the model's number.
    `num_experts`: the most the model's routing can choose; `why`: the family's sentence on
    why that is fewer than its experts (group-limited routing), said with the refusal."""
    stripped = text.strip()
    if stripped.lower() in ("", "default"):
        return None
    upper = f" to {num_experts}" if num_experts else " or more"
    problem = UsageError(f"Experts per token must be a whole number from 1{upper}, "
                         f"or empty for the model's default, not {text!r}."
                         + (f" {why}" if why else ""))
    try:
        k = _whole(_from_text(stripped))
    except (ValueError, OverflowError):
        raise problem from None
    if k < 1 or (num_experts and k > num_experts):
        raise problem
    return k


# -- the file ------------------------------------------------------------------------------------
def settings_to_json(settings: Settings) -> str:
    record = {
        "version": VERSION,
        "last_model": settings.last_model,
        "sampling": {name: getattr(settings.sampling, name) for name in SAMPLING_FIELDS},
        "system_prompt": settings.system_prompt,
        "experts_per_token": dict(sorted(settings.experts_per_token.items())),
        "expert_colouring": settings.expert_colouring,
        "max_kv_size": settings.max_kv_size,
        "favourites": list(settings.favourites),
    }
    return json.dumps(record, indent=2, ensure_ascii=False) + "\n"


def save_settings(settings: Settings) -> None:
    """Write the settings atomically; SettingsError (one sentence) if that is impossible."""
    path = settings_path()
    try:
        atomic_write_text(path, settings_to_json(settings))
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise SettingsError(
            f"Cannot save the settings to {path} ({why}); make {path.parent} writable or set "
            "MIXTUI_CONFIG_DIR to a folder you can write.") from None


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def settings_from_dict(record: Any) -> tuple[Settings, list[str]]:
    """Settings from a decoded settings file: every valid field, and the problems found."""
    defaults = Settings()
    problems: list[str] = []
    if not isinstance(record, dict):
        return defaults, ["it does not hold a JSON object"]
    values: dict[str, Any] = {}

    def bad(name: str, value: Any, accepts: str) -> None:
        problems.append(f"{name} must be {accepts}, not {_show(value)}")

    if "last_model" in record:
        value = record["last_model"]
        if value is None or (isinstance(value, str) and value.strip()):
            values["last_model"] = value
        else:
            bad("last_model", value, "a model name or null")

    if "sampling" in record:
        raw = record["sampling"]
        if isinstance(raw, dict):
            sampling: dict[str, Any] = {}
            for name in SAMPLING_FIELDS:
                if name in raw:
                    try:
                        sampling[name] = _RULES[name][2](raw[name])
                    except (ValueError, OverflowError):
                        accepts = ("a whole number >= 0 or null" if name == "seed"
                                   else _RULES[name][1])
                        bad(f"sampling.{name}", raw[name], accepts)
            values["sampling"] = replace(defaults.sampling, **sampling)
        else:
            bad("sampling", raw, "an object")

    if "system_prompt" in record:
        value = record["system_prompt"]
        if isinstance(value, str):
            values["system_prompt"] = value
        else:
            bad("system_prompt", value, "a string")

    if "experts_per_token" in record:
        raw = record["experts_per_token"]
        if isinstance(raw, dict):
            experts: dict[str, int] = {}
            for model, k in raw.items():
                try:
                    experts[model] = _at_least(1, _whole)(k)
                except ValueError:
                    bad(f"experts_per_token[{_show(model)}]", k, "a whole number >= 1")
            values["experts_per_token"] = experts
        else:
            bad("experts_per_token", raw, "an object")

    if "expert_colouring" in record:
        value = record["expert_colouring"]
        if isinstance(value, bool):
            values["expert_colouring"] = value
        else:
            bad("expert_colouring", value, "true or false")

    if "max_kv_size" in record:
        value = record["max_kv_size"]
        try:
            values["max_kv_size"] = _RULES["max_kv_size"][2](value)
        except (ValueError, OverflowError):
            bad("max_kv_size", value, _RULES["max_kv_size"][1])

    if "favourites" in record:
        raw = record["favourites"]
        if isinstance(raw, list):
            favourites: list[str] = []
            for key in raw:
                if isinstance(key, str) and key.strip():
                    if key not in favourites:
                        favourites.append(key)
                else:
                    bad("favourites[]", key, "a model key")
            values["favourites"] = favourites
        else:
            bad("favourites", raw, "a list of model keys")

    return replace(defaults, **values), problems


def prune_favourites(settings: Settings, known: Collection[str]) -> str | None:
    """Drop the pinned models that are not in the registry (`known`); None when all are.

    As with the other settings, nothing is lost: the file as it was is kept beside it
    (settings.json.bad) before the next save rewrites it. Returns one sentence for the user.
    """
    unknown = [key for key in settings.favourites if key not in known]
    if not unknown:
        return None
    settings.favourites = [key for key in settings.favourites if key in known]
    path = settings_path()
    try:
        kept = f"; {_copy_aside(path, path.read_bytes())}"
    except OSError:  # no file (a test's settings, or never saved): nothing to keep
        kept = ""
    names = ", ".join(unknown)
    return (f"Pinned model{'s' if len(unknown) > 1 else ''} {names} "
            f"{'are' if len(unknown) > 1 else 'is'} not in the registry and "
            f"{'were' if len(unknown) > 1 else 'was'} unpinned (add "
            f"{'them' if len(unknown) > 1 else 'it'} to models.toml and pin again){kept}.")


def load_settings() -> tuple[Settings, str | None]:
    """(settings, warning): the saved settings, or the defaults for what is missing or bad.

    The warning is None when all went well, otherwise one sentence for the user naming the
    file and what was wrong. A file that is not JSON is renamed to settings.json.bad (so
    nothing the user wrote is lost) and the defaults are used.
    """
    path = settings_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Settings(), None
    except OSError as exc:
        return Settings(), (f"Cannot read {path} ({exc.strerror or exc}); the default "
                            "settings are in use.")
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        what = (f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
                if isinstance(exc, json.JSONDecodeError) else "it is not UTF-8 text")
        return Settings(), f"{path} is not valid JSON ({what}); {_keep_bad(path)}."
    settings, problems = settings_from_dict(record)
    if not isinstance(record, dict):
        return settings, f"{path} does not hold a JSON object; {_keep_bad(path)}."
    version = record.get("version")
    newer = isinstance(version, int) and not isinstance(version, bool) and version > VERSION
    if problems:
        why = f" (it was written by a newer mixtui, version {version})" if newer else ""
        return settings, (f"Some settings in {path} were not used and are back to their "
                          f"defaults{why}: {'; '.join(problems)}; {_copy_aside(path, raw)}.")
    if newer:
        return settings, (f"{path} was written by a newer mixtui (version {version}); the "
                          "settings this version does not know are ignored.")
    return settings, None


def _copy_aside(path: Path, raw: bytes) -> str:
    """Keep the file as it was (the next save rewrites it); says where, for the warning."""
    bad = path.with_name(path.name + ".bad")
    try:
        atomic_write_text(bad, raw.decode("utf-8", errors="replace"))
    except OSError as exc:
        return f"the file could not be copied to {bad.name} ({exc.strerror or exc})"
    return f"the file as it was is kept as {bad.name}"


def _keep_bad(path: Path) -> str:
    """Move a damaged settings file aside; says what happened, for the warning."""
    bad = path.with_name(path.name + ".bad")
    try:
        os.replace(path, bad)
    except OSError as exc:
        return (f"it could not be kept as {bad.name} ({exc.strerror or exc}), and the default "
                "settings are in use")
    return f"it was kept as {bad.name} and the default settings are in use"
