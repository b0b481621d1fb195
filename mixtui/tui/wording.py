"""How the TUI words a problem: every error and refusal it shows goes through `say`.

Today these are the sentences the app has always shown (`str(exc)`, the Fit's TUI wording);
errors are becoming data (code, facts, remedies), and then only this module changes.
"""

from __future__ import annotations

from mixtui.app.loader import Refused, Start, Unavailable
from mixtui.core.errors import MixtuiError
from mixtui.core.paths import log_dir
from mixtui.engine.messages import EngineExited, Failed
from mixtui.planner import Fit

CONTEXT_OPTION = "max_kv_size {n} in settings.json"  # how a shorter context is chosen here
FORCE_OPTION = "`mixtui --force`"

Problem = MixtuiError | Failed | EngineExited | Unavailable | Refused | Start


def say(problem: Problem | Fit, *, force: bool = False) -> str:
    """One problem as the TUI says it. `force`: the app runs with --force (a refusal then
    does not suggest it); a `Start` is the warning of a tight or forced load."""
    if isinstance(problem, MixtuiError):
        return str(problem)
    if isinstance(problem, Failed):
        return problem.reason
    if isinstance(problem, EngineExited):
        return (f"{problem.description}; press r (or 'Reload engine' in ctrl+p) to start it "
                f"again, the conversation is kept (engine log: {log_dir()}).")
    if isinstance(problem, Unavailable):
        return str(problem.error)
    if isinstance(problem, Refused):
        return say(problem.fit, force=force)
    if isinstance(problem, Start):
        text = problem.fit.explain(context_option=CONTEXT_OPTION, hint=False)
        return text if not problem.forced else f"{text[:-1]}; loading it anyway (--force)."
    assert isinstance(problem, Fit)
    return problem.explain(context_option=CONTEXT_OPTION, force=None if force else FORCE_OPTION)
