"""`mixtui bench`: the same prompt on several models, one engine process at a time; a table
(or Markdown, CSV, JSON) and the answer in words. A thin view on `app/bench.py`."""

from __future__ import annotations

import sys
from pathlib import Path

from mixtui.app.bench.figures import (
    BenchRequest,
    BenchRow,
    Progress,
    experts_per_token,
)
from mixtui.app.bench.report import Format, render
from mixtui.app.bench.runner import BenchRunner, read_text_file
from mixtui.cli.output import check_out, write_report
from mixtui.core.errors import UsageError


def parse_ks(text: str | None) -> tuple[int, ...]:
    """"1,2,4" -> (1, 2, 4); duplicates dropped, order kept."""
    if not text:
        return ()
    found: list[int] = []
    for part in text.split(","):
        try:
            k = int(part.strip())
        except ValueError:
            raise UsageError(f"--experts-per-token takes whole numbers separated by commas, "
                             f"such as 1,2,4, not {text!r}.", code="bad-option",
                             facts={"option": "--experts-per-token", "value": text}) from None
        if k not in found:
            found.append(k)
    return tuple(found)


def parse_models(text: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in text.split(",") if m.strip())


def read_prompt(prompt: str | None, prompt_file: Path | None) -> str | None:
    return prompt if prompt_file is None else read_text_file(prompt_file, "--prompt-file")


class _Terminal:
    """Progress on stderr: one line rewritten in a terminal, a line per stage otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self._last: tuple[object, ...] = ()
        self._failed: tuple[str, str | None] = ("", None)

    def progress(self, p: Progress) -> None:
        line = p.line()
        if self.tty:
            sys.stderr.write("\r\033[K" + line[:200])
            sys.stderr.flush()
            return
        # a line per stage (a run, a load), not one per token or layer
        if p.stage in ("loading", "building") and p.total and p.done not in (0, p.total):
            return
        stage = (p.model, p.index, p.detail, p.stage, p.run)
        if stage != self._last:
            print(line if p.stage in ("loading", "building", "probe")
                  else line.rsplit(", ", 1)[0] if p.total else line, file=sys.stderr)
            self._last = stage

    def row(self, row: BenchRow) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")
        k = f", {experts_per_token(row.experts_per_token)}" if row.experts_per_token else ""
        if row.ok and row.decode_tps is not None:
            mark = "≈ " if row.extrapolated else ""
            print(f"{row.model}{k}: {mark}{row.decode_tps.median:.3g} tokens/s decode",
                  file=sys.stderr)
        elif (row.model, row.error) != self._failed:  # a model's rows fail alike: once
            print(f"{row.model}: failed: {row.error}", file=sys.stderr)
            self._failed = (row.model, row.error)

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def run(request: BenchRequest, fmt: Format, out: Path | None) -> int:
    check_out(out)
    terminal = _Terminal()
    runner = BenchRunner(request, progress=terminal.progress, on_row=terminal.row)
    report = runner.run()
    terminal.done()
    write_report(render(report, fmt), out)
    if report.cancelled:
        print("mixtui: interrupted; the rows above are the ones finished.", file=sys.stderr)
        return 130
    return 0 if all(r.ok for r in report.rows) else 1
