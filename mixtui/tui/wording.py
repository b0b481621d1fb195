"""How the TUI says a problem: the remedies in the TUI's words (keys and settings, where the
command line names flags and commands to run again)."""

from __future__ import annotations

from mixtui.core.errors import MixtuiError
from mixtui.planner import Fit

# Remedy action -> the TUI's wording ({value}: the remedy's value). Actions the TUI has no
# way to take (a flag of the command line) are left out of the sentence.
WORDS: dict[str, str] = {
    "again": "try again",
    "revision": "",
    "offline": "",
    "debug": "",
    "context": "max_kv_size {value} in settings.json",
    "force": "; `mixtui --force` loads it anyway",
}
FORCED = WORDS | {"force": ""}  # the app runs with --force: nothing more to offer


def say(problem: MixtuiError, *, forced: bool = False) -> str:
    """The sentence the TUI shows for `problem`."""
    return problem.render(FORCED if forced else WORDS)


def fit_text(fit: Fit, *, forced: bool = False) -> str:
    """A memory-fit verdict as the TUI says it (the model bar's tooltip, the refusal)."""
    if fit.verdict == "does-not-fit":
        return say(fit.error(), forced=forced)
    return fit.sentence()
