"""The first frame does not wait for what it does not need: numpy, psutil, MLX, the Hub's API.

A fresh interpreter runs the app until its first frame (the hook benchmarks/startup.py uses:
MIXTUI_FIRST_FRAME_FILE with MIXTUI_EXIT_AFTER_FIRST_FRAME) and lists what was imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

LATER = ("numpy", "psutil", "mlx", "mlx_lm", "transformers", "huggingface_hub.hf_api",
         "importlib.metadata")

CODE = """
import asyncio, json, os, sys
from mixtui.tui.app import MixtuiApp
app = MixtuiApp(persist=False)
asyncio.run(app.run_async(headless=True, size=(140, 45)))
print(json.dumps(sorted(sys.modules)))
"""


def test_the_first_frame_comes_before_numpy_and_psutil(tmp_path: Path) -> None:
    env = {"MIXTUI_FIRST_FRAME_FILE": str(tmp_path / "first-frame"),
           "MIXTUI_EXIT_AFTER_FIRST_FRAME": "1", "MIXTUI_CONFIG_DIR": str(tmp_path),
           "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "first-frame").is_file()  # it did draw a frame
    loaded = set(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert "textual.app" in loaded and "mixtui.tui.screens.main" in loaded
    assert [m for m in LATER if m in loaded] == []


def test_the_lazy_stand_in_is_the_module() -> None:
    from mixtui.core.lazy import LazyModule

    lazy_json = LazyModule("json")
    assert lazy_json.dumps([1]) == json.dumps([1])
    assert "dumps" in vars(lazy_json)  # kept: the next look-up is a plain attribute
