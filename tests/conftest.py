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
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
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


def toml_value(value: object) -> str:
    """A config.json value in TOML (tables inline); None is not given (see config_nulls)."""
    import json

    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()
                                if v is not None) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def register_config_in_slot_2(config_dir: Path, model_dir: Path, config: dict,
                              name: str) -> None:
    """As register_in_slot_2, by the model's config.json fields ([config]: the families
    described by their config alone)."""
    nulls = [k for k, v in config.items() if v is None]
    fields = "\n".join(f"{k} = {toml_value(v)}" for k, v in config.items() if v is not None)
    (config_dir / "models.toml").write_text(
        f'[models.mistral-7b-instruct]\nname = "{name}"\npath = "{model_dir}"\n'
        f'kind = "chat"\nconfig_nulls = {toml_value(nulls)}\n'
        f'[models.mistral-7b-instruct.config]\n{fields}\n')


def register_in_slot_2(config_dir: Path, model_dir: Path, config: dict,
                       name: str = "Tiny dense") -> None:
    """The user's models.toml makes key 2 (mistral-7b-instruct) a tiny model on disk."""
    import json
    from dataclasses import asdict

    from mixtui.families.geometry import Geometry

    fields = {k: v for k, v in asdict(Geometry.from_hf_config(config)).items()
              if k not in ("tie_embeddings", "dtype_bytes")
              and (v or k not in ("experts", "experts_per_token"))}
    geometry = "\n".join(f"{k} = {json.dumps(v)}" for k, v in fields.items())
    (config_dir / "models.toml").write_text(
        f'[models.mistral-7b-instruct]\nname = "{name}"\npath = "{model_dir}"\n'
        f'kind = "chat"\n[models.mistral-7b-instruct.geometry]\n{geometry}\n')


def keep_probe(gbps: float) -> Path:
    """This machine's memory bandwidth as `mixtui bench` keeps it once measured, in the
    test's MIXTUI_CONFIG_DIR (measuring takes an engine and seconds)."""
    import json

    from mixtui.app.bench.machine import bench_dir, machine_key

    path = bench_dir() / "probe.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({machine_key(): {"gbps": gbps, "device": "cpu", "mib": 512,
                                                "measured_at": "2026-01-01T00:00:00Z"}}))
    return path


# --- A mock Hugging Face Hub (tests/mockhub.py) for real huggingface_hub downloads ---------


def model_repo_files(model_dir: Path) -> dict[str, bytes]:
    """Every file under `model_dir`, keyed by its posix path inside it: `MockHub.add_repo`'s
    `files`, e.g. ``mock_hub.add_repo("test-org/tiny-moe", model_repo_files(tiny_moe_dir))``."""
    return {path.relative_to(model_dir).as_posix(): path.read_bytes()
            for path in sorted(model_dir.rglob("*")) if path.is_file()}


@pytest.fixture
def mock_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A started `MockHub` (its `url` is the HF_ENDPOINT), stopped after the test.

    No token of the developer's reaches it: HF_TOKEN is unset and the token file is moved.
    In-process calls must pass ``endpoint=mock_hub.url``, or use `hub_in_process`.
    """
    from huggingface_hub import constants
    from mockhub import MockHub

    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-hf-token"))
    # With telemetry on, hf fetches {ENDPOINT}/api/agent-harnesses (the real Hub, in-process).
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    with MockHub() as hub:
        yield hub


_HUB_ENV_DROPPED = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN",
                    "HF_TOKEN_PATH", "HUGGINGFACE_HUB_CACHE", "HF_XET_CACHE",
                    "HUGGINGFACE_CO_STAGING", "HF_HUB_ENABLE_HF_TRANSFER", "NO_COLOR")


@pytest.fixture
def hub_env(mock_hub, tmp_path: Path, isolated_config_dir: Path) -> dict[str, str]:
    """Environment for `python -m mixtui` subprocesses that download from `mock_hub`: online,
    no token, an empty cache in tmp_path/"hf-home"/"hub", plain HTTP (no Xet), isolated
    config and a fixed memory budget."""
    home = tmp_path / "hf-home"
    (home / "hub").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in _HUB_ENV_DROPPED}
    env.update({
        "HF_ENDPOINT": mock_hub.url,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "MIXTUI_CONFIG_DIR": str(isolated_config_dir),
        "MIXTUI_MEMORY_BUDGET": FIXED_BUDGET,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
    })
    return env


@pytest.fixture
def hub_in_process(mock_hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`mock_hub`, made the default Hub of this process: huggingface_hub read HF_ENDPOINT and
    the cache path at import, so its constants are patched (endpoint, cache in
    tmp_path/"hf-home"/"hub", online, no Xet). Calls need no ``endpoint=`` then."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-home" / "hub"
    cache.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HF_ENDPOINT", mock_hub.url)
    monkeypatch.setenv("HF_HOME", str(cache.parent))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", mock_hub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        mock_hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    return mock_hub


@pytest.fixture(scope="session")
def tiny_family_dir(tmp_path_factory: pytest.TempPathFactory):
    """model_type -> the directory of a tiny random model of its family (its
    `synthetic_config`), built once per session and shared by every test that asks."""
    from mixtui.engine.synthetic import make_model_dir, synthetic_config

    built: dict[str, Path] = {}

    def get(model_type: str) -> Path:
        if model_type not in built:
            built[model_type] = make_model_dir(
                tmp_path_factory.mktemp("families") / f"tiny-{model_type}",
                synthetic_config(model_type), chat=True)
        return built[model_type]

    return get
