"""Where mixtui keeps its files (platformdirs; MIXTUI_CONFIG_DIR overrides)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # the mixtui package


def config_dir() -> Path:
    """The user's config directory: settings.json and an optional models.toml live here."""
    override = os.environ.get("MIXTUI_CONFIG_DIR")
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_config_dir("mixtui", appauthor=False))


def builtin_registry_path() -> Path:
    """models.toml shipped with mixtui (inside the wheel, or at the top of a source checkout)."""
    for candidate in (PACKAGE_DIR / "models.toml", PACKAGE_DIR.parent / "models.toml"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("mixtui's models.toml is missing from the installation")


def log_dir() -> Path:
    """Logs: the engine process writes what libraries print here while the TUI runs."""
    return Path(platformdirs.user_log_dir("mixtui", appauthor=False))
