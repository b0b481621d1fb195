"""Errors a user can cause, as data: a code, the facts, the remedies, and one sentence.

An error is raised where the problem is found, with what that place knows: a stable `code`
(`model-not-found`, `model-too-big`, …), its `facts` (names, sizes, counts: what a script
reading `--json` needs) and its `remedies` (what the user can do). Where the front ends
word a remedy differently — the command line names a flag where the TUI names a key or a
setting — the sentence is a template with a field per remedy, and each front end renders it
in its own words (`render(words)`).
`str(error)` is the sentence with each remedy in its plain wording (the one given where the
error was raised), which is what the command line says.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Remedy:
    """Something the user can do, named by `action`; `text` is its plain wording, which a
    front end may replace by its own for the same action (`{value}` in either is filled in).
    """

    action: str  # e.g. "again", "context", "force", "revision"
    text: str = ""
    value: Any = None

    def say(self, words: Mapping[str, str] | None = None) -> str:
        text = self.text if words is None else words.get(self.action, self.text)
        return text.format(value=self.value) if "{value" in text else text


def _code_of(cls: type) -> str:
    """`ModelNotFound` -> "model-not-found" (a class's default code)."""
    name = cls.__name__.removesuffix("Error") or cls.__name__
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


_FIELD = re.compile(r"\{\{|\}\}|\{(\w+)\}")  # an escaped brace, or a remedy's field


class MixtuiError(Exception):
    """A problem the user can fix; its sentence ends with what to do.

    With `remedies`, the sentence is a template: each `{action}` field in it is filled with
    that remedy in the words of whoever renders it (literal braces are doubled). Without,
    it is the sentence as it stands. `facts` are the names and figures the sentence speaks
    of, for `--json` and for front ends that say it their own way.
    """

    exit_code = 1
    code = "failed"

    def __init__(self, message: str, detail: str = "", *, code: str | None = None,
                 facts: Mapping[str, Any] | None = None, remedies: tuple[Remedy, ...] = ()):
        self.template = message
        self.facts: dict[str, Any] = dict(facts or {})
        self.remedies = remedies
        if code is not None:
            self.code = code
        self.detail = detail  # e.g. the engine's traceback, shown only with --debug
        super().__init__(self.render())

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" not in cls.__dict__:
            cls.code = _code_of(cls)

    def __reduce__(self) -> tuple[Any, ...]:
        # Whole across a process boundary (the engine's and the download's pipes).
        return (_rebuild, (type(self), self.template, self.detail, self.code, self.facts,
                           self.remedies, self.exit_code))

    @property
    def message(self) -> str:
        """The sentence in plain words (what the command line says)."""
        return self.render()

    def render(self, words: Mapping[str, str] | None = None) -> str:
        """The sentence, with each remedy in `words` (action -> wording) where they have it.

        One pass over the template: `{{` and `}}` are braces, `{action}` a remedy's wording;
        anything else stays as it is, so no text in a sentence can make rendering fail.
        """
        if not self.remedies:
            return self.template
        said = {r.action: r.say(words) for r in self.remedies}

        def field(match: re.Match[str]) -> str:
            token = match.group(0)
            if token in ("{{", "}}"):
                return token[0]
            return said.get(match.group(1), token)

        return _FIELD.sub(field, self.template)

    def to_dict(self) -> dict[str, Any]:
        """The error for `--json`: code, message, exit code, facts and remedies."""
        record: dict[str, Any] = {"code": self.code, "message": self.message,
                                  "exit_code": self.exit_code}
        record |= {k: v for k, v in self.facts.items() if k not in record}
        if self.remedies:
            record["remedies"] = [{"action": r.action, "text": r.say(), "value": r.value}
                                  for r in self.remedies]
        return record


def _rebuild(cls: type[MixtuiError], template: str, detail: str, code: str,
             facts: dict[str, Any], remedies: tuple[Remedy, ...], exit_code: int) -> MixtuiError:
    error = cls.__new__(cls)
    MixtuiError.__init__(error, template, detail, code=code, facts=facts, remedies=remedies)
    error.exit_code = exit_code
    return error


def literal(text: object) -> str:
    """`text` made safe inside a remedy template (its braces doubled)."""
    return str(text).replace("{", "{{").replace("}", "}}")


class UsageError(MixtuiError):
    """Bad command-line usage or input (exit code 2)."""

    exit_code = 2
    code = "usage"


class ModelNotFound(UsageError):
    """A model key, repo id or path that names nothing."""


class UnknownFamily(UsageError):
    """A MoE model whose architecture mixtui has no family for: its routing cannot be read."""


class RegistryError(UsageError):
    """A malformed models.toml."""

    code = "registry-invalid"


class ModelNotLocal(MixtuiError):
    """A known model whose weights are not on this machine."""


class ModelDamaged(MixtuiError):
    """A downloaded model with a file that is known to be bad (wrong size, failed its hash)."""
