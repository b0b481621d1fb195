"""Where huggingface_hub's cache keeps a repository: its folder, refs and snapshots."""

from __future__ import annotations

import re
from pathlib import Path

COMMIT = re.compile(r"^[0-9a-f]{40}$")


def hub_cache() -> Path:
    """HF_HUB_CACHE, as huggingface_hub resolved it when it was imported."""
    from huggingface_hub import constants

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
