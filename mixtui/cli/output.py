"""Where a command's report goes: standard output, or `--out FILE`."""

from __future__ import annotations

import sys
from pathlib import Path

from mixtui.core.errors import UsageError
from mixtui.core.files import atomic_write_text


def check_out(out: Path | None) -> None:
    """Refuse an `--out` in no folder before any work is done."""
    if out is not None and not out.expanduser().parent.is_dir():
        raise UsageError(f"Cannot write the report to {out} (no such folder); choose another "
                         "file.", code="bad-option", facts={"option": "--out"})


def write_report(text: str, out: Path | None) -> bool:
    """The report to `out` (or standard output); False when `out` could not be written, in
    which case the report goes to standard output, so that nothing computed is lost."""
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return True
    try:
        atomic_write_text(out.expanduser(), text)
    except OSError as exc:
        sys.stdout.write(text)
        print(f"mixtui: cannot write {out} ({exc.strerror}); the report is above.",
              file=sys.stderr)
        return False
    print(f"mixtui: the report is in {out}.", file=sys.stderr)
    return True
