"""What mixtui knows to be bad in a snapshot, so that it never loads it: files whose size is
off huggingface_hub's tree record, and files the last `mixtui verify` found bad (kept beside
the snapshot's refs, with their size and mtime, until they change)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from mixtui.store.cache import cached_tree
from mixtui.store.files import FileCheck, check_file, needed


def _record_path(snapshot: Path) -> Path:
    return snapshot.parent.parent / "mixtui" / f"{snapshot.name}.known-bad.json"


def remember(snapshot: Path, bad: Sequence[FileCheck]) -> None:
    """Keep the `bad` files of a snapshot (with size and mtime) beside its refs; none: forget."""
    record = _record_path(snapshot)
    if not bad:
        record.unlink(missing_ok=True)
        return
    entries = {}
    for check in bad:
        try:
            st = (snapshot / check.path).stat()
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
