"""The headless core imports no Textual; the light modules import no MLX, mlx-lm or transformers.

Each module is imported in a fresh interpreter, since this test process has long imported
everything.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest


def core_modules() -> list[str]:
    """Every module of mixtui except the TUI package (found by walking, not listed by hand)."""
    import mixtui

    names = [m.name for m in pkgutil.walk_packages(mixtui.__path__, "mixtui.")]
    return sorted(n for n in names if not n.startswith("mixtui.tui") and n != "mixtui.__main__")


NO_TEXTUAL = core_modules()
# What the UI process loads before its first frame must not pull in MLX (about 2 s).
NO_MLX = [
    "mixtui.registry.local", "mixtui.core.routing", "mixtui.engine.messages",
    "mixtui.engine.client", "mixtui.cli.main", "mixtui.planner", "mixtui.tui.app",
    "mixtui.app.settings", "mixtui.app.conversation", "mixtui.families.geometry",
    # the families' pure parts (their <family>_hooks modules are the ones that import MLX)
    "mixtui.families", "mixtui.families.base", "mixtui.families.dense", "mixtui.families.mixtral",
    "mixtui.families.qwen3_moe", "mixtui.registry.spec", "mixtui.registry.loader",
    "mixtui.app.chat", "mixtui.app.loader", "mixtui.tui.screens.main",
    # the statistics and `mixtui analyze` need numpy alone
    "mixtui.app.analysis.stats", "mixtui.app.analysis.report", "mixtui.app.analysis.tracefile",
    "mixtui.cli.analyze",
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


def test_core_imports_no_textual() -> None:
    """All core modules together in one interpreter; on failure, name the culprits."""
    code = ("import json, sys, importlib; [importlib.import_module(m) for m in "
            f"{NO_TEXTUAL!r}]; print(json.dumps(sorted(sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    modules = set(json.loads(proc.stdout))
    assert set(NO_TEXTUAL) <= modules
    if any(m.split(".")[0] == "textual" for m in modules):
        culprits = [m for m in NO_TEXTUAL
                    if any(x.split(".")[0] == "textual" for x in imported_after(m))]
        pytest.fail(f"these core modules import textual: {culprits}")


@pytest.mark.parametrize("module", NO_MLX)
def test_light_modules_import_no_mlx(module: str) -> None:
    heavy = sorted(m for m in imported_after(module) if m.split(".")[0] in HEAVY)
    assert heavy == [], f"{module} imports {heavy[:5]}"


def test_the_check_can_see_heavy_imports() -> None:
    """The probe is not blind: a module that does import MLX is caught."""
    modules = imported_after("mixtui.engine.session")
    assert "mlx" in modules and "mlx.core" in modules
