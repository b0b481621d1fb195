"""Check a cached snapshot against the sizes and hashes the Hub recorded; repair what is bad.

The record is huggingface_hub's own tree cache (`trees/<commit>.json`, written by every
`snapshot_download`): for each file its size, and its SHA-256 (LFS files) or git blob SHA-1
(others). So verification works offline after a download. Files found bad are remembered
(per snapshot, with their size and modification time) so that no model is loaded with a file
mixtui knows to be bad, until it is repaired or replaced.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from mixtui.hub.cache import resolve_commit, storage_dir
from mixtui.hub.download import RemoteFile, needed
from mixtui.hub.errors import HubError, describe

Status = Literal["ok", "missing", "truncated", "corrupt"]
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_CHUNK = 8 * 2**20


@dataclass(frozen=True)
class FileCheck:
    file: RemoteFile
    status: Status
    actual_size: int | None = None

    @property
    def path(self) -> str:
        return self.file.path

    def describe(self) -> str:
        f = self.file
        if self.status == "missing":
            return f"{f.path}: missing"
        if self.status == "truncated":
            return f"{f.path}: truncated ({self.actual_size:,} of {f.size:,} bytes)"
        if self.status == "corrupt":
            algo = "SHA-256" if f.lfs else "git SHA-1"
            size = ("same size" if self.actual_size == f.size
                    else f"{self.actual_size:,} bytes, expected {f.size:,}")
            return f"{f.path}: corrupt ({algo} does not match, {size})"
        return f"{f.path}: ok"


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


def cached_tree(repo: str, commit: str) -> list[RemoteFile] | None:
    """The file list huggingface_hub recorded for `commit` (`trees/<commit>.json`), or None.

    Read directly: `get_cached_repo_tree` drops the LFS SHA-256 that verification needs.
    """
    path = storage_dir(repo) / "trees" / f"{commit}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format_version") != 1:
            return None
        files = []
        for name, entry in sorted(data["files"].items()):
            lfs = entry.get("lfs_sha256")
            files.append(RemoteFile(name, int(entry["lfs_size"] if lfs else entry["size"]),
                                    str(lfs or entry["blob_id"]), bool(lfs), cached=True))
        return files
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


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


def _digest(path: Path, file: RemoteFile, size: int,
            progress: Callable[[int], None] | None) -> str:
    if file.lfs:
        h = hashlib.sha256()
    else:  # git's blob id: SHA-1 of "blob <size>\0" + content
        h = hashlib.sha1(usedforsecurity=False)
        h.update(f"blob {size}\0".encode())
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            if progress is not None:
                progress(len(chunk))
    return h.hexdigest()


def check_file(snapshot: Path, file: RemoteFile,
               progress: Callable[[int], None] | None = None, *, hashes: bool = True) -> FileCheck:
    path = snapshot / file.path
    try:
        size = path.stat().st_size  # follows the link to the blob; a dangling link is missing
    except OSError:
        return FileCheck(file, "missing")
    if size < file.size:
        return FileCheck(file, "truncated", size)
    if size > file.size:
        return FileCheck(file, "corrupt", size)
    if hashes and _digest(path, file, size, progress) != file.etag:
        return FileCheck(file, "corrupt", size)
    return FileCheck(file, "ok", size)


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
    remember(report)
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


# -- what mixtui knows to be bad, so it never loads it ------------------------------------------
def _record_path(snapshot: Path) -> Path:
    return snapshot.parent.parent / "mixtui" / f"{snapshot.name}.known-bad.json"


def remember(report: VerifyReport) -> None:
    """Keep the bad files of `report` (with size and mtime) beside the snapshot's refs."""
    record = _record_path(report.snapshot)
    if report.ok:
        record.unlink(missing_ok=True)
        return
    entries = {}
    for check in report.bad:
        try:
            st = (report.snapshot / check.path).stat()
            entries[check.path] = {"status": check.status, "size": st.st_size,
                                   "mtime_ns": st.st_mtime_ns}
        except OSError:
            entries[check.path] = {"status": check.status}
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(entries, indent=1))
    except OSError:
        pass


def known_problems(snapshot: Path, repo: str) -> list[str]:
    """Cheap checks before a load: files the tree cache lists that are missing or of the wrong
    size, and files the last `mixtui verify` found bad that have not changed since."""
    problems: dict[str, str] = {}
    for f in needed(cached_tree(repo, snapshot.name) or []):
        check = check_file(snapshot, f, hashes=False)
        if check.status != "ok":
            problems[f.path] = check.describe()
    try:
        record = json.loads(_record_path(snapshot).read_text())
    except (OSError, ValueError):
        record = {}
    for path, entry in record.items():
        try:
            st = (snapshot / path).stat()
        except OSError:
            problems.setdefault(path, f"{path}: missing")
            continue
        if st.st_size == entry.get("size") and st.st_mtime_ns == entry.get("mtime_ns"):
            problems.setdefault(path, f"{path}: {entry.get('status', 'bad')} (found by "
                                      "`mixtui verify`)")
    return [problems[p] for p in sorted(problems)]
