"""Where huggingface_hub's cache keeps a repository: its folder, refs and snapshots."""

from __future__ import annotations

import json
import re
from pathlib import Path

from mixtui.store.files import RemoteFile

COMMIT = re.compile(r"^[0-9a-f]{40}$")


def hub_cache() -> Path:
    """HF_HUB_CACHE, as huggingface_hub resolved it when it was imported."""
    from huggingface_hub import constants  # deferred: huggingface_hub reads HF_HUB_CACHE on import

    return Path(constants.HF_HUB_CACHE)


def storage_dir(repo: str) -> Path:
    """The repository's folder in the cache (blobs/, refs/, snapshots/, trees/)."""
    return hub_cache() / ("models--" + repo.replace("/", "--"))


def resolve_commit(repo: str, revision: str | None) -> str | None:
    """The commit a branch or tag points to in the cache (or the revision if it is a commit)."""
    rev = revision or "main"
    if COMMIT.match(rev):
        return rev
    try:
        return (storage_dir(repo) / "refs" / rev).read_text().strip() or None
    except OSError:
        return None


def snapshot_dir(repo: str, revision: str | None = None) -> Path | None:
    """The cached snapshot folder of a repository's revision, if there is one."""
    commit = resolve_commit(repo, revision)
    if commit is None:
        return None
    snapshot = storage_dir(repo) / "snapshots" / commit
    return snapshot if snapshot.is_dir() else None


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
