"""A small mock of the Hugging Face Hub, for testing real huggingface_hub downloads offline.

Standard library only. A `MockHub` serves, on 127.0.0.1, the endpoints that huggingface_hub
(2.4) uses to download a repo:

- ``GET  /api/{models|datasets}/{repo_id}[/revision/{revision}]``   repo info (`model_info`)
- ``GET  /api/{models|datasets}/{repo_id}/tree/{revision}[/{path}]`` tree (`list_repo_tree`)
- ``HEAD|GET /[datasets/]{repo_id}/resolve/{revision}/{path}``        file metadata and bytes
- ``GET  /api/whoami-v2`` and ``GET /api/agent-harnesses`` (an empty registry)

with the headers the real Hub sends (``X-Repo-Commit``, ``ETag`` = git blob sha1, and for LFS
files ``X-Linked-Etag`` = sha256 and ``X-Linked-Size``), HTTP Range requests (206 and
``Content-Range``, so an interrupted download resumes) and the Hub's error codes
(``X-Error-Code``: RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo). It never sends Xet
headers, so huggingface_hub always downloads over plain HTTP.

Faults a test can inject: a connection dropped mid-body (`drop_connection`), slow bodies
(`throttle`), HTTP errors (`fail`), gated/private repos and token checks (`require_token`).
Every request is logged (`requests`, `file_downloads`); token values are never stored.

Usage::

    with MockHub() as hub:
        hub.add_repo("org/model", {"config.json": b"{}", "model.safetensors": weights})
        path = snapshot_download("org/model", endpoint=hub.url, cache_dir=tmp)

huggingface_hub reads ``HF_ENDPOINT`` once, at import: in-process, pass ``endpoint=hub.url``
(or patch ``huggingface_hub.constants``); for a subprocess, set ``HF_ENDPOINT`` in its env.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import hashlib
import io
import json
import math
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

__all__ = [
    "DEFAULT_LFS_PATTERNS",
    "MockFile",
    "MockHub",
    "MockRepo",
    "RequestRecord",
    "git_blob_sha1",
    "lfs_pointer",
]

# Files stored with git-lfs, as in the Hub's default .gitattributes.
DEFAULT_LFS_PATTERNS: tuple[str, ...] = (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gguf", "*.gz", "*.h5",
    "*.joblib", "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot",
    "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors",
    "*.tar", "*.tar.*", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*",
)

LAST_MODIFIED = "2024-01-01T00:00:00.000Z"
_REPO_TYPES = {"model": "models", "dataset": "datasets"}
_REPO = r"(?P<repo>[^/]+(?:/[^/]+)?)"
_INFO_RE = re.compile(rf"^/api/(?P<type>models|datasets)/{_REPO}(?:/revision/(?P<rev>[^/]+))?$")
_TREE_RE = re.compile(
    rf"^/api/(?P<type>models|datasets)/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")
_RESOLVE_RE = re.compile(rf"^/(?:(?P<type>datasets)/)?{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_CDN_RE = re.compile(r"^/cdn/(?P<sha256>[0-9a-f]{64})$")
_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
_HEX_RE = re.compile(r"^[0-9a-f]{7,40}$")
_WHOAMI = {"type": "user", "id": "0" * 24, "name": "mock-user", "fullname": "Mock User",
           "orgs": [], "auth": {"type": "access_token",
                                "accessToken": {"displayName": "mock", "role": "read"}}}


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob: what the Hub returns as a (non-LFS) file's ETag and oid."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    """The git-lfs pointer file committed in place of an LFS file's content."""
    return (f"version https://git-lfs.github.com/spec/v1\n"
            f"oid sha256:{hashlib.sha256(data).hexdigest()}\nsize {len(data)}\n").encode()


@dataclass(frozen=True)
class MockFile:
    """One file of one commit. `blob_id` is the git oid (of the LFS pointer for LFS files)."""

    path: str
    data: bytes = field(repr=False)
    lfs: bool
    size: int
    blob_id: str
    sha256: str | None
    pointer_size: int | None

    @classmethod
    def make(cls, path: str, data: bytes, *, lfs: bool) -> MockFile:
        data = bytes(data)
        if not lfs:
            return cls(path, data, False, len(data), git_blob_sha1(data), None, None)
        pointer = lfs_pointer(data)
        return cls(path, data, True, len(data), git_blob_sha1(pointer),
                   hashlib.sha256(data).hexdigest(), len(pointer))

    @property
    def etag(self) -> str:
        """The name huggingface_hub gives the blob in its cache: sha256 for LFS, else git sha1."""
        return self.sha256 if self.sha256 is not None else self.blob_id


@dataclass(frozen=True)
class _Commit:
    sha: str
    files: Mapping[str, MockFile]


class MockRepo:
    """A repo on the mock Hub: named revisions (branches/tags) pointing at commits.

    Commits are kept after a revision moves (`MockHub.set_file`), so an old commit sha still
    resolves, as on the real Hub.
    """

    def __init__(self, repo_id: str, repo_type: str, *, gated: bool | str, private: bool,
                 lfs_patterns: Iterable[str]) -> None:
        self.repo_id = repo_id
        self.repo_type = repo_type
        self.gated: str | bool = "auto" if gated is True else gated
        self.private = private
        self.lfs_patterns = tuple(lfs_patterns)
        self._refs: dict[str, str] = {}
        self._commits: dict[str, _Commit] = {}

    def is_lfs(self, path: str) -> bool:
        name = path.rsplit("/", 1)[-1]
        return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p) for p in self.lfs_patterns)

    def sha(self, revision: str = "main") -> str:
        """The commit sha a revision (branch, tag or commit) points at. KeyError if unknown."""
        commit = self._lookup(revision)
        if commit is None:
            raise KeyError(f"{self.repo_id}: unknown revision {revision!r}")
        return commit.sha

    @property
    def revisions(self) -> dict[str, str]:
        """Named revisions (branches and tags) and the commit each points at."""
        return dict(self._refs)

    def files(self, revision: str = "main") -> dict[str, MockFile]:
        commit = self._lookup(revision)
        if commit is None:
            raise KeyError(f"{self.repo_id}: unknown revision {revision!r}")
        return dict(commit.files)

    def _commit(self, revision: str, files: Mapping[str, MockFile]) -> str:
        digest = hashlib.sha1()
        digest.update(f"{self.repo_type}/{self.repo_id}@{revision}#{len(self._commits)}".encode())
        for path in sorted(files):
            digest.update(f"\n{path}\0{files[path].etag}".encode())
        sha = digest.hexdigest()
        self._commits[sha] = _Commit(sha, dict(files))
        self._refs[revision] = sha
        return sha

    def _lookup(self, revision: str) -> _Commit | None:
        if revision in self._refs:
            return self._commits[self._refs[revision]]
        if _HEX_RE.match(revision):
            found = [c for sha, c in self._commits.items() if sha.startswith(revision)]
            if len(found) == 1:
                return found[0]
        return None


@dataclass
class RequestRecord:
    """One request the mock Hub received. `authorization` says whether a token was sent."""

    method: str
    path: str                        # URL path, percent-decoded
    query: dict[str, list[str]]
    range: str | None                # the Range header, verbatim
    authorization: bool
    kind: str = "other"              # "info", "tree", "resolve", "cdn" or "other"
    repo_id: str | None = None
    revision: str | None = None
    filename: str | None = None
    status: int | None = None        # None while the response is not yet sent
    body_bytes: int = 0              # response body bytes written
    dropped: bool = False            # cut by a `drop_connection` fault
    aborted: bool = False            # the client went away mid-response


@dataclass
class _Fault:
    key: tuple[str, str, str | None]  # (repo_type, repo_id, path or None for any request)
    times: int
    after_bytes: int = 0
    reset: bool = False
    status: int = 0


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, *, code: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers = dict(headers or {})


class MockHub:
    """A mock Hugging Face Hub on 127.0.0.1:<free port>, served from a daemon thread.

    Use as a context manager (or `start()`/`stop()`); `url` is the value for HF_ENDPOINT.
    With ``lfs_redirect=True``, LFS files are 302-redirected to a "CDN" on ``localhost`` (a
    different origin, so huggingface_hub drops the Authorization header there), as the real
    Hub does; by default they are served directly with the same headers.
    """

    def __init__(self, *, lfs_redirect: bool = False) -> None:
        self.lfs_redirect = lfs_redirect
        self._lock = threading.RLock()
        self._repos: dict[tuple[str, str], MockRepo] = {}
        self._blobs: dict[str, bytes] = {}
        self._faults: list[_Fault] = []
        self._log: list[RequestRecord] = []
        self._bytes_per_second: int | None = None
        self._token: str | None = None
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("MockHub is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MockHub:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", 0), _Handler, self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={
            "poll_interval": 0.05}, name=f"mockhub-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # idle keep-alive connections, throttled bodies
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> MockHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- content ----------------------------------------------------------------------------

    def add_repo(self, repo_id: str, files: Mapping[str, bytes], *, repo_type: str = "model",
                 gated: bool | str = False, private: bool = False,
                 revisions: Mapping[str, Mapping[str, bytes]] | None = None,
                 lfs_patterns: Iterable[str] = DEFAULT_LFS_PATTERNS) -> MockRepo:
        """Create (or replace) a repo. `files` is the "main" branch; `revisions` adds other
        branches or tags, each with its own files. Each gets a deterministic 40-hex commit sha.
        `gated=True` means gated "auto"; pass "manual" for a manually approved gate."""
        if repo_type not in _REPO_TYPES:
            raise ValueError(f"repo_type must be one of {sorted(_REPO_TYPES)}")
        repo = MockRepo(repo_id, repo_type, gated=gated, private=private,
                        lfs_patterns=lfs_patterns)
        with self._lock:
            for name, content in {"main": files, **(revisions or {})}.items():
                repo._commit(name, self._make_files(repo, content))
            self._repos[(repo_type, repo_id)] = repo
        return repo

    def repo(self, repo_id: str, repo_type: str = "model") -> MockRepo:
        return self._repos[(repo_type, repo_id)]

    def set_file(self, repo_id: str, path: str, data: bytes | None, *, revision: str = "main",
                 repo_type: str = "model") -> str:
        """Commit a change to one file on a branch (``data=None`` deletes it); the branch moves
        to a new commit, whose sha is returned. Earlier commits stay resolvable."""
        with self._lock:
            repo = self._repos[(repo_type, repo_id)]
            files = repo.files(revision)
            if data is None:
                del files[path]
            else:
                files.update(self._make_files(repo, {path: data}))
            return repo._commit(revision, files)

    def _make_files(self, repo: MockRepo, content: Mapping[str, bytes]) -> dict[str, MockFile]:
        files = {}
        for path, data in content.items():
            path = path.strip("/")
            files[path] = MockFile.make(path, data, lfs=repo.is_lfs(path))
            if files[path].sha256 is not None:
                self._blobs[files[path].sha256] = files[path].data
        return files

    # -- faults -----------------------------------------------------------------------------

    def drop_connection(self, repo_id: str, path: str, after_bytes: int, times: int = 1, *,
                        reset: bool = False, repo_type: str = "model") -> None:
        """The next `times` GETs of that file send the headers (full Content-Length) and
        `after_bytes` body bytes, then close the socket: with a FIN, or with a TCP RST when
        ``reset=True``. Replaces a pending drop of that file; ``times=0`` cancels it."""
        self._set_fault(_Fault((repo_type, repo_id, path.strip("/")), times,
                               after_bytes=after_bytes, reset=reset))

    def fail(self, repo_id: str, status: int = 503, *, path: str | None = None, times: int = 1,
             repo_type: str = "model") -> None:
        """Answer the next `times` requests about the repo (or, with `path`, HEAD/GET of that
        file only) with an HTTP error `status`. Replaces a pending failure of the same
        target; ``times=0`` cancels it."""
        self._set_fault(_Fault((repo_type, repo_id, path and path.strip("/")), times,
                               status=status or 500))

    def _set_fault(self, fault: _Fault) -> None:
        with self._lock:
            self._faults = [f for f in self._faults
                            if f.key != fault.key or (f.status == 0) != (fault.status == 0)]
            if fault.times > 0:
                self._faults.append(fault)

    def throttle(self, bytes_per_second: int | None) -> None:
        """Slow every file body to about `bytes_per_second` (None: full speed). Takes effect
        on bodies already being sent."""
        if bytes_per_second is not None and bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be positive")
        self._bytes_per_second = bytes_per_second

    def require_token(self, token: str | None) -> None:
        """Only `token` is valid: any other bearer token gets 401 "Invalid credentials" on every
        endpoint, and gated/private repos need it. With no token set (the default), any
        token is accepted as a valid one."""
        self._token = token

    def _take_fault(self, repo_type: str, repo_id: str, path: str | None, *,
                    drop: bool) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                f_type, f_repo, f_path = fault.key
                if (f_type, f_repo) != (repo_type, repo_id) or (fault.status == 0) != drop:
                    continue
                if f_path is not None and f_path != path:
                    continue
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    # -- request log ------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the request log, in arrival order."""
        with self._lock:
            return [dataclasses.replace(r, query=dict(r.query)) for r in self._log]

    def file_downloads(self, repo_id: str | None = None) -> list[str]:
        """Filenames of GETs that sent file bytes (resolve or CDN), in arrival order."""
        return [r.filename for r in self.requests
                if r.method == "GET" and r.kind in ("resolve", "cdn") and r.body_bytes > 0
                and r.filename is not None and (repo_id is None or r.repo_id == repo_id)]

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def _record(self, record: RequestRecord) -> RequestRecord:
        with self._lock:
            self._log.append(record)
        return record

    def _update(self, record: RequestRecord, **changes: Any) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(record, name, value)

    # -- responses --------------------------------------------------------------------------

    def _authenticate(self, header: str | None) -> bool:
        """True when a valid token was sent, False when none; raises on a wrong token."""
        if not header:
            return False
        token = header[7:].strip() if header.lower().startswith("bearer ") else None
        if not token or (self._token is not None and token != self._token):
            raise _HTTPError(401, "Invalid credentials in Authorization header")
        return True

    def _find_repo(self, repo_type: str, repo_id: str, authenticated: bool) -> MockRepo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not authenticated):
            # Like the Hub: anonymous requests get 401 (so as not to leak private repos).
            raise _HTTPError(401 if not authenticated else 404, "Repository not found",
                             code="RepoNotFound")
        return repo

    @staticmethod
    def _find_commit(repo: MockRepo, revision: str) -> _Commit:
        commit = repo._lookup(revision)
        if commit is None:
            raise _HTTPError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        return commit

    def _check_error_fault(self, repo_type: str, repo_id: str, path: str | None) -> None:
        fault = self._take_fault(repo_type, repo_id, path, drop=False)
        if fault is not None:
            raise _HTTPError(fault.status, f"Mock failure ({fault.status})")

    def _repo_info(self, repo: MockRepo, commit: _Commit, query: dict[str, list[str]]) -> dict:
        blobs = query.get("blobs", ["false"])[-1].lower() in ("1", "true")
        siblings = []
        for path in sorted(commit.files):
            f = commit.files[path]
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=f.size, blobId=f.blob_id)
                if f.lfs:
                    sibling["lfs"] = {"sha256": f.sha256, "size": f.size,
                                      "pointerSize": f.pointer_size}
            siblings.append(sibling)
        info: dict[str, Any] = {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0] if "/" in repo.repo_id else None,
            "sha": commit.sha,
            "lastModified": LAST_MODIFIED,
            "createdAt": LAST_MODIFIED,
            "private": repo.private,
            "gated": repo.gated,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(f.size for f in commit.files.values()),
        }
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
            info.update(_model_extras(commit.files))
        expand = query.get("expand")
        if expand:  # the Hub then answers with the requested properties only
            info = {k: v for k, v in info.items() if k in ("_id", "id") or k in expand}
        return info

    @staticmethod
    def _tree(commit: _Commit, path: str, recursive: bool, expand: bool) -> list[dict]:
        prefix = f"{path}/" if path else ""
        if path and path in commit.files:
            raise _HTTPError(404, f"{path} is a file, not a folder", code="EntryNotFound")
        below = [p for p in sorted(commit.files) if p.startswith(prefix)]
        if path and not below:
            raise _HTTPError(404, f"{path} does not exist on \"{commit.sha}\"",
                             code="EntryNotFound")
        folders: set[str] = set()
        entries = []
        for p in below:
            rest = p[len(prefix):].split("/")
            for depth in range(1, len(rest)):
                if depth > 1 and not recursive:
                    break
                folders.add(prefix + "/".join(rest[:depth]))
            if len(rest) > 1 and not recursive:
                continue
            f = commit.files[p]
            entry: dict[str, Any] = {"type": "file", "oid": f.blob_id, "size": f.size, "path": p}
            if f.lfs:
                entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
            entries.append(entry)
        for folder in folders:
            tree_id = hashlib.sha1(f"tree {commit.sha} {folder}".encode()).hexdigest()
            entries.append({"type": "directory", "oid": tree_id, "size": 0, "path": folder})
        if expand:
            for entry in entries:
                entry["lastCommit"] = {"id": commit.sha, "title": "Upload files",
                                       "date": LAST_MODIFIED}
        return sorted(entries, key=lambda e: (e["type"] != "directory", e["path"]))

    def _file_headers(self, commit: _Commit, f: MockFile) -> dict[str, str]:
        headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{f.etag}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream" if f.lfs
                   else "text/plain; charset=utf-8"}
        if f.lfs:
            headers["X-Linked-Etag"] = f'"{f.sha256}"'
            headers["X-Linked-Size"] = str(f.size)
        return headers

    def _cdn_location(self, repo: MockRepo, f: MockFile) -> str:
        query = f"repo={quote(repo.repo_id, safe='')}&type={repo.repo_type}&file={quote(f.path)}"
        return f"http://localhost:{self.port}/cdn/{f.sha256}?{query}"


def _model_extras(files: Mapping[str, MockFile]) -> dict[str, Any]:
    """The `config` and `safetensors` summaries the Hub adds to a model's info."""
    extras: dict[str, Any] = {}
    if "config.json" in files:
        try:
            config = json.loads(files["config.json"].data)
        except ValueError:
            config = None
        if isinstance(config, dict):
            extras["config"] = {k: config[k] for k in
                                ("architectures", "model_type", "quantization_config")
                                if k in config}
    parameters: dict[str, int] = {}
    for path, f in files.items():
        if not path.endswith(".safetensors"):
            continue
        try:
            (length,) = struct.unpack("<Q", f.data[:8])
            header = json.loads(f.data[8:8 + length])
            for name, tensor in header.items():
                if name != "__metadata__":
                    count = math.prod(tensor["shape"])
                    parameters[tensor["dtype"]] = parameters.get(tensor["dtype"], 0) + count
        except (ValueError, KeyError, TypeError, struct.error):
            continue
    if parameters:
        extras["safetensors"] = {"parameters": parameters, "total": sum(parameters.values())}
    return extras


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, hub: MockHub) -> None:
        self.hub = hub
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a client going away is no error
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def setup(self) -> None:
        super().setup()
        with self.server.hub._lock:
            self.server.hub._connections.add(self.connection)

    def finish(self) -> None:
        with self.server.hub._lock:
            self.server.hub._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self._handle()

    do_PUT = do_DELETE = do_PATCH = do_POST

    # -- dispatch ---------------------------------------------------------------------------

    def _handle(self) -> None:
        hub = self.server.hub
        split = urlsplit(self.path)
        record = hub._record(RequestRecord(
            method=self.command, path=unquote(split.path),
            query=parse_qs(split.query, keep_blank_values=True),
            range=self.headers.get("Range"),
            authorization=bool(self.headers.get("Authorization"))))
        try:
            self._route(hub, split.path, record)
        except _HTTPError as error:
            self._send_error(record, error)
        except OSError:  # the client went away (cancelled download, closed session)
            hub._update(record, aborted=True)
            self.close_connection = True

    def _route(self, hub: MockHub, raw_path: str, record: RequestRecord) -> None:
        authenticated = hub._authenticate(self.headers.get("Authorization"))
        query = record.query
        if self.command in ("GET", "HEAD"):
            if m := _CDN_RE.match(raw_path):
                return self._cdn(hub, m["sha256"], record)
            if m := _RESOLVE_RE.match(raw_path):
                repo_type = "dataset" if m["type"] else "model"
                return self._resolve(hub, repo_type, m["repo"], unquote(m["rev"]),
                                     unquote(m["path"]), authenticated, record)
        if self.command == "GET":
            if m := _TREE_RE.match(raw_path):
                repo_type = m["type"][:-1]
                path = unquote(m["path"] or "").strip("/")
                hub._update(record, kind="tree", repo_id=m["repo"], revision=unquote(m["rev"]))
                flag = {k: query.get(k, ["false"])[-1].lower() in ("1", "true")
                        for k in ("recursive", "expand")}
                with hub._lock:
                    repo = hub._find_repo(repo_type, m["repo"], authenticated)
                    hub._check_error_fault(repo_type, repo.repo_id, None)
                    commit = hub._find_commit(repo, unquote(m["rev"]))
                    body = hub._tree(commit, path, flag["recursive"], flag["expand"])
                return self._send_json(record, body)
            if m := _INFO_RE.match(raw_path):
                repo_type = m["type"][:-1]
                revision = unquote(m["rev"]) if m["rev"] else "main"
                hub._update(record, kind="info", repo_id=m["repo"], revision=revision)
                with hub._lock:
                    repo = hub._find_repo(repo_type, m["repo"], authenticated)
                    hub._check_error_fault(repo_type, repo.repo_id, None)
                    body = hub._repo_info(repo, hub._find_commit(repo, revision), query)
                return self._send_json(record, body)
            if raw_path == "/api/agent-harnesses":  # fetched daily unless telemetry is off
                return self._send_json(record, {"standardEnvVars": [], "harnesses": {}})
            if raw_path == "/api/whoami-v2":
                if not authenticated:
                    raise _HTTPError(401, "Invalid username or password.")
                return self._send_json(record, _WHOAMI)
        raise _HTTPError(404, f"Mock Hub: no route for {self.command} {raw_path}")

    def _resolve(self, hub: MockHub, repo_type: str, repo_id: str, revision: str, path: str,
                 authenticated: bool, record: RequestRecord) -> None:
        hub._update(record, kind="resolve", repo_id=repo_id, revision=revision, filename=path)
        with hub._lock:
            repo = hub._find_repo(repo_type, repo_id, authenticated)
            if repo.gated and not authenticated:
                kind = "model" if repo_type == "model" else repo_type
                raise _HTTPError(401, f"Access to {kind} {repo_id} is restricted. You must have "
                                 "access to it and be authenticated to access it. Please log in.",
                                 code="GatedRepo")
            hub._check_error_fault(repo_type, repo_id, path)
            commit = hub._find_commit(repo, revision)
            f = commit.files.get(path)
            if f is None:
                raise _HTTPError(404, f"{path} does not exist on \"{revision}\"",
                                 code="EntryNotFound", headers={"X-Repo-Commit": commit.sha})
            headers = hub._file_headers(commit, f)
        if f.lfs and hub.lfs_redirect:
            headers["Location"] = hub._cdn_location(repo, f)
            return self._send(record, 302, headers, b"")
        self._send_file(hub, record, repo_type, repo_id, f, headers)

    def _cdn(self, hub: MockHub, sha256: str, record: RequestRecord) -> None:
        query = record.query
        repo_id = query.get("repo", [None])[-1]
        repo_type = query.get("type", ["model"])[-1]
        filename = query.get("file", [None])[-1]
        hub._update(record, kind="cdn", repo_id=repo_id, filename=filename)
        data = hub._blobs.get(sha256)
        if data is None:
            raise _HTTPError(404, "NoSuchKey")
        f = MockFile.make(filename or sha256, data, lfs=True)
        headers = {"ETag": f'"{sha256}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        if filename:
            name = filename.rsplit("/", 1)[-1]
            headers["Content-Disposition"] = f'inline; filename="{name}";'
        self._send_file(hub, record, repo_type, repo_id or "", f, headers)

    # -- sending ----------------------------------------------------------------------------

    def _send_file(self, hub: MockHub, record: RequestRecord, repo_type: str, repo_id: str,
                   f: MockFile, headers: dict[str, str]) -> None:
        size = len(f.data)
        status, start, end = 200, 0, size
        spec = self.headers.get("Range")
        if spec and (m := _RANGE_RE.match(spec)) and (m[1] or m[2]):
            if m[1]:
                start = int(m[1])
                end = min(int(m[2]) + 1, size) if m[2] else size
            else:
                start = max(size - int(m[2]), 0)
            if start >= size or start >= end:
                headers["Content-Range"] = f"bytes */{size}"
                raise _HTTPError(416, "Requested Range Not Satisfiable", headers=headers)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        headers["Content-Length"] = str(end - start)
        if self.command == "HEAD":
            return self._send(record, status, headers, b"")
        fault = hub._take_fault(repo_type, repo_id, f.path, drop=True)
        body = f.data[start:end]
        if fault is not None:
            body = body[:fault.after_bytes]
        self._start_response(record, status, headers)
        self._write_body(hub, record, body)
        if fault is not None:
            hub._update(record, dropped=True)
            self._kill_connection(reset=fault.reset)

    def _write_body(self, hub: MockHub, record: RequestRecord, body: bytes) -> None:
        sent = 0
        while sent < len(body):
            if hub._stopping.is_set():
                raise ConnectionAbortedError("mock hub stopped")
            rate = hub._bytes_per_second
            chunk = body[sent:sent + (max(1024, rate // 20) if rate else 1 << 20)]
            sent += len(chunk)
            hub._update(record, body_bytes=sent)  # before the client can have it
            self.wfile.write(chunk)
            if rate:
                self.wfile.flush()
                time.sleep(len(chunk) / rate)
        self.wfile.flush()

    def _kill_connection(self, *, reset: bool) -> None:
        """Close the socket mid-body: a FIN (clean EOF) or, with `reset`, a TCP RST."""
        self.close_connection = True
        if reset:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
        for stream in (self.wfile, self.rfile):
            with contextlib.suppress(OSError):
                stream.close()
        self.connection.close()  # the streams are closed, so this closes the socket now
        self.wfile = io.BytesIO()  # what BaseHTTPRequestHandler still flushes goes nowhere

    def _start_response(self, record: RequestRecord, status: int,
                        headers: Mapping[str, str]) -> None:
        # Logged before anything is sent: a client that has the response may look at the log.
        self.server.hub._update(record, status=status)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _send(self, record: RequestRecord, status: int, headers: dict[str, str],
              body: bytes) -> None:
        headers.setdefault("Content-Length", str(len(body)))
        self._start_response(record, status, headers)
        if body and self.command != "HEAD":
            self.server.hub._update(record, body_bytes=len(body))  # logged before it is sent
            self.wfile.write(body)
        self.wfile.flush()

    def _send_json(self, record: RequestRecord, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self._send(record, 200, {"Content-Type": "application/json; charset=utf-8"}, body)

    def _send_error(self, record: RequestRecord, error: _HTTPError) -> None:
        headers = dict(error.headers)
        headers["Content-Type"] = "application/json; charset=utf-8"
        headers["X-Error-Message"] = error.message
        if error.code:
            headers["X-Error-Code"] = error.code
        headers.pop("Content-Length", None)
        try:
            self._send(record, error.status, headers, json.dumps({"error": error.message}).encode())
        except OSError:
            self.server.hub._update(record, aborted=True)
            self.close_connection = True
