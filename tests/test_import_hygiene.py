"""The headless core imports no Textual; the light modules import no MLX, mlx-lm or transformers.

Each module is imported in a fresh interpreter, since this test process has long imported
everything.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

NO_TEXTUAL = [
    "mixtui.engine.session", "mixtui.engine.client", "mixtui.routing.capture",
    "mixtui.routing.trace", "mixtui.registry", "mixtui.planner", "mixtui.commands.generate",
    "mixtui.commands.models", "mixtui.cli",
]
NO_MLX = [
    "mixtui.registry", "mixtui.routing.batch", "mixtui.engine.messages", "mixtui.engine.client",
    "mixtui.cli",
]
HEAVY = ("mlx", "mlx_lm", "transformers")


def imported_after(module: str) -> set[str]:
    code = (f"import json, sys, importlib; importlib.import_module({module!r}); "
            "print(json.dumps(sorted(sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    modules = set(json.loads(proc.stdout))
    assert module in modules
    return modules


@pytest.mark.parametrize("module", NO_TEXTUAL)
def test_core_imports_no_textual(module: str) -> None:
    textual = sorted(m for m in imported_after(module) if m.split(".")[0] == "textual")
    assert textual == [], f"{module} imports {textual[:5]}"


@pytest.mark.parametrize("module", NO_MLX)
def test_light_modules_import_no_mlx(module: str) -> None:
    heavy = sorted(m for m in imported_after(module) if m.split(".")[0] in HEAVY)
    assert heavy == [], f"{module} imports {heavy[:5]}"


def test_the_check_can_see_heavy_imports() -> None:
    """The probe is not blind: a module that does import MLX is caught."""
    modules = imported_after("mixtui.engine.session")
    assert "mlx" in modules and "mlx.core" in modules
