"""The registry: parameter accounting against published figures, models.toml, resolve()."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest
from registry_keys import KEYS

from mixtui.core.errors import ModelNotFound, ModelNotLocal, RegistryError
from mixtui.families.geometry import Geometry
from mixtui.registry.loader import load_registry, user_registry_path
from mixtui.registry.local import local_dir, local_state, resolve
from mixtui.registry.spec import ModelSpec

REFERENCE_FILES = {
    "mistral-7b-instruct": "mistral-7b-instruct-v0.3.json",
    "mixtral-8x7b-instruct": "mixtral-8x7b-instruct-v0.1.json",
    "mixtral-8x22b": "mixtral-8x22b-v0.1.json",
    "mixtral-8x22b-instruct": "mixtral-8x22b-instruct-v0.1.json",
    "qwen3-30b-a3b-instruct": "qwen3-30b-a3b-instruct-2507.json",
}
KIB = 1024
# The published config.json files, copied from the project's reference folder.
REFERENCE_CONFIGS = Path(__file__).resolve().parent / "data" / "model-configs"


def close(actual: float, expected: float, rel: float) -> bool:
    return abs(actual - expected) <= rel * expected


@pytest.fixture(scope="module")
def builtin() -> dict[str, ModelSpec]:
    return load_registry(include_user=False)


def test_builtin_registry_has_the_five_models(builtin: dict[str, ModelSpec]) -> None:
    # the first keys stay where they are; the MoE families append their entries after them
    assert list(builtin)[:len(KEYS)] == KEYS


# -- parameter accounting against the published headline figures ----------------------------
@pytest.mark.parametrize(("key", "total", "active"), [
    ("mistral-7b-instruct", 7.25e9, 7.25e9),
    ("mixtral-8x7b-instruct", 46.7e9, 12.9e9),
    ("mixtral-8x22b", 140.6e9, 39.2e9),
    ("mixtral-8x22b-instruct", 140.6e9, 39.2e9),
])
def test_parameter_counts_match_published(builtin: dict[str, ModelSpec], key: str,
                                          total: float, active: float) -> None:
    g = builtin[key].geometry
    assert close(g.total_params(), total, 0.005), (key, g.total_params())
    assert close(g.active_params(), active, 0.005), (key, g.active_params())


def test_qwen3_parameter_counts_match_published(builtin: dict[str, ModelSpec]) -> None:
    g = builtin["qwen3-30b-a3b-instruct"].geometry
    assert (len(g.moe_layers), g.dense_layers) == (48, ())
    # The model card: "30.5B in total and 3.3B activated"; 3.3 B has two digits only (the
    # count with embeddings in, Mixtral's convention, is 3.35 B), so the active figure is
    # held to what those digits say, and both to the counts of mlx-lm's own classes at this
    # geometry (the project's reference folder) with the tolerance used above.
    assert close(g.total_params(), 30.5e9, 0.005), g.total_params()
    assert abs(g.active_params() - 3.3e9) < 0.06e9, g.active_params()
    assert close(g.total_params(), 30.53e9, 0.005) and close(g.active_params(), 3.35e9, 0.005)
    assert builtin["qwen3-30b-a3b-instruct"].kv_bytes_per_token() == 96 * KIB
    spec = builtin["qwen3-30b-a3b-instruct"]
    assert spec.quantization is not None and (spec.quantization.bits,
                                              spec.quantization.group_size) == (4, 64)
    # 17.5 GB is the size a third party gives for this mlx-community conversion
    assert close(spec.weight_bytes(), 17.5e9, 0.03), spec.weight_bytes()


def test_dense_model_is_all_active(builtin: dict[str, ModelSpec]) -> None:
    g = builtin["mistral-7b-instruct"].geometry
    assert not g.is_moe
    assert g.active_params() == g.total_params()
    assert g.active_params(4) == g.total_params()


def test_active_params_grow_by_one_expert_per_layer(builtin: dict[str, ModelSpec]) -> None:
    g = builtin["mixtral-8x7b-instruct"].geometry
    per_k = g.layers * g.expert_params()
    assert g.active_params(3) - g.active_params(2) == per_k
    assert g.active_params(1) == g.active_params() - per_k
    assert g.active_params(8) == g.total_params()


@pytest.mark.parametrize(("key", "kib"), [
    ("mistral-7b-instruct", 128), ("mixtral-8x7b-instruct", 128),
    ("mixtral-8x22b", 224), ("mixtral-8x22b-instruct", 224),
])
def test_kv_bytes_per_token(builtin: dict[str, ModelSpec], key: str, kib: int) -> None:
    assert builtin[key].kv_bytes_per_token() == kib * KIB


@pytest.mark.parametrize(("key", "published_bytes"), [
    ("mistral-7b-instruct", 4.1e9), ("mixtral-8x7b-instruct", 26.3e9),
    ("mixtral-8x22b", 79.5e9), ("mixtral-8x22b-instruct", 79.5e9),
])
def test_4bit_weight_bytes_match_published_sizes(builtin: dict[str, ModelSpec], key: str,
                                                 published_bytes: float) -> None:
    spec = builtin[key]
    assert spec.quantization is not None
    assert (spec.quantization.bits, spec.quantization.group_size) == (4, 64)
    assert close(spec.weight_bytes(), published_bytes, 0.03), (key, spec.weight_bytes())


# -- registry geometry == the published config.json -------------------------------------------
@pytest.mark.parametrize("key", list(REFERENCE_FILES))
def test_registry_geometry_equals_published_config(builtin: dict[str, ModelSpec],
                                                   key: str) -> None:
    config = json.loads((REFERENCE_CONFIGS / REFERENCE_FILES[key]).read_text())
    assert builtin[key].geometry == Geometry.from_hf_config(config)


# -- the formula against real mlx-lm models ---------------------------------------------------
def _instantiated_params(config: dict) -> int:
    from mlx.utils import tree_flatten
    from mlx_lm.utils import MODEL_REMAPPING

    module = MODEL_REMAPPING.get(config["model_type"], config["model_type"])
    arch = importlib.import_module(f"mlx_lm.models.{module}")
    model = arch.Model(arch.ModelArgs.from_dict(config))
    return sum(v.size for _, v in tree_flatten(model.parameters()))


@pytest.mark.parametrize("which", ["moe", "dense", "moe-k4-gqa1", "qwen3", "qwen3-tied-all-moe",
                                   "qwen3-sparse-step"])
def test_total_params_equals_instantiated_model(which: str) -> None:
    from mixtui.engine.synthetic import mixtral_config, synthetic_config

    config = {
        "moe": mixtral_config(layers=2, hidden=64, intermediate=128, vocab=256),
        "dense": mixtral_config(model_type="mistral"),
        "moe-k4-gqa1": mixtral_config(layers=3, hidden=96, intermediate=40, heads=6,
                                      kv_heads=1, vocab=300, experts=4, top_k=3),
        "qwen3": synthetic_config("qwen3_moe"),  # layer 1 dense (mlp_only_layers)
        "qwen3-tied-all-moe": synthetic_config("qwen3_moe", dense_layers=(),
                                               tie_embeddings=True),
        # every second layer MoE by decoder_sparse_step, and layer 3 dense as well
        "qwen3-sparse-step": synthetic_config("qwen3_moe", layers=6, dense_layers=(3,))
        | {"decoder_sparse_step": 2},
    }[which]
    assert Geometry.from_hf_config(config).total_params() == _instantiated_params(config)


def test_tiny_models_on_disk_load_with_their_geometry(tiny_moe_dir: Path,
                                                      tiny_dense_dir: Path) -> None:
    moe = resolve(str(tiny_moe_dir)).geometry
    dense = resolve(str(tiny_dense_dir)).geometry
    assert (moe.model_type, moe.experts, moe.experts_per_token) == ("mixtral", 8, 2)
    assert (dense.model_type, dense.experts, dense.experts_per_token) == ("mistral", 0, 0)
    assert dense.is_moe is False
    assert dense.dtype_bytes == moe.dtype_bytes == 4  # torch_dtype float32


def test_make_model_dir_builds_a_dense_mistral(tmp_path: Path) -> None:
    """synthetic.make_model_dir must accept the dense config that mixtral_config makes."""
    from mixtui.engine.synthetic import make_model_dir, mixtral_config

    path = make_model_dir(tmp_path / "dense", mixtral_config(model_type="mistral"))
    assert json.loads((path / "config.json").read_text())["model_type"] == "mistral"
    assert (path / "model.safetensors").is_file()


# -- the user's models.toml -------------------------------------------------------------------
USER_ENTRY = """\
# my models
[models.mine]
name = "My tiny model"
path = "{path}"
kind = "base"
[models.mine.geometry]
model_type = "mixtral"
layers = 2
hidden = 64
intermediate = 128
heads = 4
kv_heads = 2
head_dim = 16
vocab = 256
experts = 8
experts_per_token = 2

[models.mixtral-8x7b-instruct]
name = "Overridden 8x7B"
repo = "someone/else"
[models.mixtral-8x7b-instruct.geometry]
model_type = "mixtral"
layers = 1
hidden = 8
intermediate = 8
heads = 1
kv_heads = 1
head_dim = 8
vocab = 10
experts = 4
experts_per_token = 1
"""


def test_user_registry_adds_and_overrides(isolated_config_dir: Path, tiny_moe_dir: Path) -> None:
    assert user_registry_path() == isolated_config_dir / "models.toml"
    user_registry_path().write_text(USER_ENTRY.format(path=tiny_moe_dir))
    specs = load_registry()
    assert list(specs)[:len(KEYS)] == KEYS and "mine" in specs
    mine = specs["mine"]
    assert (mine.name, mine.kind, mine.path) == ("My tiny model", "base", str(tiny_moe_dir))
    assert mine.geometry.experts == 8 and mine.bundled is False
    assert local_dir(mine) == tiny_moe_dir and local_state(mine) == "complete"
    over = specs["mixtral-8x7b-instruct"]
    assert (over.name, over.repo, over.geometry.layers) == ("Overridden 8x7B", "someone/else", 1)
    assert str(user_registry_path()) in over.source
    assert specs["mixtral-8x22b"] == load_registry(include_user=False)["mixtral-8x22b"]
    assert resolve("mine") == mine


GOOD_FIRST = """\
[models.fine]
repo = "org/fine"
[models.fine.geometry]
model_type = "mistral"
layers = 1
hidden = 8
intermediate = 8
heads = 1
kv_heads = 1
head_dim = 8
vocab = 10

"""
# Line 14 of each file below is the header of the broken entry.
BROKEN_ENTRY = """\
[models.broken]
repo = "org/broken"
kind = "{kind}"
[models.broken.geometry]
model_type = "mixtral"
layers = {layers}
hidden = 8
intermediate = 8
heads = 1
kv_heads = 1
vocab = 10
experts = 4
experts_per_token = 2
{head_dim}"""


@pytest.mark.parametrize(("case", "entry", "words"), [
    ("missing geometry field",
     BROKEN_ENTRY.format(kind="chat", layers=1, head_dim=""), "head_dim"),
    ("wrong type",
     BROKEN_ENTRY.format(kind="chat", layers='"two"', head_dim="head_dim = 8\n"), "layers"),
    ("bad kind",
     BROKEN_ENTRY.format(kind="instruct", layers=1, head_dim="head_dim = 8\n"), "instruct"),
    ("bad card",
     BROKEN_ENTRY.format(kind="chat", layers=1, head_dim="head_dim = 8\n")
     .replace('kind = "chat"', 'kind = "chat"\ncard = { total = "lots" }'), "card must be"),
    ("config of no family",
     BROKEN_ENTRY.split("[models.broken.geometry]")[0].format(kind="chat")
     + '[models.broken.config]\nmodel_type = "dbrx"\n', "no family for"),
    ("geometry of a family read from its config",
     BROKEN_ENTRY.format(kind="chat", layers=1, head_dim="head_dim = 8\n")
     .replace('model_type = "mixtral"', 'model_type = "deepseek_v2"'), "[config] table instead"),
    ("config lacking a field",
     BROKEN_ENTRY.split("[models.broken.geometry]")[0].format(kind="chat")
     + '[models.broken.config]\nmodel_type = "olmoe"\n', "lacks"),
])
def test_fault_20_malformed_user_entry_names_file_and_line(case: str, entry: str,
                                                          words: str) -> None:
    path = user_registry_path()
    path.write_text(GOOD_FIRST + "\n" + entry)
    with pytest.raises(RegistryError) as err:
        load_registry()
    message = str(err.value)
    assert str(path) in message, case
    assert "line 14" in message, (case, message)
    assert "broken" in message and words in message, (case, message)
    # the built-in registry alone is still readable
    assert list(load_registry(include_user=False))[:len(KEYS)] == KEYS


def test_fault_20_invalid_toml_names_file_and_line() -> None:
    path = user_registry_path()
    path.write_text(GOOD_FIRST + "[models.oops\nrepo = 'x/y'\n")
    with pytest.raises(RegistryError) as err:
        load_registry()
    message = str(err.value)
    assert str(path) in message
    assert re.search(r"line 13\b", message), message
    with pytest.raises(RegistryError):
        resolve("mixtral-8x7b-instruct")


# -- resolve() --------------------------------------------------------------------------------
def test_resolve_registry_key(empty_hf_cache: Path) -> None:
    spec = resolve("mixtral-8x7b-instruct")
    assert spec.key == "mixtral-8x7b-instruct"
    assert spec.repo == "mlx-community/Mixtral-8x7B-Instruct-v0.1-4bit"
    assert local_state(spec) == "absent" and local_dir(spec) is None
    # the repo id of a registry entry resolves to that entry, downloaded or not
    assert resolve("mlx-community/Mixtral-8x7B-Instruct-v0.1-4bit") == spec


def test_resolve_local_directory(tiny_moe_dir: Path, moe_config: dict) -> None:
    spec = resolve(str(tiny_moe_dir))
    assert spec.geometry == Geometry.from_hf_config(moe_config)
    assert spec.kind == "chat"  # the tokenizer config has a chat template
    assert spec.path == str(tiny_moe_dir) and spec.repo is None
    assert local_dir(spec) == tiny_moe_dir and local_state(spec) == "complete"


def test_resolve_local_directory_without_chat_template_is_base(tmp_path: Path,
                                                              moe_config: dict) -> None:
    from mixtui.engine.synthetic import write_tokenizer

    (tmp_path / "config.json").write_text(json.dumps(moe_config))
    write_tokenizer(tmp_path, 256, chat=False)
    spec = resolve(str(tmp_path))
    assert spec.kind == "base"
    assert local_state(spec) == "partial"  # no weights


def test_resolve_mistyped_path() -> None:
    with pytest.raises(ModelNotFound, match="No such directory") as err:
        resolve("./nope/model")
    assert "./nope/model" in str(err.value)


def test_resolve_file_is_not_a_directory(tmp_path: Path) -> None:
    file = tmp_path / "weights.bin"
    file.write_bytes(b"x")
    with pytest.raises(ModelNotFound, match="not a directory"):
        resolve(str(file))


def test_resolve_directory_without_config(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="config.json"):
        resolve(str(tmp_path))


def test_resolve_unknown_word_lists_keys() -> None:
    with pytest.raises(ModelNotFound) as err:
        resolve("mixtrall")
    message = str(err.value)
    assert "mixtrall" in message
    for key in KEYS:
        assert key in message


def test_resolve_repo_not_in_cache(empty_hf_cache: Path) -> None:
    with pytest.raises(ModelNotLocal, match="org/some-model"):
        resolve("org/some-model")


# -- local_state on a Hugging Face cache layout -----------------------------------------------
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _fake_snapshot(cache: Path, repo: str, config: dict, shards: list[str],
                   present: list[str]) -> Path:
    from mixtui.engine.synthetic import write_tokenizer

    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)
    snap = repo_dir / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps(config))
    write_tokenizer(snap, int(config["vocab_size"]), chat=True)
    weight_map = {f"model.layers.{i}.w": shard for i, shard in enumerate(shards)}
    (snap / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    for shard in present:
        (snap / shard).write_bytes(b"")
    return snap


def _repo_spec(repo: str, moe_config: dict) -> ModelSpec:
    return ModelSpec(key="t", name="t", geometry=Geometry.from_hf_config(moe_config), repo=repo)


SHARDS = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]


def test_local_state_complete(empty_hf_cache: Path, moe_config: dict) -> None:
    snap = _fake_snapshot(empty_hf_cache, "org/full", moe_config, SHARDS, SHARDS)
    spec = _repo_spec("org/full", moe_config)
    assert local_dir(spec) == snap
    assert local_state(spec) == "complete"
    found = resolve("org/full")  # a downloaded repo id outside the registry
    assert (found.repo, found.geometry) == ("org/full", spec.geometry)


def test_local_state_partial(empty_hf_cache: Path, moe_config: dict) -> None:
    _fake_snapshot(empty_hf_cache, "org/half", moe_config, SHARDS, SHARDS[:1])
    assert local_state(_repo_spec("org/half", moe_config)) == "partial"
    with pytest.raises(ModelNotLocal):
        resolve("org/half")


def test_local_state_absent(empty_hf_cache: Path, moe_config: dict) -> None:
    _fake_snapshot(empty_hf_cache, "org/other", moe_config, SHARDS, SHARDS)
    assert local_state(_repo_spec("org/missing", moe_config)) == "absent"
    # a cached repo whose ref points at a snapshot that is not there is absent too
    assert local_state(ModelSpec(key="t", name="t", revision="v2", repo="org/other",
                                 geometry=Geometry.from_hf_config(moe_config))) == "absent"


# -- the memory planner with a fixed budget ---------------------------------------------------
def test_plan_with_fixed_budget(fixed_budget: str, builtin: dict[str, ModelSpec]) -> None:
    from mixtui.core.units import parse_size
    from mixtui.planner import memory_budget, plan

    budget = memory_budget()
    assert budget.bytes == parse_size(fixed_budget) == 64 * 10**9
    assert budget.source == "MIXTUI_MEMORY_BUDGET"
    fit = plan(builtin["mixtral-8x7b-instruct"])
    assert fit.kv_bytes == 4096 * 128 * KIB
    assert fit.need_bytes == fit.weight_bytes + fit.kv_bytes + fit.margin_bytes
    assert fit.verdict == "fits"
    assert plan(builtin["mixtral-8x22b"]).verdict == "does-not-fit"
    assert plan(builtin["mixtral-8x7b-instruct"], context=4096 * 64).verdict != "fits"


@pytest.mark.parametrize(("text", "size"), [
    ("16GB", 16 * 10**9), ("512 MiB", 512 * 2**20), ("1.5GB", 1_500_000_000), ("1024", 1024),
])
def test_parse_size(text: str, size: int) -> None:
    from mixtui.core.units import parse_size

    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "16 parsecs", "", "-1GB"])
def test_parse_size_rejects(text: str) -> None:
    from mixtui.core.errors import UsageError
    from mixtui.core.units import parse_size

    with pytest.raises(UsageError):
        parse_size(text)


def test_bundled_nano_is_complete_and_matches_its_entry(builtin: dict[str, ModelSpec]) -> None:
    from mixtui.registry.local import local_dir, local_state

    spec = builtin["nano"]
    where = local_dir(spec)
    assert where is not None and local_state(spec) == "bundled"
    config = json.loads((where / "config.json").read_text())
    assert Geometry.from_hf_config(config) == spec.geometry
    g = spec.geometry
    assert g.model_type == "mixtral" and g.experts == 8 and g.experts_per_token == 2
    assert g.layers >= 4
    assert sum(f.stat().st_size for f in where.iterdir()) <= 20 * 10**6


def _user_config_entry(config: dict, extra: str = "") -> str:
    from conftest import toml_value

    nulls = [k for k, v in config.items() if v is None]
    fields = "\n".join(f"{k} = {toml_value(v)}" for k, v in config.items() if v is not None)
    return (f'[models.mine]\nrepo = "org/mine"\nconfig_nulls = {toml_value(nulls)}\n{extra}'
            f"[models.mine.config]\n{fields}\n")


@pytest.mark.parametrize(("case", "change", "extra", "words"), [
    ("a field only the cache needs", {"linear_num_key_heads": None}, "", "lacks"),
    ("no attention heads", {"num_attention_heads": 0}, "", "cannot read"),
    ("an infinite card", {}, "card = { total = inf, active = 1e9 }\n", "card must be"),
    ("a card's active over its total", {}, "card = { total = 1e9, active = 2e9 }\n",
     "active at most total"),
    ("negative bits", {}, "quantization = { bits = -4, group_size = 64 }\n", "bits 2, 3"),
    ("MXFP4 in groups of 64", {}, 'quantization = { bits = 4, group_size = 64, mode = "mxfp4" }'
     "\n", "group_size = 32"),
])
def test_fault_20_a_published_config_entry_that_cannot_be_used(
        case: str, change: dict, extra: str, words: str) -> None:
    # Qwen3-Next's published config: its cache rule reads fields its geometry does not
    config = dict(load_registry(include_user=False)["qwen3-next-80b-a3b-instruct"].hf_config)
    for field, value in change.items():
        if value is None:
            del config[field]
        else:
            config[field] = value
    user_registry_path().write_text(_user_config_entry(config, extra))
    with pytest.raises(RegistryError) as err:
        load_registry()
    assert "mine" in str(err.value) and words in str(err.value), (case, str(err.value))
