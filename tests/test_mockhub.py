"""The mock Hub (tests/mockhub.py) against the real, installed huggingface_hub.

huggingface_hub read HF_ENDPOINT when it was imported, so these in-process calls pass
``endpoint=hub.url`` (or use the `hub_in_process` fixture); subprocesses get `hub_env`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest
from conftest import model_repo_files
from huggingface_hub import (
    HfApi,
    get_cached_repo_tree,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from mockhub import MockHub, git_blob_sha1

REPO = "test-org/tiny"


def safetensors_bytes(tensors: dict[str, tuple[str, list[int]]], pad: int = 0) -> bytes:
    """A valid safetensors file of zeros (F32 only), then `pad` bytes of varied filler."""
    header, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        size = 4 * math.prod(shape)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    filler = (bytes(range(256)) * (pad // 256 + 1))[:pad]
    return struct.pack("<Q", len(raw)) + raw + bytes(offset) + filler


def files() -> dict[str, bytes]:
    return {
        "config.json": json.dumps({"model_type": "mixtral", "architectures": ["X"]}).encode(),
        "tokenizer.json": b'{"version": "1.0"}',
        "model.safetensors": safetensors_bytes({"a": ("F32", [4, 8]), "b": ("F32", [8])}, 5000),
        "sub/notes.txt": b"hello",
    }


def gets(hub: MockHub) -> list[str]:
    return sorted(hub.file_downloads())


def test_snapshot_download_cache_layout_bytes_and_request_order(mock_hub, tmp_path):
    content = files()
    repo = mock_hub.add_repo(REPO, content)
    sha = repo.sha()

    path = Path(snapshot_download(REPO, endpoint=mock_hub.url, cache_dir=tmp_path))

    storage = tmp_path / "models--test-org--tiny"
    assert path == storage / "snapshots" / sha
    assert (storage / "refs" / "main").read_text() == sha
    for name, data in content.items():
        assert (path / name).read_bytes() == data
        lfs = name.endswith(".safetensors")
        etag = hashlib.sha256(data).hexdigest() if lfs else git_blob_sha1(data)
        assert (path / name).resolve() == storage / "blobs" / etag
    # hf 2.4: repo info for the branch, the recursive tree at the commit, then per file
    # HEAD + GET at the commit.
    log = mock_hub.requests
    assert [(r.kind, r.method) for r in log[:2]] == [("info", "GET"), ("tree", "GET")]
    assert log[0].path == f"/api/models/{REPO}/revision/main"
    assert log[1].path == f"/api/models/{REPO}/tree/{sha}" and log[1].query["recursive"] == ["true"]
    assert sorted(r.filename for r in log[2:] if r.method == "HEAD") == sorted(content)
    assert all(r.revision == sha and r.status == 200 for r in log[2:])
    assert gets(mock_hub) == sorted(content)
    assert not any(r.authorization for r in log)

    # The tree listing is cached by commit, with LFS sha256s; get_cached_repo_tree reads it.
    tree = json.loads((storage / "trees" / f"{sha}.json").read_text())["files"]
    lfs_file = repo.files()["model.safetensors"]
    assert tree["model.safetensors"]["lfs_sha256"] == lfs_file.sha256
    assert tree["model.safetensors"]["lfs_size"] == len(content["model.safetensors"])
    assert "lfs_sha256" not in tree["config.json"]
    cached = {f.path: f for f in get_cached_repo_tree(REPO, cache_dir=tmp_path)}
    assert {p: f.size for p, f in cached.items()} == {p: len(d) for p, d in content.items()}
    assert cached["config.json"].blob_id == git_blob_sha1(content["config.json"])

    # A second snapshot only asks which commit main is: no tree, no HEAD, no bodies.
    mock_hub.clear_log()
    assert snapshot_download(REPO, endpoint=mock_hub.url, cache_dir=tmp_path) == str(path)
    assert [(r.kind, r.method) for r in mock_hub.requests] == [("info", "GET")]
    assert mock_hub.file_downloads() == []


def test_dry_run_lists_sizes_and_what_would_download(mock_hub, tmp_path):
    content = files()
    mock_hub.add_repo(REPO, content)
    kwargs = {"endpoint": mock_hub.url, "cache_dir": tmp_path, "dry_run": True}

    plan = {f.filename: f for f in snapshot_download(REPO, **kwargs)}
    assert {n: f.file_size for n, f in plan.items()} == {n: len(d) for n, d in content.items()}
    assert all(f.will_download and not f.is_cached for f in plan.values())
    assert mock_hub.file_downloads() == []
    assert not (tmp_path / "models--test-org--tiny" / "trees").exists()

    hf_hub_download(REPO, "config.json", endpoint=mock_hub.url, cache_dir=tmp_path)
    plan = {f.filename: f for f in snapshot_download(REPO, **kwargs)}
    assert {n for n, f in plan.items() if f.will_download} == set(content) - {"config.json"}


def test_repo_info_tree_revisions_and_changed_files(mock_hub, tmp_path):
    repo = mock_hub.add_repo(REPO, files(), revisions={"v1": {"config.json": b"{}"}})
    api = HfApi(endpoint=mock_hub.url)

    info = api.model_info(REPO, files_metadata=True)
    assert info.id == REPO and info.sha == repo.sha() and info.gated is False
    siblings = {s.rfilename: s for s in info.siblings}
    assert siblings["model.safetensors"].lfs.sha256 == repo.files()["model.safetensors"].sha256
    assert siblings["config.json"].lfs is None and siblings["config.json"].size > 0
    assert info.safetensors.total == 4 * 8 + 8 and info.config["model_type"] == "mixtral"
    assert api.model_info(REPO, revision="v1").sha == repo.sha("v1") != repo.sha()

    top = {(e.path, type(e).__name__) for e in api.list_repo_tree(REPO)}
    assert ("sub", "RepoFolder") in top and ("sub/notes.txt", "RepoFile") not in top
    assert [e.path for e in api.list_repo_tree(REPO, "sub")] == ["sub/notes.txt"]

    v1 = Path(snapshot_download(REPO, revision="v1", endpoint=mock_hub.url, cache_dir=tmp_path))
    assert sorted(p.name for p in v1.iterdir()) == ["config.json"]

    old = repo.sha()
    new = mock_hub.set_file(REPO, "config.json", b'{"changed": true}')
    assert new == repo.sha() != old
    path = snapshot_download(REPO, endpoint=mock_hub.url, cache_dir=tmp_path)
    assert Path(path, "config.json").read_bytes() == b'{"changed": true}'
    by_commit = hf_hub_download(REPO, "config.json", revision=old, endpoint=mock_hub.url,
                                cache_dir=tmp_path)
    assert Path(by_commit).read_bytes() == files()["config.json"]


def test_dropped_connection_resumes_with_a_range_request(mock_hub, tmp_path):
    # hf 2.4 writes the body in 10 MiB chunks (constants.DOWNLOAD_CHUNK_SIZE): a drop before
    # the first chunk is complete restarts from 0; only a later drop resumes with Range.
    data = os.urandom(11 * 2**20)
    mock_hub.add_repo(REPO, {"model.safetensors": data})
    mock_hub.drop_connection(REPO, "model.safetensors", after_bytes=10 * 2**20 + 12345)

    path = hf_hub_download(REPO, "model.safetensors", endpoint=mock_hub.url, cache_dir=tmp_path)

    assert Path(path).read_bytes() == data
    got = [r for r in mock_hub.requests if r.method == "GET"]
    assert [(r.status, r.range, r.dropped) for r in got] == [
        (200, None, True), (206, f"bytes={10 * 2**20}-", False)]
    assert got[1].body_bytes == len(data) - 10 * 2**20


def test_reset_connection_is_not_retried_by_hf(mock_hub, tmp_path):
    # A TCP RST surfaces as httpx2.ReadError, which hf 2.4's http_get does not retry.
    mock_hub.add_repo(REPO, {"model.safetensors": os.urandom(200_000)})
    mock_hub.drop_connection(REPO, "model.safetensors", after_bytes=1000, reset=True)
    with pytest.raises(httpx2.NetworkError):
        hf_hub_download(REPO, "model.safetensors", endpoint=mock_hub.url, cache_dir=tmp_path)
    assert [r.dropped for r in mock_hub.requests if r.method == "GET"] == [True]
    assert not list((tmp_path / "models--test-org--tiny" / "blobs").iterdir())

    mock_hub.drop_connection(REPO, "model.safetensors", after_bytes=10, times=3)
    mock_hub.drop_connection(REPO, "model.safetensors", after_bytes=10, times=0)  # cancels
    hf_hub_download(REPO, "model.safetensors", endpoint=mock_hub.url, cache_dir=tmp_path)
    assert [r.dropped for r in mock_hub.requests if r.method == "GET"] == [True, False]


def test_gated_repo_and_tokens(mock_hub, tmp_path):
    mock_hub.add_repo(REPO, files(), gated=True)
    mock_hub.require_token("hf_right")
    kwargs = {"endpoint": mock_hub.url, "cache_dir": tmp_path}

    with pytest.raises(GatedRepoError) as gated:  # info and tree are public, files are not
        snapshot_download(REPO, **kwargs)
    assert gated.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as wrong:
        snapshot_download(REPO, token="hf_wrong", **kwargs)
    assert wrong.value.response.status_code == 401
    assert not isinstance(wrong.value, RepositoryNotFoundError)
    assert "Invalid credentials" in str(wrong.value)

    path = snapshot_download(REPO, token="hf_right", **kwargs)
    assert Path(path, "model.safetensors").read_bytes() == files()["model.safetensors"]
    assert sorted(mock_hub.file_downloads()) == sorted(files())
    api = HfApi(endpoint=mock_hub.url)
    assert api.model_info(REPO).gated == "auto"
    assert api.whoami(token="hf_right")["name"] == "mock-user"
    log = mock_hub.requests
    assert any(r.authorization for r in log) and "hf_right" not in repr(log)


def test_unknown_repo_revision_and_file(mock_hub, tmp_path):
    mock_hub.add_repo(REPO, files())
    kwargs = {"endpoint": mock_hub.url, "cache_dir": tmp_path}
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("test-org/nope", **kwargs)
    with pytest.raises(RevisionNotFoundError):
        snapshot_download(REPO, revision="nope", **kwargs)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "missing.bin", **kwargs)
    statuses = [(r.kind, r.status) for r in mock_hub.requests]
    assert statuses == [("info", 401), ("info", 404), ("resolve", 404)]


def test_lfs_redirect_to_cdn_drops_the_token(tmp_path):
    content = files()
    with MockHub(lfs_redirect=True) as hub:
        hub.add_repo(REPO, content, private=True)
        path = snapshot_download(REPO, endpoint=hub.url, cache_dir=tmp_path, token="hf_any")
        cdn = [r for r in hub.requests if r.kind == "cdn"]
    assert Path(path, "model.safetensors").read_bytes() == content["model.safetensors"]
    assert [(r.filename, r.authorization, r.status) for r in cdn] == [
        ("model.safetensors", False, 200)]


def test_server_errors_retry_and_offline_fallback(mock_hub, tmp_path):
    mock_hub.add_repo(REPO, files())
    kwargs = {"endpoint": mock_hub.url, "cache_dir": tmp_path}
    mock_hub.fail(REPO, 503, path="config.json")  # the HEAD fails once; hf retries it
    path = snapshot_download(REPO, **kwargs)
    heads = [r.status for r in mock_hub.requests if r.method == "HEAD"
             and r.filename == "config.json"]
    assert heads == [503, 200]

    mock_hub.clear_log()
    mock_hub.fail(REPO, 500)  # repo info fails: hf falls back to the cached snapshot
    assert snapshot_download(REPO, **kwargs) == path
    assert [r.status for r in mock_hub.requests] == [500]


def test_throttle_slows_bodies(mock_hub, tmp_path):
    data = os.urandom(300_000)
    mock_hub.add_repo(REPO, {"model.safetensors": data})
    mock_hub.throttle(200_000)
    start = time.monotonic()
    path = hf_hub_download(REPO, "model.safetensors", endpoint=mock_hub.url, cache_dir=tmp_path)
    assert time.monotonic() - start > 1.0
    assert Path(path).read_bytes() == data

    # A client that gives up mid-body (a cancelled download) is logged as aborted.
    mock_hub.clear_log()
    url = f"{mock_hub.url}/{REPO}/resolve/main/model.safetensors"
    with httpx2.Client() as client, client.stream("GET", url) as response:
        assert response.status_code == 200
        next(response.iter_bytes())
    deadline = time.monotonic() + 5
    while not mock_hub.requests[0].aborted and time.monotonic() < deadline:
        time.sleep(0.02)
    assert mock_hub.requests[0].aborted and 0 < mock_hub.requests[0].body_bytes < len(data)
    mock_hub.throttle(None)


def test_hub_in_process_needs_no_endpoint(hub_in_process, tmp_path):
    hub_in_process.add_repo(REPO, {"config.json": b"{}"})
    path = hf_hub_download(REPO, "config.json")
    assert Path(path).is_relative_to(tmp_path / "hf-home" / "hub")
    assert hub_in_process.file_downloads(REPO) == ["config.json"]


def test_hub_env_subprocess_and_model_repo_files(mock_hub, hub_env, tmp_path):
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    for name, data in files().items():
        (model / name).write_bytes(data)
    repo_files = model_repo_files(model)
    assert repo_files == files()
    repo = mock_hub.add_repo(REPO, repo_files)

    code = f"from huggingface_hub import snapshot_download; print(snapshot_download({REPO!r}))"
    out = subprocess.run([sys.executable, "-c", code], env=hub_env, capture_output=True,
                         text=True, timeout=60, check=True).stdout.strip().splitlines()[-1]
    assert out == str(Path(hub_env["HF_HUB_CACHE"], "models--test-org--tiny", "snapshots",
                           repo.sha()))
    assert Path(out, "sub", "notes.txt").read_bytes() == b"hello"
