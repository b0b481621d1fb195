"""`mixtui download KEY|REPO` and `mixtui verify KEY|REPO [--repair]`."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from mixtui.core.errors import UsageError
from mixtui.core.units import gb
from mixtui.hub.download import (
    Download,
    DownloadPlan,
    Outcome,
    Progress,
    check_disk,
    eta_text,
    fetch_summary,
    files_text,
    plan_download,
)
from mixtui.hub.errors import HubError
from mixtui.hub.verify import discard_bad, expected_files, verify
from mixtui.registry.loader import load_registry
from mixtui.registry.local import REPO_ID
from mixtui.store.cache import resolve_commit, storage_dir


@dataclass(frozen=True)
class Target:
    repo: str
    revision: str | None
    label: str  # what to call it in messages: the registry key, or the repo id


def target(name: str, revision: str | None, action: str = "download") -> Target:
    """A registry key or a Hub repo id; --revision overrides the registry's revision."""

    registry = load_registry()
    spec = registry.get(name)
    if spec is not None:
        if spec.repo is None:
            what = "is bundled with mixtui" if spec.bundled else f"is a local folder ({spec.path})"
            raise UsageError(f"{name} {what}, so there is nothing to {action}; use it as it is.")
        return Target(spec.repo, revision or spec.revision, name)
    if REPO_ID.match(name):
        return Target(name, revision, name)
    raise UsageError(f"Unknown model '{name}'; give a key from `mixtui models` ("
                     f"{', '.join(registry)}) or a Hub repo id (org/name).")


def offline_mode(flag: bool) -> bool:
    # deferred: only the download commands need huggingface_hub
    from huggingface_hub import constants

    return flag or bool(constants.HF_HUB_OFFLINE)


def progress_line(p: Progress) -> str:
    active = f"  {p.active[0]}" if p.active else ""
    if len(p.active) > 1:
        active += f" (+{len(p.active) - 1})"
    return (f"{p.fraction * 100:5.1f}%  {gb(p.bytes_done)} / {gb(p.bytes_total)}  "
            f"{gb(p.speed) + '/s' if p.speed else 'speed --'}  ETA {eta_text(p.eta_s)}  "
            f"files {p.files_done}/{p.files_total}{active}")


class _Reporter:
    """Progress on stderr: one rewritten line on a terminal, a line a second otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def show(self, p: Progress, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < (0.2 if self.tty else 1.0):
            return
        self.last = now
        if self.tty:
            print(f"\r\033[K{progress_line(p)}", end="", file=sys.stderr, flush=True)
        else:
            print(progress_line(p), file=sys.stderr, flush=True)

    def end(self) -> None:
        if self.tty:
            print(file=sys.stderr)


def run_download(plan: DownloadPlan, files: list | None = None) -> Outcome:
    """Run the download with progress on stderr; ctrl+c cancels it (within 2 s)."""
    download = Download(plan, files)
    reporter = _Reporter()
    try:
        download.start()
        while (outcome := download.poll()) is None:
            reporter.show(download.progress())
            time.sleep(0.1)
        reporter.show(download.progress(), force=True)
    except KeyboardInterrupt:
        outcome = download.cancel()
    reporter.end()
    return outcome


def _report_failure(outcome: Outcome, plan: DownloadPlan) -> int:
    if outcome.cancelled:
        removed = (f"; removed the partial file(s) {', '.join(outcome.removed_partials)}"
                   if outcome.removed_partials else "")
        print(f"mixtui: download cancelled; {plan.finished()} of {len(plan.files)} files are "
              f"finished and kept{removed}; run the same command to fetch the rest.",
              file=sys.stderr)
        return 130
    assert outcome.error is not None
    raise outcome.error


def run(name: str, revision: str | None, offline: bool) -> int:
    t = target(name, revision)
    if offline_mode(offline):
        return _offline(t)
    plan = plan_download(t.repo, t.revision)
    print(f"{t.label}: {t.repo} @ {t.revision or 'main'} (commit {plan.commit[:10]}): "
          f"{len(plan.files)} files, {gb(plan.bytes_total)}", file=sys.stderr)
    if not plan.to_fetch:
        print(f"All {len(plan.files)} files are already here, in {plan.snapshot}; nothing to "
              "fetch.", file=sys.stderr)
        return 0
    print(fetch_summary(plan), file=sys.stderr)
    check_disk(plan)
    outcome = run_download(plan)
    if not outcome.ok:
        return _report_failure(outcome, plan)
    print(f"done: {len(plan.files)} files in {outcome.snapshot}; check them any time with "
          f"`mixtui verify {t.label}`.", file=sys.stderr)
    return 0


def _offline(t: Target) -> int:
    """Offline: say what the cache holds; fetch nothing."""

    commit = resolve_commit(t.repo, t.revision)
    if commit is None:
        raise HubError(f"Offline, and nothing of {t.repo} is cached; connect to the network and "
                       f"run `mixtui download {t.label}` without --offline (and with "
                       "HF_HUB_OFFLINE unset).")
    _, files = expected_files(t.repo, t.revision, offline=True, label=t.label)
    snapshot = storage_dir(t.repo) / "snapshots" / commit
    missing = [f.path for f in files if not (snapshot / f.path).exists()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5
                                           else "")
        raise HubError(f"Offline, and {len(missing)} of {len(files)} files of {t.repo} are not "
                       f"cached ({shown}); connect and run `mixtui download {t.label}` to "
                       "fetch them.")
    print(f"Offline: all {len(files)} files of {t.repo} are cached, in {snapshot}.",
          file=sys.stderr)
    return 0


def run_verify(name: str, revision: str | None, repair: bool, offline: bool) -> int:

    t = target(name, revision, "verify")
    offline = offline_mode(offline)
    reporter = _HashReporter()
    report = verify(t.repo, t.revision, offline=offline, progress=reporter.update,
                    label=t.label)
    reporter.end()
    for check in report.checks:
        print(check.describe())
    if report.ok:
        print(f"{t.label}: all {len(report.checks)} files check out (size and hash).",
              file=sys.stderr)
        return 0
    if not repair:
        print(f"mixtui: {len(report.bad)} of {len(report.checks)} files of {t.label} are bad; "
              f"run `mixtui verify {t.label} --repair` to fetch them again.", file=sys.stderr)
        return 1
    if offline:
        raise HubError(f"{len(report.bad)} files of {t.label} are bad and cannot be fetched "
                       f"offline; connect and run `mixtui verify {t.label} --repair`.")
    again = discard_bad(report)
    plan = plan_download(t.repo, report.commit, only=[f.path for f in again])
    print(f"repairing {files_text(len(plan.files))}: {fetch_summary(plan)}", file=sys.stderr)
    check_disk(plan)
    outcome = run_download(plan)  # a blob that is intact is only linked again
    if not outcome.ok:
        return _report_failure(outcome, plan)
    report = verify(t.repo, report.commit, offline=True)
    for check in report.checks:
        if check.path in {f.path for f in again}:
            print(check.describe().replace(": ok", ": repaired"))
    if report.ok:
        print(f"{t.label}: repaired; all {len(report.checks)} files check out.", file=sys.stderr)
        return 0
    print(f"mixtui: {len(report.bad)} files are still bad after fetching them again; the Hub "
          "may be serving a different file than it lists; try again later.", file=sys.stderr)
    return 1


class _HashReporter:
    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.done = 0
        self.last = 0.0

    def update(self, path: str, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.tty and now - self.last > 0.2:
            self.last = now
            print(f"\r\033[Khashing {path}  {gb(self.done)}", end="", file=sys.stderr,
                  flush=True)

    def end(self) -> None:
        if self.tty and self.done:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
