"""The engine's choice of CBLAS library on Linux (mixtui/engine/blas.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from mixtui.engine import blas


@pytest.fixture(autouse=True)
def fresh_choice(monkeypatch: pytest.MonkeyPatch):
    blas.fast_blas.cache_clear()
    yield
    blas.fast_blas.cache_clear()


def test_bundled_means_no_preload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXTUI_BLAS", "bundled")
    monkeypatch.setenv("LD_PRELOAD", "/opt/other.so")
    assert blas.fast_blas() is None
    assert blas.with_preload(dict(os.environ))["LD_PRELOAD"] == "/opt/other.so"


def test_a_path_that_is_not_a_blas_is_ignored(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    fake = tmp_path / "libnot.so"
    fake.write_bytes(b"not a shared library")
    monkeypatch.setenv("MIXTUI_BLAS", str(fake))
    assert blas.fast_blas() is None
    monkeypatch.setenv("MIXTUI_BLAS", str(tmp_path / "missing.so"))
    blas.fast_blas.cache_clear()
    assert blas.fast_blas() is None


@pytest.mark.skipif(sys.platform != "linux", reason="LD_PRELOAD is a Linux matter here")
def test_preload_goes_first_once_and_is_undone(monkeypatch: pytest.MonkeyPatch) -> None:
    library = next((p for p in blas.CANDIDATES if blas._exports_sgemm(p)), None)
    if library is None:
        pytest.skip("no system BLIS or OpenBLAS on this machine")
    monkeypatch.setenv("MIXTUI_BLAS", library)
    monkeypatch.setenv("LD_PRELOAD", f"/opt/other.so:{library}")
    env = blas.with_preload(dict(os.environ))
    assert env["LD_PRELOAD"] == f"{library}:/opt/other.so"
    monkeypatch.delenv("LD_PRELOAD")
    with blas.preload_for_children():
        assert os.environ["LD_PRELOAD"] == library
    assert "LD_PRELOAD" not in os.environ


def test_engine_reports_where_mlx_runs(tmp_path: Path) -> None:
    """The spawned engine process names its device and BLAS in ModelInfo."""
    from mixtui.core.paths import PACKAGE_DIR
    from mixtui.engine.client import EngineProcess
    from mixtui.engine.messages import Load, Ready

    engine = EngineProcess()
    try:
        engine.send(Load(str(PACKAGE_DIR / "models" / "nano"), "nano"))
        while True:
            event = engine.next_event(timeout=60)
            assert event is not None, "the engine did not answer"
            if isinstance(event, Ready):
                break
    finally:
        engine.close()
    device = event.info.device
    assert device == "gpu" or device.startswith("cpu")
    if sys.platform == "linux" and device.startswith("cpu"):
        expected = "bundled BLAS" if blas.fast_blas() is None else ("BLIS", "OpenBLAS")
        assert device.endswith(expected), device
