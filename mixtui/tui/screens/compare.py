"""The compare screen: several models, and experts-per-token values, timed side by side.

What `mixtui bench` measures (`app/bench/`), in the TUI: pick models (on disk, bundled, or
synthetic: random weights in the real checkpoint's layout, optionally only the first N
layers, scaled to the full depth) and experts-per-token values; run with progress; cancel;
read the table with bars, the sentences that answer the question and a chart of decode
speed against active and against total parameters; export Markdown, CSV or JSON
(`app/bench/report.py`).

The chat's engine is stopped for the run, since every model needs the memory, and started
again after it with the conversation kept (`MainScreen.suspend_engine`, `resume_engine`).
`BenchRunner.run` blocks, so a thread worker waits for it; the runner itself runs on the
app's spawner thread, which kept the normal priority the UI thread gave up (`app.py`), so
that its engines are timed as `mixtui bench` times them. Progress, rows and the end come
back as messages (post_message never blocks, even while the app quits).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.events import Resize
from textual.message import Message
from textual.reactive import var
from textual.screen import Screen
from textual.widgets import (
    Button,
    Checkbox,
    DataTable,
    Footer,
    Input,
    Label,
    ProgressBar,
    SelectionList,
    Static,
)
from textual.widgets.selection_list import Selection

from mixtui.app.bench.figures import (
    BenchReport,
    BenchRequest,
    BenchRow,
    Progress,
    check_request,
    findings,
)
from mixtui.app.bench.report import COLUMNS, Format, cells, render
from mixtui.app.bench.runner import BenchRunner
from mixtui.core.errors import MixtuiError, UsageError
from mixtui.core.files import atomic_write_text
from mixtui.core.units import gb
from mixtui.tui.screens.dialogs import AskScreen
from mixtui.tui.widgets.bars import bar as eighths_bar
from mixtui.tui.wording import say

if TYPE_CHECKING:
    from mixtui.engine.client import EngineProcess  # loads with the first engine
    from mixtui.tui.app import MixtuiApp

GEN_TOKENS = 32  # small defaults: a comparison in the TUI should take seconds, not minutes
RUNS = 2
BAR_WIDTH = 8
NARROW = 110  # below this many columns the two charts stand one above the other
CHART_HEIGHT = 13
DEFAULT_EXPORT = "mixtui-compare.md"  # in the current folder
EXPORTS: dict[str, Format] = {".md": "md", ".markdown": "md", ".csv": "csv", ".json": "json",
                              ".txt": "table"}
# The table's columns (report.COLUMNS names), the three with bars first after the key.
SHOWN = ("model", "k", "decode tok/s", "peak mem", "300-token wait", "TTFT s",
         "prompt tok/s", "params (active)", "weights", "GB/s", "roofline", "perplexity", "note")
BARRED = {"decode tok/s": "green", "peak mem": "magenta", "300-token wait": "yellow"}
# check_request words a problem in the command line's options; the screen names its fields.
_FIELDS = (("add --synthetic", "tick “synthetic”"), ("--synthetic", "“synthetic”"),
           ("--gen-tokens", "“generated tokens”"), ("--runs", "“runs”"),
           ("--layers", "“layers”"), ("--experts-per-token", "“experts per token”"),
           ("--prompt-tokens", "the prompt's length"), ("; --probe measures again", ""))


# -- pure parts --------------------------------------------------------------------------------
def bar(value: float | None, largest: float, width: int = BAR_WIDTH) -> str:
    """`value` as a bar of `width` cells at most (`widgets/bars.py`); "" for no value."""
    return eighths_bar(value, largest, width)


def screen_fields(text: str) -> str:
    """`text` with the command line's options named as the screen's fields."""
    for option, field in _FIELDS:
        text = text.replace(option, field)
    return text


def in_screen_words(text: str) -> str:
    """A request problem as check_request words it, with the screen's field names."""
    text = screen_fields(text)
    if text.startswith("“"):
        return "“" + text[1:2].upper() + text[2:]
    return text[:1].upper() + text[1:]


def _whole(text: str, field: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"“{field}” takes a whole number, not {text!r}.", code="bad-option",
                         facts={"option": field}) from None


def parse_request(models: Sequence[str], synthetic: bool, layers: str, experts: str,
                  gen_tokens: str, runs: str) -> BenchRequest:
    """The screen's fields as a checked BenchRequest; a UsageError in the screen's words."""
    if not models:
        raise UsageError("Pick at least one model: space (or a click) ticks it in the list.",
                         code="bad-option", facts={"option": "models"})
    ks: list[int] = []
    for part in experts.replace(",", " ").split():
        try:
            ks.append(int(part))
        except ValueError:
            raise UsageError("“Experts per token” takes whole numbers separated by commas "
                             f"(1,2,4), not {experts.strip()!r}.", code="bad-option",
                             facts={"option": "experts per token"}) from None
    gen = _whole(gen_tokens, "generated tokens")
    count = _whole(runs, "runs")
    request = BenchRequest(models=tuple(models), synthetic=synthetic,
                           layers=_whole(layers, "layers"),
                           gen_tokens=GEN_TOKENS if gen is None else gen,
                           runs=RUNS if count is None else count,
                           experts_per_token=tuple(dict.fromkeys(ks)))
    try:
        check_request(request)
    except UsageError as exc:
        raise UsageError(in_screen_words(str(exc)), code=exc.code,
                         facts=dict(exc.facts)) from None
    return request


def export_format(path: str) -> Format | None:
    """The format a file name asks for by its suffix, or None."""
    return EXPORTS.get(Path(path.strip()).suffix.lower())


def _decade(exponent: int) -> str:
    value = 10 ** exponent
    for size, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:.0f} {unit}"
    return str(value)


def chart(points: Sequence[tuple[str, float, float]], axis: str, span: tuple[float, float],
          width: int, height: int = CHART_HEIGHT) -> str:
    """A scatter chart (ANSI colours) of decode tokens/s against parameters on a log axis:
    `points` are (label, parameters, tokens/s); `span` the parameters the x axis covers (the
    same for both charts, so that they compare)."""
    # deferred: plotext takes more than half a second to import; only this chart needs it
    import plotext as plt

    # plotext draws on one global figure: cleared here, built on the UI thread only
    fig = plt.figure
    fig.clear()
    plt.terminal.limit(False, False)  # the widget's size, not the terminal's
    fig.plot_size(max(width, 24), max(height, 8))
    fig.theme("simple")  # no backgrounds: the terminal's own, as the rest of the screen
    lo = math.floor(math.log10(max(span[0], 1.0)))
    hi = max(math.ceil(math.log10(max(span[1], 1.0))), lo + 1)
    xs = [math.log10(max(p, 1.0)) for _, p, _ in points]
    ys = [tps for _, _, tps in points]
    fig.draw(fig.signal(xs, ys, marker="●"))
    step = (hi - lo) / max(width - 8, 8)  # one character along x, in decades
    for (label, _, _), x, y in zip(points, xs, ys, strict=True):
        right_half = x > (lo + hi) / 2
        fig.draw(fig.text(x - 2 * step if right_half else x + 2 * step, y, label,
                          alignment="right" if right_half else "left"))
    fig.ruler("x").ticks(list(range(lo, hi + 1)), [_decade(e) for e in range(lo, hi + 1)])
    fig.ruler("x").lim(lo, hi)
    fig.ruler("y").lim(0, max(ys) * 1.2 if ys else 1.0)
    fig.title(f"decode tok/s against {axis} parameters")
    return str(fig.build().string())


# -- the screen --------------------------------------------------------------------------------
class CompareScreen(Screen[None]):
    """Pick models and experts per token, run, read the table and the chart, export.

    `catalogue`: the registry's catalogue rows (`app/catalog.describe`), in registry order;
    `preselect`: the model ticked at first (the chat's)."""

    app: MixtuiApp
    BINDINGS = [
        Binding("ctrl+r", "run", "Run", priority=True),
        Binding("ctrl+e", "export", "Export", priority=True),
        # the app's own Esc (stop the answer) waits while this screen is up: this one acts
        Binding("escape", "leave", "Cancel / close"),
    ]
    DEFAULT_CSS = """
    CompareScreen #compare-body { height: 1fr; }
    CompareScreen #compare-setup { height: auto; }
    CompareScreen #compare-models { width: 1fr; height: 9; border: round $accent; }
    CompareScreen #compare-options { width: 62; height: auto; padding: 0 1; }
    CompareScreen .field { height: 1; }
    CompareScreen .field Label { width: 20; }
    CompareScreen .field Input { width: 1fr; }
    CompareScreen #compare-synthetic { margin-bottom: 1; }
    CompareScreen #compare-buttons { height: 1; margin: 1 0 0 0; }
    CompareScreen #compare-buttons Button { width: auto; min-width: 10; margin-right: 2; }
    CompareScreen #compare-message { height: auto; }
    CompareScreen #compare-message.error { color: $error; }
    CompareScreen #compare-progress-row { height: 1; }
    CompareScreen #compare-bar { width: 34; }
    CompareScreen #compare-progress { width: 1fr; color: $text-muted; }
    CompareScreen #compare-table { height: auto; max-height: 16; margin-top: 1; }
    CompareScreen #compare-findings { height: auto; margin-top: 1; }
    CompareScreen #compare-charts { height: auto; margin-top: 1; }
    CompareScreen #compare-charts Static { width: 1fr; height: auto; }
    CompareScreen.narrow #compare-charts { layout: vertical; }
    CompareScreen.narrow #compare-setup { layout: vertical; }
    CompareScreen.narrow #compare-options { width: 100%; }
    """

    # A run is going (its runner is `_runner`): the buttons follow.
    running: var[bool] = var(False, init=False)

    class ProgressMade(Message):
        """The runner is at a new stage, model, run or token count."""

        def __init__(self, progress: Progress) -> None:
            super().__init__()
            self.progress = progress

        def can_replace(self, message: Message) -> bool:
            # a newer position makes an unread one meaningless
            return isinstance(message, CompareScreen.ProgressMade)

    class RowMeasured(Message):
        """A row is finished: measured, or failed with its reason."""

        def __init__(self, row: BenchRow) -> None:
            super().__init__()
            self.row = row

    class RunEnded(Message):
        """The run is over: its report (done or cancelled), or the reason it failed."""

        def __init__(self, report: BenchReport | None, error: str | None = None) -> None:
            super().__init__()
            self.report = report
            self.error = error

    def __init__(self, catalogue: list[dict[str, Any]], preselect: str | None = None) -> None:
        super().__init__()
        self.catalogue = catalogue
        self.preselect = preselect
        self.rows: list[BenchRow] = []
        self.report: BenchReport | None = None
        self.message_text = ""  # what the message line says (tests read it)
        self.progress: Progress | None = None  # where the run is, as last shown
        self.cancel_asked: float | None = None  # monotonic times: how fast a cancel is
        self.run_returned: float | None = None
        self._runner: BenchRunner | None = None
        self._restart = False  # the chat's engine was running: start it again after the run

    # -- layout ------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with VerticalScroll(id="compare-body"):
            with Horizontal(id="compare-setup"):
                yield SelectionList[str](*self._options(), id="compare-models")
                with Vertical(id="compare-options"):
                    yield Checkbox("synthetic (random weights, nothing downloaded)",
                                   id="compare-synthetic", compact=True)
                    for label, ident, value, hint in (
                            ("layers", "layers", "", "all (synthetic: e.g. 2)"),
                            ("experts per token", "k", "", "each model's own, or 1,2,4"),
                            ("generated tokens", "gen", str(GEN_TOKENS), ""),
                            ("runs", "runs", str(RUNS), "")):
                        with Horizontal(classes="field"):
                            yield Label(label)
                            yield Input(value, placeholder=hint, id=f"compare-{ident}",
                                        compact=True)
                    with Horizontal(id="compare-buttons"):
                        yield Button("Run", id="compare-run", variant="primary", compact=True)
                        yield Button("Cancel", id="compare-cancel", compact=True,
                                     disabled=True)
                        yield Button("Export…", id="compare-export", compact=True)
            yield Static("", id="compare-message")
            with Horizontal(id="compare-progress-row"):
                yield ProgressBar(total=None, show_eta=False, id="compare-bar")
                yield Label("", id="compare-progress")
            yield DataTable(id="compare-table", cursor_type="row", zebra_stripes=True)
            yield Static("", id="compare-findings")
            with Horizontal(id="compare-charts"):
                yield Static("", id="compare-chart-active")
                yield Static("", id="compare-chart-total")
        yield Footer()

    def _options(self) -> list[Selection[str]]:
        states = {"bundled": "bundled", "complete": "on disk", "partial": "partial",
                  "absent": "not here"}
        fits = {"tight": " · tight", "does-not-fit": " · too big"}
        width = max((len(r["key"]) for r in self.catalogue), default=10)
        options = []
        for row in self.catalogue:
            state = states.get(row.get("state", ""), row.get("state", ""))
            family = "" if row.get("family") else " · no family: not synthetic"
            size = gb(row["weight_bytes"]) if row.get("weight_bytes") else "?"
            label = (f"{row['key']:<{width}}  {state}, {size}{fits.get(row.get('fit', ''), '')}"
                     f"{family}")
            options.append(Selection(label, row["key"], row["key"] == self.preselect))
        return options

    def on_mount(self) -> None:
        models = self.query_one("#compare-models", SelectionList)
        models.border_title = "models (space ticks; run in the order ticked)"
        self.query_one("#compare-table").border_title = "results"
        self.query_one("#compare-bar", ProgressBar).display = False
        self._layout(self.app.size.width)
        self._show_rows()
        models.focus()

    def on_resize(self, event: Resize) -> None:
        self._layout(event.size.width)

    def _layout(self, width: int) -> None:
        self.set_class(width < NARROW, "narrow")
        self.call_after_refresh(self._show_charts)  # at the charts' new width

    def watch_running(self, running: bool) -> None:
        self.query_one("#compare-run", Button).disabled = running
        self.query_one("#compare-cancel", Button).disabled = not running
        self.query_one("#compare-export", Button).disabled = running
        self.query_one("#compare-bar", ProgressBar).display = running

    def say(self, text: str, error: bool = False) -> None:
        """One sentence on the message line (an error in the error colour)."""
        self.message_text = text
        line = self.query_one("#compare-message", Static)
        line.update(text)
        line.set_class(error, "error")

    # -- running -----------------------------------------------------------------------------
    def request(self) -> BenchRequest:
        """The fields as a checked request (UsageError: the sentence to show)."""
        return parse_request(
            self.query_one("#compare-models", SelectionList).selected,
            self.query_one("#compare-synthetic", Checkbox).value,
            self.query_one("#compare-layers", Input).value,
            self.query_one("#compare-k", Input).value,
            self.query_one("#compare-gen", Input).value,
            self.query_one("#compare-runs", Input).value)

    def action_run(self) -> None:
        if self.running:
            self.say("A run is going; Esc (or Cancel) stops it.")
            return
        try:
            request = self.request()
        except UsageError as exc:
            self.say(say(exc), error=True)
            return
        if self.app.force:  # `mixtui --force`: models that do not fit load anyway, here too
            request = dataclasses.replace(request, force=True)
        main = self.app.main
        if main.controller.generating:
            self.say("The chat is still answering; wait for the answer (or close this screen "
                     "and press Esc to stop it), then run.", error=True)
            return
        def progress(p: Progress) -> None:  # both from the runner's thread
            self.post_message(self.ProgressMade(p))

        def on_row(row: BenchRow) -> None:
            self.post_message(self.RowMeasured(row))

        runner = BenchRunner(request, progress=progress, on_row=on_row,
                             registry=main.registry())
        old, self._restart = main.suspend_engine()
        self.rows, self.report, self.progress = [], None, None
        self.cancel_asked = self.run_returned = None
        self._runner = runner
        self.running = True
        self._show_rows()
        self.query_one("#compare-progress", Label).update("stopping the chat's engine…")
        self.say(f"Running {len(request.models)} model{'s' if len(request.models) > 1 else ''}"
                 "; Esc cancels (the rows finished stay).")
        self._run(runner, old, self.app.at_normal_priority)
        # on a small terminal the results are below the fields: bring them into view
        self.call_after_refresh(self._scroll_to_results)

    def _scroll_to_results(self) -> None:
        body = self.query_one("#compare-body", VerticalScroll)
        body.scroll_to_widget(self.query_one("#compare-message"), top=True, animate=False)

    @work(thread=True, exclusive=True, exit_on_error=False, group="compare",
          description="end the chat's engine, then time each model in an engine of its own")
    def _run(self, runner: BenchRunner, old: EngineProcess | None,
             at_normal_priority: Callable[[Callable[[], BenchReport]], BenchReport]) -> None:
        def job() -> BenchReport:
            if old is not None:  # all its memory goes back before the first model loads
                old.close()  # its reader thread may still wait on it: EngineProcess allows it
            return runner.run()

        try:
            report = at_normal_priority(job)
            self.run_returned = time.monotonic()
        except MixtuiError as exc:
            self.post_message(self.RunEnded(None, say(exc)))
        except Exception as exc:  # a bug, or the app quitting: said; the chat comes back
            self.post_message(self.RunEnded(None, f"The run stopped: internal error {exc!r}; "
                                                  "please report it."))
        else:
            self.post_message(self.RunEnded(report))

    def action_cancel(self) -> None:
        runner = self._runner
        if runner is None or not self.running:
            self.say("Nothing is running.")
            return
        self.cancel_asked = time.monotonic()
        self.say("Cancelling: the current engine ends within a second…")
        # Here, though it waits up to half a second for the engine to end: a thread started
        # from the UI thread shares its lowest priority and may wait longer than that for a
        # core the engine holds; and the UI gets little time until that engine is gone anyway.
        runner.cancel()

    def action_leave(self) -> None:
        """Esc: cancel a run (its finished rows stay to read), or close the screen."""
        if self.running:
            self.action_cancel()
        else:
            self.dismiss(None)

    def stop_run(self) -> None:
        """The app is quitting (or the screen goes): end the run's engine now."""
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()

    def on_unmount(self) -> None:
        self.stop_run()

    @on(ProgressMade)
    def _progress(self, message: ProgressMade) -> None:
        if not self.running:
            return
        p = self.progress = message.progress
        bar_ = self.query_one("#compare-bar", ProgressBar)
        if p.total:
            bar_.update(total=p.total, progress=p.done)
        else:
            bar_.update(total=None)
        self.query_one("#compare-progress", Label).update(screen_fields(p.line()))

    @on(RowMeasured)
    def _row(self, message: RowMeasured) -> None:
        self.rows.append(message.row)
        self._show_rows()
        if len(self.rows) == 1:  # the results have grown below the fields: into view
            self.call_after_refresh(self._scroll_to_results)

    @on(RunEnded)
    def _ended(self, message: RunEnded) -> None:
        self.running = False
        self._runner = None
        report = message.report
        if report is not None:
            self.report = report
            self.rows = list(report.rows)
        self._show_rows()
        self.query_one("#compare-progress", Label).update("")
        if message.error is not None:
            self.say(message.error, error=True)
        elif report is not None and report.cancelled:
            n = len(report.rows)
            self.say(f"Cancelled; the {n} finished row{'' if n == 1 else 's'} "
                     f"{'is' if n == 1 else 'are'} kept.")
        else:
            ok = sum(1 for r in self.rows if r.ok)
            self.say(f"Done: {ok} of {len(self.rows)} rows measured; ctrl+e exports them.")
        if self._restart:
            self._restart = False
            self.app.main.resume_engine()

    # -- results -----------------------------------------------------------------------------
    def _show_rows(self) -> None:
        self._show_table()
        self._show_findings()
        self._show_charts()

    def _show_table(self) -> None:
        table = self.query_one("#compare-table", DataTable)
        table.clear(columns=True)
        rows = self._table_rows()
        # Widths given, not measured by the table: its own measure comes on a later idle,
        # which a small terminal's screen did not always repaint (cells cut to the labels).
        for i, name in enumerate(SHOWN):
            table.add_column(name, width=max([cell_len(name)] + [
                cell_len(str(r[i])) for r in rows]))  # str of a Text: its plain text
        for cells_ in rows:
            table.add_row(*cells_)

    def _table_rows(self) -> list[list[Text | str]]:
        """The table's cells per row: report.cells', bars after the three figures."""
        if not self.rows:
            return []
        largest = {
            "decode tok/s": max((r.decode_tps.median for r in self.rows
                                 if r.ok and r.decode_tps is not None), default=0.0),
            "peak mem": float(max((r.peak_memory_bytes or 0 for r in self.rows if r.ok),
                                     default=0)),
            "300-token wait": max((r.answer_300_s or 0.0 for r in self.rows if r.ok),
                                    default=0.0)}
        out: list[list[Text | str]] = []
        for row in self.rows:
            by_name = dict(zip(COLUMNS, cells(row, compact=True), strict=True))
            values = {"decode tok/s": row.decode_tps.median if row.decode_tps else None,
                      "peak mem": row.peak_memory_bytes, "300-token wait": row.answer_300_s}
            shown: list[Text | str] = []
            for name in SHOWN:
                text = by_name[name]
                if name in BARRED and row.ok:
                    value = values[name]
                    cell = Text(text + " ")
                    cell.append(bar(float(value) if value is not None else None,
                                    largest[name]).ljust(BAR_WIDTH), style=BARRED[name])
                    shown.append(cell)
                elif name == "note" and not row.ok:
                    shown.append(Text(screen_fields(text), style="red"))
                else:
                    shown.append(text)
            out.append(shown)
        return out

    def _show_findings(self) -> None:
        text = Text()
        if self.rows:
            said = self.report.findings if self.report is not None else findings(self.rows)
            for sentence in said:
                text.append(sentence + "\n")
            for row in self.rows:
                if not row.ok:
                    text.append(f"{row.model}", style="bold")
                    text.append(f": failed: {screen_fields(row.error or '')}\n", style="red")
            if self.report is not None:
                text.append(f"machine: {self.report.machine.summary}\n", style="dim")
        self.query_one("#compare-findings", Static).update(text)

    def _points(self) -> tuple[list[tuple[str, float, float]], list[tuple[str, float, float]]]:
        """(label, active parameters, tok/s) and (label, total parameters, tok/s) per ok row."""
        ok = [r for r in self.rows if r.ok and r.decode_tps is not None]
        several = {r.model for r in ok if sum(1 for o in ok if o.model == r.model) > 1}

        def label(row: BenchRow) -> str:
            return row.model + (f" k{row.experts_per_token}" if row.model in several else "")

        active = [(label(r), float(r.active_params), r.decode_tps.median)  # type: ignore[union-attr]
                  for r in ok]
        total = [(label(r), float(r.total_params), r.decode_tps.median)  # type: ignore[union-attr]
                 for r in ok]
        return active, total

    def _show_charts(self) -> None:
        left = self.query_one("#compare-chart-active", Static)
        right = self.query_one("#compare-chart-total", Static)
        active, total = self._points()
        if not active:
            left.update(Text("The chart of decode tok/s against active and total parameters "
                             "comes with the first measured row.", style="dim"))
            right.update("")
            return
        box = self.query_one("#compare-charts")
        width = box.size.width or self.app.size.width - 2
        each = width if self.has_class("narrow") else (width - 1) // 2
        params = [p for _, p, _ in active + total]
        span = (min(params), max(params))
        left.update(Text.from_ansi(chart(active, "active", span, each)))
        right.update(Text.from_ansi(chart(total, "total", span, each)))

    def chart_text(self) -> str:
        """The two charts' plain text (tests read it)."""
        return "\n".join(str(self.query_one(f"#compare-chart-{axis}", Static).render())
                         for axis in ("active", "total"))

    # -- export ------------------------------------------------------------------------------
    def action_export(self) -> None:
        if self.running:
            self.say("Wait for the run to end (or Esc to cancel it), then export.")
            return
        report = self.report
        if report is None or not report.rows:
            self.say("Nothing to export yet: run a comparison first (ctrl+r).")
            return

        def check(text: str) -> str | None:
            if export_format(text) is None:
                return ("End the file name in .md (Markdown), .csv or .json (.txt: the text "
                        "table).")
            return None

        def done(path: str | None) -> None:
            if path and path.strip():
                self.export(report, path.strip())

        self.app.push_screen(AskScreen("export the comparison",
                                       "File: .md (Markdown), .csv or .json",
                                       DEFAULT_EXPORT, check), done)

    def export(self, report: BenchReport, path: str) -> Path | None:
        """Write `report` to `path` in the format its suffix names; the file, or None (said)."""
        fmt = export_format(path)
        assert fmt is not None
        where = Path(path).expanduser().absolute()
        try:
            atomic_write_text(where, render(report, fmt))
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            self.say(f"Not exported: {where} cannot be written ({why}); give a path in a "
                     "folder you can write to.", error=True)
            return None
        self.say(f"Exported {len(report.rows)} rows to {where}.")
        return where

    @on(Button.Pressed, "#compare-run")
    def _run_pressed(self) -> None:
        self.action_run()

    @on(Button.Pressed, "#compare-cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    @on(Button.Pressed, "#compare-export")
    def _export_pressed(self) -> None:
        self.action_export()

