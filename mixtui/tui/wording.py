"""How the TUI says a problem: every error and refusal it shows goes through `say`, with each
remedy in the TUI's words (keys and settings, where the command line names flags and the
command to run again)."""

from __future__ import annotations

from mixtui.app.loader import Refused, Start, Unavailable
from mixtui.core.errors import MixtuiError
from mixtui.core.paths import log_dir
from mixtui.engine.messages import EngineExited, Failed
from mixtui.planner import Fit

# Remedy action -> the TUI's wording ({value}: the remedy's value). Actions the TUI has no
# way to take (a flag of the command line) are left out of the sentence.
WORDS: dict[str, str] = {
    "again": "try again",
    "revision": "",
    "offline": "",
    "debug": "",
    "context": "max_kv_size {value} in settings.json",
    "context_size": "max_kv_size in settings.json",
    "force": "; `mixtui --force` loads it anyway",
    "no_routing": "`mixtui --no-routing`",
}
FORCED = WORDS | {"force": ""}  # the app runs with --force: nothing more to offer

Problem = MixtuiError | Failed | EngineExited | Unavailable | Refused | Start


def say(problem: Problem | Fit, *, force: bool = False) -> str:
    """One problem as the TUI says it. `force`: the app runs with --force (a refusal then
    does not suggest it); a `Start` is the warning of a tight or forced load."""
    words = FORCED if force else WORDS
    if isinstance(problem, MixtuiError):
        return problem.render(words)
    if isinstance(problem, Failed):
        return problem.error().render(words)
    if isinstance(problem, EngineExited):
        return (f"{problem.description}; press r (or 'Reload engine' in ctrl+p) to start it "
                f"again, the conversation is kept (engine log: {log_dir()}).")
    if isinstance(problem, Unavailable):
        return say(problem.error, force=force)
    if isinstance(problem, Refused):
        return say(problem.fit, force=force)
    if isinstance(problem, Start):
        fit = problem.fit
        text = (fit.error(hint=False).render(FORCED) if fit.verdict == "does-not-fit"
                else fit.sentence(hint=False))
        return text if not problem.forced else f"{text[:-1]}; loading it anyway (--force)."
    if problem.verdict == "does-not-fit":
        return problem.error().render(words)
    return problem.sentence()
