"""Shared fixtures: tiny random models built once per session, an isolated config dir.

The tiny models are real mlx-lm models with random weights (mixtui.engine.synthetic), so
the loader, the Mixtral blocks and the routing capture run exactly as they do on real
weights; only the numbers are meaningless.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXED_BUDGET = "64GB"


@pytest.fixture(scope="session")
def moe_config() -> dict:
    from mixtui.engine.synthetic import mixtral_config

    return mixtral_config(layers=2, hidden=64, intermediate=128, vocab=256)


@pytest.fixture(scope="session")
def dense_config() -> dict:
    from mixtui.engine.synthetic import mixtral_config

    return mixtral_config(model_type="mistral")


@pytest.fixture(scope="session")
def tiny_moe_dir(tmp_path_factory: pytest.TempPathFactory, moe_config: dict) -> Path:
    """A 2-layer, 8-expert, top-2 float32 Mixtral with a chat template (no system role)."""
    from mixtui.engine.synthetic import make_model_dir

    return make_model_dir(tmp_path_factory.mktemp("models") / "tiny-moe", moe_config, chat=True)


@pytest.fixture(scope="session")
def tiny_dense_dir(tmp_path_factory: pytest.TempPathFactory, dense_config: dict) -> Path:
    """A dense tiny Mistral (model_type "mistral") with the same chat template."""
    from mixtui.engine.synthetic import make_model_dir

    return make_model_dir(tmp_path_factory.mktemp("models") / "tiny-dense", dense_config,
                          chat=True)


@pytest.fixture(autouse=True)
def isolated_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty MIXTUI_CONFIG_DIR, never the developer's."""
    config = tmp_path / "mixtui-config"
    config.mkdir()
    monkeypatch.setenv("MIXTUI_CONFIG_DIR", str(config))
    return config


@pytest.fixture
def fixed_budget(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MIXTUI_MEMORY_BUDGET", FIXED_BUDGET)
    return FIXED_BUDGET


@pytest.fixture
def empty_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache, for this process and for any subprocess it starts.

    huggingface_hub reads HF_HUB_CACHE once, when it is imported, so the environment alone
    does not reach a process that already imported it: its constant is set as well.
    """
    home = tmp_path / "hf-home"
    cache = home / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def cli_env(isolated_config_dir: Path, empty_hf_cache: Path) -> dict[str, str]:
    """Environment for `python -m mixtui` subprocesses: isolated config, cache and budget."""
    env = dict(os.environ)
    env["MIXTUI_CONFIG_DIR"] = str(isolated_config_dir)
    env["MIXTUI_MEMORY_BUDGET"] = FIXED_BUDGET
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.pop("NO_COLOR", None)
    return env


def register_in_slot_2(config_dir: Path, model_dir: Path, config: dict,
                       name: str = "Tiny dense") -> None:
    """The user's models.toml makes key 2 (mistral-7b-instruct) a tiny model on disk."""
    import json
    from dataclasses import asdict

    from mixtui.registry.spec import Geometry

    fields = {k: v for k, v in asdict(Geometry.from_hf_config(config)).items()
              if k not in ("tie_embeddings", "dtype_bytes")
              and (v or k not in ("experts", "experts_per_token"))}
    geometry = "\n".join(f"{k} = {json.dumps(v)}" for k, v in fields.items())
    (config_dir / "models.toml").write_text(
        f'[models.mistral-7b-instruct]\nname = "{name}"\npath = "{model_dir}"\n'
        f'kind = "chat"\n[models.mistral-7b-instruct.geometry]\n{geometry}\n')
