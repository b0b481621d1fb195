"""Plan a download, run it in a process of its own, report progress, cancel it within 2 s.

huggingface_hub downloads with a pool of worker threads that do not stop when the main thread
is interrupted, so the download runs in a child process: cancelling ends that process (it
writes nothing a whole file could be mistaken for: huggingface_hub writes each file to a
uniquely named `.incomplete` file and renames it only when it is complete), and the parent
then removes the partial files it left. Progress is measured from the cache itself: the
finished blobs and the growing `.incomplete` files of the files being fetched.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from mixtui.core.errors import MixtuiError
from mixtui.core.units import gb, parse_size
from mixtui.hub.errors import AGAIN, DiskFull, HubError, describe, scrub
from mixtui.store.cache import COMMIT, hub_cache, resolve_commit, storage_dir
from mixtui.store.files import RemoteFile, needed

_RESERVE_MIN = 512 * 2**20  # free disk space kept after a download, at least
_PROGRESS_WINDOW_S = 20.0  # speed is measured over this much recent time
_CHUNK = 10 * 2**20  # huggingface_hub writes a file in steps of this size


@dataclass(frozen=True)
class DownloadPlan:
    """What a download would fetch: the dry run, made before any byte is fetched."""

    repo: str
    revision: str | None
    commit: str
    files: tuple[RemoteFile, ...]

    @property
    def to_fetch(self) -> tuple[RemoteFile, ...]:
        """Files the snapshot lacks (those whose blob is cached are only linked, not fetched)."""
        return tuple(f for f in self.files if not f.linked)

    @property
    def bytes_total(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def bytes_to_fetch(self) -> int:
        return sum(f.size for f in self.to_fetch if not f.cached)

    @property
    def snapshot(self) -> Path:
        return storage_dir(self.repo) / "snapshots" / self.commit

    def finished(self) -> int:
        """How many of the files are in the snapshot now."""
        return sum(1 for f in self.files if (self.snapshot / f.path).exists())


def plan_download(repo: str, revision: str | None = None,
                  only: list[str] | None = None) -> DownloadPlan:
    """The dry run: what the repository holds at one commit, and what of it the cache lacks.

    `only`: just these files (verify --repair); by default every file MLX needs. A file whose
    blob is in the cache (huggingface_hub names blobs by their hash) is only linked, not
    fetched. Nothing is written to the cache: a branch's ref moves only when its download has
    finished, so a plan that is not carried out leaves the cache as it was.
    """
    # deferred: huggingface_hub's API modules take about a second to import
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    try:
        api = HfApi()
        commit = api.repo_info(repo, revision=revision).sha
        assert commit is not None
        tree = [f for f in api.list_repo_tree(repo, revision=commit, recursive=True)
                if isinstance(f, RepoFile)]
    except MixtuiError:
        raise
    except Exception as exc:
        raise describe(exc, repo, revision) from exc
    storage = storage_dir(repo)
    listed = sorted((RemoteFile.from_tree(f) for f in tree), key=lambda f: f.path)
    files = [replace(f, cached=(storage / "blobs" / f.etag).is_file(),
                     linked=(storage / "snapshots" / commit / f.path).exists())
             for f in needed(listed, list(only) if only is not None else None)]
    if only is None and not any(f.path == "config.json" for f in files):
        raise HubError(f"{repo} has no config.json, so it is not a model mixtui can run; pick an "
                       "MLX conversion (e.g. from mlx-community).")
    return DownloadPlan(repo, revision, commit, tuple(files))


def write_ref(repo: str, revision: str | None, commit: str, *, complete: bool = True) -> None:
    """Point the branch or tag at `commit` in the cache, as huggingface_hub does.

    After an unfinished download (`complete=False`) the ref moves only if it pointed at no
    snapshot: an update that was cancelled never hides the complete snapshot of before.
    """
    name = revision or "main"
    if COMMIT.match(name):
        return
    if not complete:
        current = resolve_commit(repo, name)
        if current is not None and (storage_dir(repo) / "snapshots" / current).is_dir():
            return
        if not (storage_dir(repo) / "snapshots" / commit).is_dir():
            return
    ref = storage_dir(repo) / "refs" / name
    ref.parent.mkdir(parents=True, exist_ok=True)
    tmp = ref.with_name(f".{ref.name}.{os.getpid()}.tmp")
    tmp.write_text(commit)
    os.replace(tmp, ref)


def free_disk(path: Path) -> int:
    """Free bytes on the file system that holds `path` (or its nearest existing parent)."""
    for candidate in (path, *path.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return 0


def disk_reserve(need: int) -> int:
    """Space to keep free after the download: MIXTUI_DOWNLOAD_RESERVE, else 2 % (>= 512 MiB)."""

    override = os.environ.get("MIXTUI_DOWNLOAD_RESERVE")
    if override:
        return parse_size(override)
    return max(_RESERVE_MIN, need // 50)


def check_disk(plan: DownloadPlan) -> None:
    """Refuse, with the numbers, a download the disk cannot take."""
    need = plan.bytes_to_fetch
    if need == 0:
        return
    free = free_disk(hub_cache())
    reserve = disk_reserve(need)
    if need + reserve > free:
        raise DiskFull(f"{plan.repo} needs {gb(need)} more on disk (plus {gb(reserve)} kept "
                       f"free) but {hub_cache()} has only {gb(free)} free; free "
                       f"{gb(need + reserve - free)} or set HF_HUB_CACHE to a larger disk.")


def files_text(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def fetch_summary(plan: DownloadPlan) -> str:
    """'fetching 2 files, 24.1 GB; 1 more is in the cache and only linked (3 already here)'"""
    fetch = sum(1 for f in plan.to_fetch if not f.cached)
    link = len(plan.to_fetch) - fetch
    here = len(plan.files) - len(plan.to_fetch)
    text = f"fetching {files_text(fetch)}, {gb(plan.bytes_to_fetch)}"
    if link:
        text += f"; {link} more {'is' if link == 1 else 'are'} in the cache and only linked"
    return text + (f" ({here} already here)" if here else "")


def eta_text(seconds: float | None) -> str:
    """'12 s', '2 min 03 s', '1 h 05 min', or '--' when unknown."""
    if seconds is None:
        return "--"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


@dataclass(frozen=True)
class Progress:
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    speed: float  # bytes/s over the last few seconds
    active: tuple[str, ...]  # files being written now

    @property
    def eta_s(self) -> float | None:
        if self.speed <= 0:
            return None
        return max(self.bytes_total - self.bytes_done, 0) / self.speed

    @property
    def fraction(self) -> float:
        return self.bytes_done / self.bytes_total if self.bytes_total else 1.0


@dataclass
class Outcome:
    ok: bool
    snapshot: Path | None = None
    error: MixtuiError | None = None
    cancelled: bool = False
    removed_partials: list[str] = field(default_factory=list)


class Download:
    """One download of `plan`'s missing files, in a child process."""

    def __init__(self, plan: DownloadPlan, files: list[RemoteFile] | None = None):
        self.plan = plan
        self.files = list(plan.to_fetch if files is None else files)
        self._proc: Any = None
        self._conn: Connection | None = None
        self._samples: collections.deque[tuple[float, int]] = collections.deque()
        self._lock = threading.Lock()  # cancel() may come from two threads (Esc, then quit)
        self.outcome: Outcome | None = None

    @property
    def bytes_total(self) -> int:
        """Bytes to fetch (a file whose blob is cached is only linked)."""
        return sum(f.size for f in self.files if not f.cached)

    def start(self) -> None:
        remove_partials(self.plan.repo, self.files)  # left by a run that was killed outright
        ctx = multiprocessing.get_context("spawn")
        receiver, sender = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(
            target=_child_main, name="mixtui-download", daemon=True,
            args=(self.plan.repo, self.plan.commit, [f.path for f in self.files], sender,
                  os.getpid()))
        # ctrl+c reaches the whole process group: the child must ignore it from its very
        # start (it inherits this), not only once its own code runs
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            self._proc.start()
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)
        sender.close()
        self._conn = receiver

    # -- progress ---------------------------------------------------------------------------
    def progress(self) -> Progress:
        blobs = storage_dir(self.plan.repo) / "blobs"
        sizes: dict[str, int] = {}
        try:
            with os.scandir(blobs) as entries:
                for entry in entries:
                    try:
                        sizes[entry.name] = entry.stat().st_size
                    except OSError:  # renamed or removed while we looked
                        continue
        except OSError:
            pass
        done = files_done = 0
        active = []
        for f in self.files:
            if sizes.get(f.etag) == f.size:
                done += 0 if f.cached else f.size
                files_done += 1
                continue
            prefix = f.etag + "."
            partial = [s for n, s in sizes.items()
                       if n.startswith(prefix) and n.endswith(".incomplete")]
            if partial:  # being written (huggingface_hub writes in chunks of 10 MiB)
                active.append(f.path)
                done += min(sum(partial), f.size)
        now = time.monotonic()
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[0][0] > _PROGRESS_WINDOW_S:
            self._samples.popleft()
        t0, b0 = self._samples[0]
        # huggingface_hub writes in 10 MiB chunks, so bytes arrive in steps: no speed (nor
        # ETA) until a step's worth has arrived in the window, rather than a wild guess
        enough = min(_CHUNK, max(self.bytes_total // 10, 1))
        speed = (done - b0) / (now - t0) if now - t0 >= 1.0 and done - b0 >= enough else 0.0
        return Progress(files_done, len(self.files), done, self.bytes_total, max(speed, 0.0),
                        tuple(active))

    # -- completion -------------------------------------------------------------------------
    def poll(self) -> Outcome | None:
        """The outcome once the child has finished, else None (never blocks)."""
        with self._lock:
            if self.outcome is not None:
                return self.outcome
            assert self._proc is not None
            alive = self._proc.is_alive()  # before reading: a child that ends has sent first
            message = self._receive()
            if message is None and alive:
                return None
            self._proc.join(timeout=5)
            if message is None:
                code = self._proc.exitcode
                self.outcome = Outcome(False, error=HubError(
                    f"The download process exited unexpectedly (code {code}); {{again}} "
                    "(finished files are kept).", code="download-process-exited",
                    facts={"repo": self.plan.repo, "exit_code_of_process": code},
                    remedies=(AGAIN,)))
            elif message[0] == "done":
                write_ref(self.plan.repo, self.plan.revision, self.plan.commit)
                self.outcome = Outcome(True, snapshot=Path(message[1]))
            else:
                _, error, detail = message
                error.detail = detail
                self.outcome = Outcome(False, error=error)
            if not self.outcome.ok:
                self._unfinished()
            self._close()
            return self.outcome

    def _unfinished(self) -> None:
        assert self.outcome is not None
        self.outcome.removed_partials = remove_partials(self.plan.repo, self.files)
        write_ref(self.plan.repo, self.plan.revision, self.plan.commit, complete=False)

    def _receive(self) -> Any:
        try:
            if self._conn is not None and self._conn.poll():
                return self._conn.recv()
        except (EOFError, OSError):
            pass
        return None

    def stop_soon(self) -> None:
        """Ask the child to end (SIGTERM) without waiting; `cancel` then finishes the job."""
        if self._proc is not None and self.outcome is None and self._proc.is_alive():
            self._proc.terminate()

    def cancel(self) -> Outcome:
        """Stop now (SIGTERM, then SIGKILL), and remove the partial files it leaves."""
        with self._lock:
            if self.outcome is not None:
                return self.outcome
            assert self._proc is not None
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join(timeout=1.0)
                if self._proc.is_alive():
                    self._proc.kill()
                    self._proc.join(timeout=0.5)
            self.outcome = Outcome(False, cancelled=True)
            self._unfinished()
            self._close()
            return self.outcome

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def remove_partials(repo: str, files: list[RemoteFile]) -> list[str]:
    """Delete the `.incomplete` files of `files` that no running download is writing.

    huggingface_hub holds a file lock per blob while it writes it; a partial file whose lock
    can be taken belongs to a download that is over (cancelled, killed) and can never be
    resumed (its name is unique to that download), so it is only wasted space.
    """
    from filelock import FileLock, Timeout  # deferred: only a cancelled download needs it

    storage = storage_dir(repo)
    blobs = storage / "blobs"
    locks = hub_cache() / ".locks" / storage.name
    removed = []
    for f in files:
        if not f.etag:
            continue
        leftovers = list(blobs.glob(f"{f.etag}*.incomplete")) if blobs.is_dir() else []
        if not leftovers:
            continue
        lock_path = locks / f"{f.etag}.lock"
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(lock_path), timeout=0):
                for path in leftovers:
                    path.unlink(missing_ok=True)
                    removed.append(f.path)
        except Timeout:  # another download is writing this file right now
            continue
        except OSError:
            continue
    return sorted(set(removed))


# -- the child process ----------------------------------------------------------------------
def _watch_parent(parent: int) -> None:
    """End this process if the one that started it is gone (killed outright)."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(3)


def _child_main(repo: str, commit: str, paths: list[str], conn: Connection,
                parent: int) -> None:
    # ctrl+c reaches the whole process group; the parent decides, and ends this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    try:
        from huggingface_hub import snapshot_download  # deferred: the child process alone downloads

        path = snapshot_download(repo, revision=commit, allow_patterns=paths)
        conn.send(("done", str(path)))
    except BaseException as exc:  # everything goes back to the parent as one sentence
        conn.send(("failed", describe(exc, repo, commit), scrub(traceback.format_exc())))
    finally:
        conn.close()
        sys.stdout.flush()
