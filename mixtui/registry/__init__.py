"""The models mixtui knows: models.toml entries, their arithmetic, and their files on disk."""

from mixtui.registry.loader import load_registry, user_registry_path
from mixtui.registry.local import local_dir, local_state, missing_files, require_local, resolve
from mixtui.registry.spec import Geometry, ModelSpec, Quantization

__all__ = [
    "Geometry", "ModelSpec", "Quantization", "load_registry", "local_dir", "local_state",
    "missing_files", "require_local", "resolve", "user_registry_path",
]
