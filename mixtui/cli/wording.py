"""How the command line says a problem: every error, refusal and warning it prints goes
through `say`, with each remedy in its plain words (the flags, the command to run again);
`report` prints it on stderr, or with `--json` as a record on stdout."""

from __future__ import annotations

import json
import sys
from typing import Any

from mixtui.app.loader import Refused, Start, Unavailable
from mixtui.core.errors import MixtuiError
from mixtui.engine.messages import EngineExited, Failed
from mixtui.planner import Fit

Problem = MixtuiError | Failed | EngineExited | Unavailable | Refused | Start


def say(problem: Problem | Fit) -> str:
    """One problem as the command line says it, without the `mixtui: ` prefix; a `Start` is
    the warning of a tight or forced load (`warning: ` included)."""
    if isinstance(problem, MixtuiError):
        return problem.render()
    if isinstance(problem, Failed):
        return problem.reason
    if isinstance(problem, EngineExited):
        return f"{problem.description}; run the command again."
    if isinstance(problem, Unavailable):
        return say(problem.error)
    if isinstance(problem, Refused):
        return say(problem.fit)
    if isinstance(problem, Start):
        reason = problem.fit.reason
        return (f"warning: {reason[:-1]}; loading it anyway (--force)." if problem.forced
                else f"warning: {reason}")
    return say(problem.error()) if problem.verdict == "does-not-fit" else problem.sentence()


def error_record(problem: MixtuiError) -> dict[str, Any]:
    """`{"error": {"code": ..., "message": ..., "exit_code": ..., ...facts}}`."""
    return {"error": problem.to_dict()}


def report(problem: MixtuiError, *, as_json: bool) -> int:
    """Tell the user (one line on stderr, or the record on stdout); return the exit code."""
    if as_json:
        json.dump(error_record(problem), sys.stdout, ensure_ascii=False, default=str)
        sys.stdout.write("\n")
        sys.stdout.flush()
    else:
        print(f"mixtui: {say(problem)}", file=sys.stderr)
    return problem.exit_code
