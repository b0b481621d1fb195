"""The files of a repository as the Hub records them, and checks of a snapshot's copies."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

# What MLX needs from a repository (as mlx-lm fetches it, minus code: mixtui never runs
# code from a model repository).
ALLOW_PATTERNS = ("*.json", "model*.safetensors", "tokenizer.model", "*.tiktoken",
                  "tiktoken.model", "*.txt", "*.jinja")
Status = Literal["ok", "missing", "truncated", "corrupt"]
_CHUNK = 8 * 2**20


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    etag: str  # the blob's name in the cache: SHA-256 for LFS files, git SHA-1 for others
    lfs: bool
    cached: bool  # its blob is in the cache (nothing to fetch)
    linked: bool = True  # and the snapshot of the planned commit links to it

    @classmethod
    def from_tree(cls, entry: Any, cached: bool = True, linked: bool = True) -> RemoteFile:
        """From a huggingface_hub `RepoFile` (a tree listing's entry)."""
        lfs = entry.lfs
        return cls(entry.path, int(lfs.size if lfs else entry.size),
                   str(lfs.sha256 if lfs else entry.blob_id), lfs is not None, cached, linked)


def needed(files: list[RemoteFile], patterns: list[str] | None = None) -> list[RemoteFile]:
    """The files that match `patterns` (by default: what MLX needs), in the given order."""
    # deferred: huggingface_hub's API modules take about a second to import
    from huggingface_hub.utils import filter_repo_objects

    wanted = set(filter_repo_objects([f.path for f in files],
                                     allow_patterns=patterns or list(ALLOW_PATTERNS)))
    return [f for f in files if f.path in wanted]


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
