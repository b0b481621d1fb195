"""The download screen: a model that is not on disk, fetched from the Hub with progress.

Offered when the user picks a model whose weights are not here. It asks the Hub what is
missing (a dry run), checks the disk, then runs the download in its own process
(mixtui.hub.download) and shows files, bytes, speed and ETA. Esc cancels within about a
second: finished files stay in the cache, partial ones are removed. It dismisses with True
when every file is here, so the app can load the model.
"""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import ProgressBar, Static

from mixtui.core.errors import MixtuiError
from mixtui.core.units import gb
from mixtui.hub.download import (
    Download,
    DownloadPlan,
    Outcome,
    Progress,
    check_disk,
    eta_text,
    fetch_summary,
    plan_download,
)
from mixtui.registry.spec import ModelSpec
from mixtui.tui.wording import say

TICK_S = 0.25
_MAX_FILES_SHOWN = 12


class DownloadScreen(ModalScreen[bool]):
    """Plan, confirm (Enter), download with progress, Esc to cancel."""

    BINDINGS = [Binding("enter", "start", "Download", priority=True),
                Binding("escape", "cancel", "Cancel", priority=True)]
    DEFAULT_CSS = """
    DownloadScreen { align: center middle; }
    DownloadScreen > Vertical {
        width: 90%; max-width: 100; height: auto; max-height: 90%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    DownloadScreen #dl-files { height: auto; max-height: 14; color: $text-muted; }
    DownloadScreen #dl-message { margin-top: 1; }
    DownloadScreen #dl-message.error { color: $error; }
    DownloadScreen ProgressBar { margin-top: 1; }
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        assert spec.repo is not None
        self.spec = spec
        self.plan: DownloadPlan | None = None
        self.download: Download | None = None
        self.outcome: Outcome | None = None
        self.state = "planning"  # planning, ready, downloading, failed, cancelling, done
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = f"download {self.spec.name}"
            box.border_subtitle = "Esc cancels · finished files are kept"
            yield Static(f"Asking the Hub what {self.spec.repo} holds…", id="dl-summary")
            yield ProgressBar(total=100, show_eta=False, id="dl-bar")
            yield Static("", id="dl-figures")
            yield Static("", id="dl-files")
            yield Static("", id="dl-message")

    def on_mount(self) -> None:
        self._make_plan()

    # -- planning (network: off the UI thread) ----------------------------------------------
    @work(thread=True, exclusive=True, group="download-plan", exit_on_error=False)
    def _make_plan(self) -> None:
        try:
            plan = plan_download(self.spec.repo or "", self.spec.revision)
            check_disk(plan)
        except MixtuiError as exc:
            self.app.call_from_thread(self._fail, say(exc))
            return
        except Exception as exc:  # a bug: say so without losing the app
            self.app.call_from_thread(self._fail, f"internal error: {exc!r}; please report it.")
            return
        self.app.call_from_thread(self._planned, plan)

    @property
    def _showing(self) -> bool:
        """Still the screen on top (a worker's answer may come after Esc closed it)."""
        return self.is_attached and self.app.screen is self

    def _planned(self, plan: DownloadPlan) -> None:
        if not self._showing:
            return
        self.plan = plan
        if not plan.to_fetch:
            self.state = "done"
            self.dismiss(True)
            return
        self.state = "ready"
        self.query_one("#dl-summary", Static).update(
            f"{self.spec.repo} @ {plan.commit[:10]}: {fetch_summary(plan)}, into the Hugging "
            "Face cache.")
        self._show_files(None)
        self._message("Enter downloads; Esc goes back.")

    # -- downloading ------------------------------------------------------------------------
    def action_start(self) -> None:
        if self.state not in ("ready", "failed") or self.plan is None:
            return
        self.state = "downloading"
        self.outcome = None
        self.download = Download(self.plan)
        self.download.start()
        self._message("Downloading… Esc cancels.")
        if self._timer is None:
            self._timer = self.set_interval(TICK_S, self._tick, name="download-progress")

    def _tick(self) -> None:
        download = self.download
        if download is None or self.state != "downloading":
            return
        outcome = download.poll()
        progress = download.progress()
        self._show_progress(progress)
        if outcome is None:
            return
        self.outcome = outcome
        if outcome.ok:
            self.state = "done"
            self.dismiss(True)
        else:
            self.state = "failed"
            assert outcome.error is not None
            self._fail(say(outcome.error) + " Enter tries again; Esc goes back.")

    def _show_progress(self, p: Progress) -> None:
        self.query_one(ProgressBar).update(progress=100 * p.fraction)
        speed = f"{gb(p.speed)}/s" if p.speed else "measuring speed"
        self.query_one("#dl-figures", Static).update(
            f"{gb(p.bytes_done)} / {gb(p.bytes_total)} · {speed} · ETA {eta_text(p.eta_s)} · "
            f"files {p.files_done}/{p.files_total}")
        self._show_files(p)

    def _show_files(self, p: Progress | None) -> None:
        assert self.plan is not None
        text = Text()
        snapshot = self.plan.snapshot
        shown = self.plan.to_fetch[:_MAX_FILES_SHOWN]
        for f in shown:
            if p is not None and f.path in p.active:
                mark, style = "↓", "bold"
            elif (snapshot / f.path).exists():
                mark, style = "✓", "green"
            else:
                mark, style = "·", ""
            text.append(f"{mark} {f.path}  {gb(f.size)}\n", style=style)
        more = len(self.plan.to_fetch) - len(shown)
        if more > 0:
            text.append(f"… and {more} more\n")
        self.query_one("#dl-files", Static).update(text)

    # -- leaving ----------------------------------------------------------------------------
    def action_cancel(self) -> None:
        if self.state == "downloading" and self.download is not None:
            self.state = "cancelling"
            self._message("Cancelling…")
            self._cancel_download()
        elif self.state != "cancelling":
            self.dismiss(False)

    @work(thread=True, exclusive=True, group="download-cancel", exit_on_error=False)
    def _cancel_download(self) -> None:
        assert self.download is not None
        outcome = self.download.cancel()
        self.app.call_from_thread(self._cancelled, outcome)

    def _cancelled(self, outcome: Outcome) -> None:
        self.outcome = outcome
        assert self.plan is not None
        self.app.notify(f"Download cancelled; {self.plan.finished()} of {len(self.plan.files)} "
                        "files are finished and kept; pick the model again to fetch the rest.")
        if self._showing:
            self.dismiss(False)

    def stop_soon(self) -> None:
        """Quitting: ask the download process to end, without waiting (see stop_now)."""
        if self.download is not None:
            self.download.stop_soon()

    def stop_now(self) -> None:
        """Quitting: end the download process at once (finished files stay)."""
        if self.download is not None and self.download.outcome is None:
            self.download.cancel()

    def on_unmount(self) -> None:
        self.stop_now()

    def _fail(self, text: str) -> None:
        if not self._showing:
            return
        self.state = "failed"
        self._message(text, error=True)

    def _message(self, text: str, error: bool = False) -> None:
        message = self.query_one("#dl-message", Static)
        message.update(text)
        message.set_class(error, "error")
