"""How the command line says a problem: each remedy in its plain words (the flags and the
commands to run again), on stderr; with `--json`, as a record on stdout."""

from __future__ import annotations

import json
import sys
from typing import Any

from mixtui.core.errors import MixtuiError


def say(problem: MixtuiError) -> str:
    """The sentence the command line shows for `problem` (remedies in their plain words)."""
    return problem.render()


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
