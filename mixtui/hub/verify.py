"""Check a cached snapshot against the sizes and hashes the Hub recorded; repair what is bad.

The record is huggingface_hub's own tree cache (`trees/<commit>.json`, written by every
`snapshot_download`): for each file its size, and its SHA-256 (LFS files) or git blob SHA-1
(others). So verification works offline after a download. Files found bad are remembered
(per snapshot, with their size and modification time) so that no model is loaded with a file
mixtui knows to be bad, until it is repaired or replaced.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from mixtui.hub.errors import HubError, describe
from mixtui.store.cache import cached_tree, resolve_commit, storage_dir
from mixtui.store.files import FileCheck, RemoteFile, check_file, needed
from mixtui.store.known_bad import remember

Status = Literal["ok", "missing", "truncated", "corrupt"]
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_CHUNK = 8 * 2**20


@dataclass(frozen=True)
class VerifyReport:
    repo: str
    commit: str
    snapshot: Path
    checks: tuple[FileCheck, ...]

    @property
    def bad(self) -> tuple[FileCheck, ...]:
        return tuple(c for c in self.checks if c.status != "ok")

    @property
    def ok(self) -> bool:
        return not self.bad


def expected_files(repo: str, revision: str | None, *, offline: bool,
                   label: str | None = None) -> tuple[str, list[RemoteFile]]:
    """The files MLX needs, with the size and hash the Hub gave for them.

    `label`: what the user called the model (a registry key), for the messages."""
    commit = resolve_commit(repo, revision)
    files = cached_tree(repo, commit) if commit is not None else None
    if files is None:
        if offline:
            where = "nothing of it is cached" if commit is None else "its file list is not cached"
            raise HubError(f"{repo} cannot be checked offline: {where}; run `mixtui download "
                           f"{label or repo}` while online first.")
        # deferred: huggingface_hub's API modules take about a second to import
        from huggingface_hub import HfApi
        from huggingface_hub.hf_api import RepoFile

        try:
            api = HfApi()
            commit = commit or api.repo_info(repo, revision=revision).sha
            assert commit is not None
            files = [RemoteFile.from_tree(e)
                     for e in api.list_repo_tree(repo, revision=commit, recursive=True)
                     if isinstance(e, RepoFile)]
        except Exception as exc:
            raise describe(exc, repo, revision) from exc
    assert commit is not None
    return commit, needed(sorted(files, key=lambda f: f.path))


def verify(repo: str, revision: str | None = None, *, offline: bool = False,
           progress: Callable[[str, int], None] | None = None,
           label: str | None = None) -> VerifyReport:
    """Check every file of the snapshot; `progress(path, nbytes)` as bytes are hashed."""
    commit, files = expected_files(repo, revision, offline=offline, label=label)
    snapshot = storage_dir(repo) / "snapshots" / commit
    checks = []
    for file in files:
        hook = None if progress is None else (lambda n, p=file.path: progress(p, n))
        checks.append(check_file(snapshot, file, hook))
    report = VerifyReport(repo, commit, snapshot, tuple(checks))
    remember(report.snapshot, report.bad)
    return report


def discard_bad(report: VerifyReport) -> list[RemoteFile]:
    """Remove each bad file's link and bad blob, so that a download puts it right.

    A missing link whose blob is still in the cache and intact is only linked again (by the
    download, without fetching); a blob that is not intact is removed and fetched again.
    """
    again = []
    blobs = report.snapshot.parent.parent / "blobs"
    for check in report.bad:
        link = report.snapshot / check.path
        f = check.file
        blob = blobs / f.etag
        if link.is_symlink():
            with contextlib.suppress(OSError):
                blob = link.resolve(strict=True)
        intact = check.status == "missing" and check_file(
            blobs, replace(f, path=blob.name)).status == "ok"
        try:
            if blob.parent == blobs and blob.is_file() and not intact:
                blob.unlink(missing_ok=True)
            link.unlink(missing_ok=True)
        except OSError as exc:
            raise HubError(f"Cannot remove the bad file {link} ({exc.strerror}); check that the "
                           "cache is writable for you, and run the command again.") from None
        again.append(replace(f, cached=intact, linked=False))
    return again


