"""How the CLI words a problem: every error, refusal and warning it prints goes through `say`.

Today these are the sentences `mixtui` has always printed (`str(exc)`, the Fit's CLI
wording); errors are becoming data (code, facts, remedies), and then only this module changes.
"""

from __future__ import annotations

from mixtui.app.loader import Refused, Start, Unavailable
from mixtui.core.errors import MixtuiError
from mixtui.engine.messages import EngineExited, Failed
from mixtui.planner import Fit

Problem = MixtuiError | Failed | EngineExited | Unavailable | Refused | Start


def say(problem: Problem | Fit) -> str:
    """One problem as the CLI says it, without the `mixtui: ` prefix; a `Start` is the
    warning of a tight or forced load (`warning: ` included)."""
    if isinstance(problem, MixtuiError):
        return str(problem)
    if isinstance(problem, Failed):
        return problem.reason
    if isinstance(problem, EngineExited):
        return f"{problem.description}; run the command again."
    if isinstance(problem, Unavailable):
        return str(problem.error)
    if isinstance(problem, Refused):
        return say(problem.fit)
    if isinstance(problem, Start):
        reason = problem.fit.reason
        return (f"warning: {reason[:-1]}; loading it anyway (--force)." if problem.forced
                else f"warning: {reason}")
    assert isinstance(problem, Fit)
    return problem.explain(force="--force")
