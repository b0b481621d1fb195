"""`mixtui download` and `mixtui verify` against the mock Hub, through the real command.

Each test runs `python -m mixtui` as a user would, with HF_ENDPOINT pointing at the mock Hub
on 127.0.0.1 and an empty Hugging Face cache; the mock's request log shows exactly which
files were fetched. Faults are numbered as in the issue that specified them.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mockhub import MockHub

REPO = "test-org/tiny-shards"
SHARD = 400_000
FILES = {
    "config.json": b'{"model_type": "mixtral", "hidden_size": 64}',
    "tokenizer.json": b'{"version": "1.0"}',
    "model.safetensors.index.json": (b'{"weight_map": {"a": "model-00001-of-00002.safetensors",'
                                     b' "b": "model-00002-of-00002.safetensors"}}'),
    "model-00001-of-00002.safetensors": os.urandom(SHARD),
    "model-00002-of-00002.safetensors": os.urandom(SHARD),
    "README.md": b"# not needed by MLX\n",
    "original/consolidated.00.pth": os.urandom(1000),
}
NEEDED = {k for k in FILES if k != "README.md" and not k.startswith("original/")}


def mixtui(env: dict[str, str], *args: str, timeout: float = 60,
           **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mixtui", *args], env=env, text=True,
                          capture_output=True, timeout=timeout, **kw)  # type: ignore[call-overload]


def storage(env: dict[str, str], repo: str = REPO) -> Path:
    return Path(env["HF_HUB_CACHE"]) / ("models--" + repo.replace("/", "--"))


def snapshot(env: dict[str, str], repo: str = REPO) -> Path:
    folder = storage(env, repo)
    return folder / "snapshots" / (folder / "refs" / "main").read_text().strip()


def partial_files(env: dict[str, str]) -> list[Path]:
    return list(Path(env["HF_HUB_CACHE"]).rglob("*.incomplete"))


@pytest.fixture
def repo(mock_hub: MockHub) -> MockHub:
    mock_hub.add_repo(REPO, FILES)
    return mock_hub


def test_download_shows_progress_and_fetches_only_what_mlx_needs(
        repo: MockHub, hub_env: dict[str, str]) -> None:
    repo.throttle(600_000)
    run = mixtui(hub_env, "download", REPO)
    assert run.returncode == 0, run.stderr
    assert "fetching 5 files" in run.stderr
    assert "100.0%" in run.stderr and "files 5/5" in run.stderr
    assert sorted(repo.file_downloads(REPO)) == sorted(NEEDED)
    snap = snapshot(hub_env)
    for name in NEEDED:
        assert (snap / name).read_bytes() == FILES[name]
    assert not (snap / "README.md").exists()
    # the standard cache layout: huggingface_hub's own scanner sees the repo and its files
    from huggingface_hub import scan_cache_dir

    info = scan_cache_dir(hub_env["HF_HUB_CACHE"])
    (cached,) = [r for r in info.repos if r.repo_id == REPO]
    assert cached.nb_files == len(NEEDED)
    # a second run fetches nothing
    repo.clear_log()
    again = mixtui(hub_env, "download", REPO)
    assert again.returncode == 0, again.stderr
    assert "already here" in again.stderr
    assert repo.file_downloads(REPO) == []


def test_fault_01_connection_dropped_mid_file_is_retried(repo: MockHub,
                                                         hub_env: dict[str, str]) -> None:
    repo.drop_connection(REPO, "model-00001-of-00002.safetensors", after_bytes=150_000)
    run = mixtui(hub_env, "download", REPO)
    assert run.returncode == 0, run.stderr
    # huggingface_hub retries the cut file in the same run (from where its last write ended)
    gets = [r for r in repo.requests if r.method == "GET" and "model-00001" in r.path]
    assert len(gets) == 2
    assert (snapshot(hub_env) / "model-00001-of-00002.safetensors").read_bytes() == \
        FILES["model-00001-of-00002.safetensors"]
    assert mixtui(hub_env, "verify", REPO).returncode == 0


def test_fault_01_big_file_cut_part_way_resumes_with_a_range_request(
        mock_hub: MockHub, hub_env: dict[str, str]) -> None:
    # huggingface_hub writes in 10 MiB chunks: past the first one, a cut resumes, not restarts
    big = os.urandom(11 * 2**20)
    mock_hub.add_repo("test-org/big", {"config.json": FILES["config.json"],
                                       "model.safetensors": big})
    mock_hub.drop_connection("test-org/big", "model.safetensors", after_bytes=int(10.5 * 2**20))
    run = mixtui(hub_env, "download", "test-org/big")
    assert run.returncode == 0, run.stderr
    resumed = [r for r in mock_hub.requests
               if r.method == "GET" and r.filename == "model.safetensors" and r.range]
    assert resumed and resumed[0].range.startswith("bytes=10485760-")
    assert (snapshot(hub_env, "test-org/big") / "model.safetensors").read_bytes() == big


def test_fault_01_connection_that_keeps_dropping_fails_clearly_and_keeps_finished_files(
        repo: MockHub, hub_env: dict[str, str]) -> None:
    repo.drop_connection(REPO, "model-00002-of-00002.safetensors", after_bytes=1000, times=50)
    run = mixtui(hub_env, "download", REPO)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert "connection dropped" in run.stderr and "finished files are kept" in run.stderr
    assert not partial_files(hub_env)
    finished = {p.name for p in (storage(hub_env) / "snapshots").rglob("*") if p.is_file()}
    assert "model-00001-of-00002.safetensors" in finished
    repo.drop_connection(REPO, "model-00002-of-00002.safetensors", after_bytes=0, times=0)
    repo.clear_log()
    again = mixtui(hub_env, "download", REPO)
    assert again.returncode == 0, again.stderr
    assert sorted(repo.file_downloads(REPO)) == sorted(NEEDED - finished)


def _ctrl_c_default() -> None:
    """In the child: SIGINT as in a terminal, even if this test runs where it is ignored
    (a shell's background job inherits SIGINT ignored, and Python then never sees it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class _Lines:
    """Collect a process's stderr lines in a thread, so a test can wait for one."""

    def __init__(self, proc: subprocess.Popen[str]):
        self.lines: list[str] = []
        assert proc.stderr is not None
        self._thread = threading.Thread(target=self._read, args=(proc.stderr,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert time.monotonic() < deadline, f"never saw {text!r} in {self.lines}"
            time.sleep(0.05)

    def text(self) -> str:
        self._thread.join(timeout=5)
        return "".join(self.lines)


def test_fault_02_cancel_stops_within_2s_and_the_next_run_fetches_only_the_rest(
        repo: MockHub, hub_env: dict[str, str]) -> None:
    repo.throttle(100_000)  # a shard takes 4 s
    # in a session of its own, so that ctrl+c reaches every process of it, as in a terminal
    proc = subprocess.Popen([sys.executable, "-m", "mixtui", "download", REPO], env=hub_env,
                            text=True, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            start_new_session=True, preexec_fn=_ctrl_c_default)
    lines = _Lines(proc)
    lines.wait_for("files 3/5")  # the small files are done, the shards are on their way
    time.sleep(0.5)
    sent = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=10)
    took = time.monotonic() - sent
    err = lines.text()
    assert proc.returncode == 130, err
    assert took < 2.0, f"cancel took {took:.2f} s"
    assert "download cancelled; 3 of 5 files are finished and kept" in err
    assert "Traceback" not in err
    assert not partial_files(hub_env)
    snap = snapshot(hub_env)
    finished = {p.name for p in snap.iterdir()}
    assert finished == {"config.json", "tokenizer.json", "model.safetensors.index.json"}
    for name in finished:  # nothing partial was ever taken for a whole file
        assert (snap / name).read_bytes() == FILES[name]
    repo.throttle(None)
    repo.clear_log()
    again = mixtui(hub_env, "download", REPO)
    assert again.returncode == 0, again.stderr
    assert sorted(repo.file_downloads(REPO)) == sorted(NEEDED - finished)
    assert mixtui(hub_env, "verify", REPO).returncode == 0


def test_fault_03_disk_too_small_before_starting(repo: MockHub,
                                                 hub_env: dict[str, str]) -> None:
    env = dict(hub_env, MIXTUI_DOWNLOAD_RESERVE="1000000TB")
    run = mixtui(env, "download", REPO)
    assert run.returncode == 1
    assert "needs 800.2 KB more on disk" in run.stderr and "free" in run.stderr
    assert repo.file_downloads(REPO) == []


def _file_size_limit() -> None:  # in the child: writing past 150 kB fails as a full disk does
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))


def test_fault_03_disk_full_during_download(repo: MockHub, hub_env: dict[str, str]) -> None:
    run = mixtui(hub_env, "download", REPO, preexec_fn=_file_size_limit)
    assert run.returncode == 1, run.stderr
    assert "The disk filled up while downloading" in run.stderr
    assert "Traceback" not in run.stderr
    assert not partial_files(hub_env)
    # Which small files finished before the shard failed depends on huggingface_hub's worker
    # threads (under load, not even one may have): every file kept is whole, no shard is.
    snap = snapshot(hub_env)
    kept = {p.name for p in snap.iterdir()} if snap.is_dir() else set()
    assert not any("safetensors" in k and "index" not in k for k in kept)
    for name in kept:
        assert (snap / name).read_bytes() == FILES[name]
    repo.clear_log()
    again = mixtui(hub_env, "download", REPO)
    assert again.returncode == 0, again.stderr
    assert sorted(repo.file_downloads(REPO)) == sorted(NEEDED - kept)


def _download(repo: MockHub, env: dict[str, str]) -> Path:
    run = mixtui(env, "download", REPO)
    assert run.returncode == 0, run.stderr
    return snapshot(env)


def test_fault_04_truncated_file_is_found_and_repaired(repo: MockHub,
                                                       hub_env: dict[str, str]) -> None:
    snap = _download(repo, hub_env)
    shard = snap / "model-00002-of-00002.safetensors"
    with open(shard.resolve(), "r+b") as f:
        f.truncate(SHARD // 2)
    check = mixtui(hub_env, "verify", REPO)
    assert check.returncode == 1
    assert ("model-00002-of-00002.safetensors: truncated (200,000 of 400,000 bytes)"
            in check.stdout)
    assert "run `mixtui verify test-org/tiny-shards --repair`" in check.stderr
    repo.clear_log()
    fix = mixtui(hub_env, "verify", REPO, "--repair")
    assert fix.returncode == 0, fix.stderr
    assert repo.file_downloads(REPO) == ["model-00002-of-00002.safetensors"]
    assert "model-00002-of-00002.safetensors: repaired" in fix.stdout
    assert shard.read_bytes() == FILES["model-00002-of-00002.safetensors"]


def test_fault_05_same_size_corruption_is_found_by_sha256_and_repaired(
        repo: MockHub, hub_env: dict[str, str]) -> None:
    snap = _download(repo, hub_env)
    shard = snap / "model-00001-of-00002.safetensors"
    with open(shard.resolve(), "r+b") as f:
        f.seek(SHARD // 2)
        byte = f.read(1)
        f.seek(SHARD // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    check = mixtui(hub_env, "verify", REPO, "--offline")  # the record works without network
    assert check.returncode == 1
    assert ("model-00001-of-00002.safetensors: corrupt (SHA-256 does not match, same size)"
            in check.stdout)
    assert "config.json: ok" in check.stdout
    repo.clear_log()
    fix = mixtui(hub_env, "verify", REPO, "--repair")
    assert fix.returncode == 0, fix.stderr
    assert repo.file_downloads(REPO) == ["model-00001-of-00002.safetensors"]
    assert mixtui(hub_env, "verify", REPO, "--offline").returncode == 0


def test_fault_06_missing_shard_is_reported_by_name_and_repaired(
        repo: MockHub, hub_env: dict[str, str]) -> None:
    snap = _download(repo, hub_env)
    (snap / "model-00002-of-00002.safetensors").unlink()
    check = mixtui(hub_env, "verify", REPO)
    assert check.returncode == 1
    assert "model-00002-of-00002.safetensors: missing" in check.stdout
    repo.clear_log()
    fix = mixtui(hub_env, "verify", REPO, "--repair")
    assert fix.returncode == 0, fix.stderr
    assert repo.file_downloads(REPO) == []  # its blob was intact: linked again, not fetched
    # a missing link whose blob is damaged too is fetched again
    (snap / "model-00002-of-00002.safetensors").unlink()
    blob = storage(hub_env) / "blobs"
    damaged = max(blob.iterdir(), key=lambda p: p.stat().st_size)
    damaged.write_bytes(b"\0" * damaged.stat().st_size)
    fix = mixtui(hub_env, "verify", REPO, "--repair")
    assert fix.returncode == 0, fix.stderr
    assert mixtui(hub_env, "verify", REPO, "--offline").returncode == 0


def test_fault_07_offline_with_an_incomplete_cache_names_the_missing_files(
        repo: MockHub, hub_env: dict[str, str]) -> None:
    snap = _download(repo, hub_env)
    (snap / "model-00001-of-00002.safetensors").unlink()
    repo.clear_log()
    for args, env in ((("--offline",), hub_env), ((), dict(hub_env, HF_HUB_OFFLINE="1"))):
        run = mixtui(env, "download", REPO, *args)
        assert run.returncode == 1
        assert ("Offline, and 1 of 5 files of test-org/tiny-shards are not cached "
                "(model-00001-of-00002.safetensors)") in run.stderr
    assert repo.requests == []  # offline means no request at all


def test_fault_08_offline_with_nothing_cached(repo: MockHub, hub_env: dict[str, str]) -> None:
    run = mixtui(hub_env, "download", REPO, "--offline")
    assert run.returncode == 1
    assert "Offline, and nothing of test-org/tiny-shards is cached" in run.stderr
    assert repo.requests == []


def test_fault_09_gated_repository_and_tokens(mock_hub: MockHub,
                                              hub_env: dict[str, str]) -> None:
    gated = "test-org/gated-model"
    mock_hub.add_repo(gated, FILES, gated=True)
    token = "hf_secretTOKENvalue1234"
    mock_hub.require_token(token)
    run = mixtui(hub_env, "download", gated)
    assert run.returncode == 1
    assert "test-org/gated-model is a gated repository; accept its licence" in run.stderr
    assert "hf auth login" in run.stderr
    wrong = mixtui(dict(hub_env, HF_TOKEN="hf_wrongTOKEN9876"), "download", gated)
    assert wrong.returncode == 1
    assert "The Hub refused your token (401)" in wrong.stderr
    assert "hf_wrongTOKEN9876" not in wrong.stderr + wrong.stdout
    ok = mixtui(dict(hub_env, HF_TOKEN=token), "download", gated)
    assert ok.returncode == 0, ok.stderr
    assert token not in ok.stderr + ok.stdout


def test_fault_10_unknown_repository_or_revision(repo: MockHub,
                                                 hub_env: dict[str, str]) -> None:
    missing = mixtui(hub_env, "download", "test-org/no-such-model")
    assert missing.returncode == 2
    assert "test-org/no-such-model was not found on the Hub" in missing.stderr
    assert "check the name" in missing.stderr
    revision = mixtui(hub_env, "download", REPO, "--revision", "v9.9")
    assert revision.returncode == 2
    assert "test-org/tiny-shards has no revision 'v9.9'" in revision.stderr
    bad_name = mixtui(hub_env, "download", "not a model")
    assert bad_name.returncode == 2
    assert "Unknown model 'not a model'" in bad_name.stderr


def test_bundled_model_needs_no_download(hub_env: dict[str, str]) -> None:
    run = mixtui(hub_env, "download", "nano")
    assert run.returncode == 2
    assert "nano is bundled with mixtui, so there is nothing to download" in run.stderr


def test_fault_05_a_model_with_a_known_bad_file_is_never_loaded(
        mock_hub: MockHub, hub_env: dict[str, str], tiny_moe_dir: Path) -> None:
    from conftest import model_repo_files

    mock_hub.add_repo("test-org/tiny-moe", model_repo_files(tiny_moe_dir))
    assert mixtui(hub_env, "download", "test-org/tiny-moe").returncode == 0
    weights = snapshot(hub_env, "test-org/tiny-moe") / "model.safetensors"
    size = weights.stat().st_size
    with open(weights.resolve(), "r+b") as f:  # damage a tensor, not the header
        f.seek(size - 100)
        f.write(b"\xff" * 8)
    generate = ("generate", "--model", "test-org/tiny-moe", "--prompt", "w5", "--max-tokens", "2")
    assert mixtui(hub_env, *generate).returncode == 0  # nothing knows yet: it loads
    assert mixtui(hub_env, "verify", "test-org/tiny-moe").returncode == 1
    refused = mixtui(hub_env, *generate)
    assert refused.returncode == 1
    assert ("test-org/tiny-moe has a bad file in" in refused.stderr
            and "model.safetensors: corrupt" in refused.stderr
            and "run `mixtui verify test-org/tiny-moe --repair`" in refused.stderr)
    assert mixtui(hub_env, "verify", "test-org/tiny-moe", "--repair").returncode == 0
    assert mixtui(hub_env, *generate).returncode == 0
    # a truncated file is caught before a load even without a verify: its size is on record
    with open(weights.resolve(), "r+b") as f:
        f.truncate(size - 1000)
    cut = mixtui(hub_env, *generate)
    assert cut.returncode == 1 and "model.safetensors: truncated" in cut.stderr


def test_a_new_commit_upstream_is_linked_without_fetching_what_is_here(
        repo: MockHub, hub_env: dict[str, str]) -> None:
    old = _download(repo, hub_env)
    repo.set_file(REPO, "config.json", FILES["config.json"] + b" ")  # a new commit upstream
    repo.clear_log()
    run = mixtui(hub_env, "download", REPO)
    assert run.returncode == 0, run.stderr
    assert repo.file_downloads(REPO) == ["config.json"]  # the shards' blobs are reused
    new = snapshot(hub_env)
    assert new != old and sorted(p.name for p in new.iterdir()) == sorted(NEEDED)
    assert mixtui(hub_env, "verify", REPO, "--offline").returncode == 0
    # a commit that changes nothing MLX needs: a new snapshot, linked, nothing fetched
    repo.set_file(REPO, "README.md", b"# changed\n")
    repo.clear_log()
    run = mixtui(hub_env, "download", REPO)
    assert run.returncode == 0, run.stderr
    assert repo.file_downloads(REPO) == []
    assert snapshot(hub_env) != new
    assert mixtui(hub_env, "verify", REPO, "--offline").returncode == 0


def test_a_cancelled_update_keeps_the_complete_snapshot_of_before(
        repo: MockHub, hub_env: dict[str, str]) -> None:
    old = _download(repo, hub_env)
    repo.set_file(REPO, "model-00002-of-00002.safetensors", os.urandom(SHARD))
    repo.throttle(50_000)
    proc = subprocess.Popen([sys.executable, "-m", "mixtui", "download", REPO], env=hub_env,
                            text=True, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            start_new_session=True, preexec_fn=_ctrl_c_default)
    lines = _Lines(proc)
    lines.wait_for("fetching 1 file")
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=10)
    assert proc.returncode == 130, lines.text()
    assert snapshot(hub_env) == old  # main still names the complete snapshot
    assert mixtui(hub_env, "verify", REPO, "--offline").returncode == 0
