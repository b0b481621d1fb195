"""The TUI's download screen, driven by Pilot, fetching a real tiny model from the mock Hub.

Slot 2 of the model bar (mistral-7b-instruct) is overridden in the user's models.toml with a
Hub repo on the mock Hub that holds a tiny dense model, absent from the (empty) cache: picking
it offers the download, and once the files are here the model loads in a real engine.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import pytest
from conftest import model_repo_files
from mockhub import MockHub
from test_tui import notices, process_gone, ready, text_of, wait_for
from textual.message import Message
from textual.notifications import Notify
from textual.pilot import Pilot
from textual.widgets import Static

from mixtui.core.types import Sampling
from mixtui.families.geometry import Geometry
from mixtui.tui.app import MixtuiApp
from mixtui.tui.download_screen import DownloadScreen

pytestmark = pytest.mark.usefixtures("fixed_budget")
REPO = "test-org/tiny-dense"


@pytest.fixture
def hub(hub_in_process: MockHub, tiny_dense_dir: Path, dense_config: dict,
        isolated_config_dir: Path) -> MockHub:
    """The mock Hub holds the tiny dense model; the registry's slot 2 points at it."""
    hub_in_process.add_repo(REPO, model_repo_files(tiny_dense_dir))
    fields = {k: v for k, v in asdict(Geometry.from_hf_config(dense_config)).items()
              if k not in ("tie_embeddings", "dtype_bytes", "experts", "experts_per_token")}
    geometry = "\n".join(f"{k} = {json.dumps(v)}" for k, v in fields.items())
    (isolated_config_dir / "models.toml").write_text(
        f'[models.mistral-7b-instruct]\nname = "Tiny dense"\nrepo = "{REPO}"\nkind = "chat"\n'
        f"[models.mistral-7b-instruct.geometry]\n{geometry}\n")
    return hub_in_process


async def start_download(pilot: Pilot, app: MixtuiApp) -> DownloadScreen:
    """Pick slot 2 (not here), confirm, and wait until the weights are being written."""
    await pilot.press("escape", "2")
    await wait_for(pilot, lambda: isinstance(app.screen, DownloadScreen)
                   and app.screen.state == "ready")
    screen = app.screen
    assert isinstance(screen, DownloadScreen)
    await pilot.press("enter")
    await wait_for(pilot, lambda: screen.download is not None
                   and screen.download.progress().active != ())
    return screen


def partials(hub_cache: Path) -> list[Path]:
    return list(hub_cache.rglob("*.incomplete"))


async def test_picking_a_model_that_is_not_here_downloads_then_loads_it(
        hub: MockHub, tiny_moe_dir: Path) -> None:
    app = MixtuiApp(str(tiny_moe_dir), Sampling(temperature=0.0, max_tokens=8))
    async with app.run_test(size=(140, 45)) as pilot:
        await ready(pilot, app)
        assert "not here" in text_of(app.query_one("#model-bar"))
        await pilot.press("escape", "2")
        await wait_for(pilot, lambda: isinstance(app.screen, DownloadScreen))
        screen = app.screen
        assert isinstance(screen, DownloadScreen)
        await wait_for(pilot, lambda: screen.state == "ready")
        summary = text_of(screen.query_one("#dl-summary", Static))
        assert f"{REPO} @ " in summary and "fetching 5 files" in summary
        assert "model.safetensors" in text_of(screen.query_one("#dl-files", Static))
        assert hub.file_downloads(REPO) == []  # nothing is fetched before Enter
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.info is not None and not app.info.is_moe)
        assert not isinstance(app.screen, DownloadScreen)
        assert "model.safetensors" in hub.file_downloads(REPO)
        assert "on disk" in text_of(app.query_one("#model-bar"))


async def test_esc_cancels_the_download_within_2s_and_keeps_the_conversation(
        hub: MockHub, tiny_moe_dir: Path, tmp_path: Path) -> None:
    hub.throttle(20_000)  # the weights would take minutes
    app = MixtuiApp(str(tiny_moe_dir), Sampling(temperature=0.0, max_tokens=4))
    toasts: list[str] = []

    def hook(message: Message) -> None:
        if isinstance(message, Notify):
            toasts.append(message.notification.message)

    async with app.run_test(size=(140, 45), message_hook=hook) as pilot:
        await ready(pilot, app)
        engine = app.engine
        screen = await start_download(pilot, app)
        figures = text_of(screen.query_one("#dl-figures", Static))
        assert "files" in figures and "ETA" in figures
        child = screen.download._proc  # type: ignore[union-attr]
        started = time.monotonic()
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, DownloadScreen), timeout=5)
        assert time.monotonic() - started < 2.0
        assert process_gone(child.pid)
        assert not partials(tmp_path / "hf-home" / "hub")
        assert app.engine is engine and app.info is not None and app.info.is_moe
        await pilot.pause(0.2)
        assert any("Download cancelled" in n for n in toasts)


async def test_fault_19_quitting_during_a_download_exits_within_2s(
        hub: MockHub, tiny_moe_dir: Path, tmp_path: Path) -> None:
    hub.throttle(20_000)
    app = MixtuiApp(str(tiny_moe_dir), Sampling(temperature=0.0, max_tokens=4))
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        screen = await start_download(pilot, app)
        child = screen.download._proc  # type: ignore[union-attr]
        engine = app.engine
        started = time.monotonic()
        await pilot.press("ctrl+q")
    assert time.monotonic() - started < 2.0
    assert process_gone(child.pid)
    assert engine is not None and engine.pid is not None
    deadline = time.monotonic() + 5
    while not process_gone(engine.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_gone(engine.pid)
    assert not partials(tmp_path / "hf-home" / "hub")


async def test_a_model_that_does_not_fit_is_refused_before_any_download(
        hub: MockHub, tiny_moe_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = MixtuiApp(str(tiny_moe_dir), Sampling(temperature=0.0, max_tokens=4))
    async with app.run_test(size=(140, 45)) as pilot:
        await ready(pilot, app)
        monkeypatch.setenv("MIXTUI_MEMORY_BUDGET", "1MB")
        await pilot.press("escape", "2")
        await pilot.pause(0.3)
        assert not isinstance(app.screen, DownloadScreen)
        assert any("does not fit" in n for n in notices(app))
        assert hub.requests == []


async def test_the_last_sessions_model_gone_from_disk_opens_nano_instead(hub: MockHub) -> None:
    from mixtui.app.settings import Settings

    settings = Settings(last_model="mistral-7b-instruct")
    app = MixtuiApp(None, settings=settings, persist=False)
    async with app.run_test(size=(140, 45)) as pilot:
        await ready(pilot, app)
        assert app.spec is not None and app.spec.key == "nano"
        assert not isinstance(app.screen, DownloadScreen)
        assert any("the model of the last session, is not on disk" in n for n in notices(app))
        assert hub.requests == []
