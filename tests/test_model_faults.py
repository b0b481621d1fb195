"""Broken model directories, through the real `mixtui generate`: one sentence, an exit code.

Each fault starts from the tiny real Mixtral (conftest's tiny_moe_dir), broken in one way.
Faults the preflight (registry/check.py) must catch run with `no_engine_env`, where an engine
process cannot even import MLX: the sentence can only come from the caller, before any engine
starts. Faults only loading can find run the real engine. Numbers are the issue's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from mixtui.engine.synthetic import CHAT_TEMPLATE

PROMPT = "w5 w6"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
SHARDS = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
REPO = "test-org/tiny-shards"


def mixtui(env: dict[str, str], *args: object, cwd: Path | None = None,
           timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mixtui", *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def generate(env: dict[str, str], model: object, *args: object,
             cwd: Path | None = None) -> subprocess.CompletedProcess:
    return mixtui(env, "generate", "--model", model, "--prompt", PROMPT, "--max-tokens", 4,
                  "--temp", 0, *args, cwd=cwd)


def one_sentence(proc: subprocess.CompletedProcess, code: int) -> str:
    """The one line on stderr (no traceback, nothing on stdout) with the expected exit code."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert lines[0].startswith("mixtui: ") and lines[0].endswith("."), lines[0]
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    return lines[0].removeprefix("mixtui: ")


def mlx_lm_version() -> str:
    from importlib.metadata import version

    return version("mlx-lm")


@pytest.fixture(scope="session")
def poisoned_mlx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder whose `mlx` package refuses to import: an engine started with it dies."""
    root = tmp_path_factory.mktemp("poisoned")
    (root / "mlx").mkdir()
    (root / "mlx" / "__init__.py").write_text(
        'raise ImportError("test: the caller must refuse this model before any engine")\n')
    return root


@pytest.fixture
def no_engine_env(cli_env: dict[str, str], poisoned_mlx: Path) -> dict[str, str]:
    return dict(cli_env, PYTHONPATH=os.pathsep.join([str(poisoned_mlx), cli_env["PYTHONPATH"]]))


@pytest.fixture(scope="module")
def broken(tiny_moe_dir: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Callable[[str, Callable[[Path], object]], Path]:
    """broken(name, edit): a copy of the tiny model with `edit` applied to it."""
    root = tmp_path_factory.mktemp("broken")

    def make(name: str, edit: Callable[[Path], object]) -> Path:
        path = root / name
        if not path.exists():
            shutil.copytree(tiny_moe_dir, path)
            edit(path)
        return path

    return make


def edit_json(path: Path, **changes: object) -> None:
    """Set (or, with None, remove) top-level keys of a JSON file."""
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


def remove(*names: str) -> Callable[[Path], None]:
    return lambda d: [(d / n).unlink() for n in names]


def write(name: str, text: str) -> Callable[[Path], object]:
    return lambda d: (d / name).write_text(text)


def config(**changes: object) -> Callable[[Path], None]:
    return lambda d: edit_json(d / "config.json", **changes)


def tokenizer_config(**changes: object) -> Callable[[Path], None]:
    return lambda d: edit_json(d / "tokenizer_config.json", **changes)


def then(*edits: Callable[[Path], object]) -> Callable[[Path], None]:
    return lambda d: [edit(d) for edit in edits]


CODE_TOKENIZER = tokenizer_config(tokenizer_class="MyTokenizer",
                                  auto_map={"AutoTokenizer": ["tokenization_my.MyTokenizer",
                                                              None]})
SUPPORTED = "pick an MLX conversion of a supported architecture (mixtral, mistral, llama, …)."
NEVER_RUNS = "and mixtui never runs code from a model repository"


# -- 11: config.json missing, malformed or unsupported ----------------------------------------
@pytest.mark.parametrize(("case", "edit", "expected"), [
    ("missing", remove("config.json"),
     "{d} has no config.json, so it is not a model directory; point --model at the folder "
     "that holds config.json."),
    ("not JSON", write("config.json", '{"model_type": "mixtral",'),
     "{d}/config.json is not valid JSON (Expecting property name enclosed in double quotes: "
     "line 1 column 26 (char 25)); replace it with the one from the model's repository."),
    ("not an object", write("config.json", '["mixtral"]'),
     "{d}/config.json holds a JSON list, not the object of settings a model's config.json "
     "is; replace it with the one from the model's repository."),
    ("unknown model_type", config(model_type="gpt-foo"),
     "{d}/config.json has model_type 'gpt-foo', which mlx-lm {v} cannot run; " + SUPPORTED),
    ("mistyped model_type", config(model_type="mixtrall"),
     "{d}/config.json has model_type 'mixtrall', which mlx-lm {v} cannot run (did you mean "
     "'mixtral'?); " + SUPPORTED),
    ("no model_type", config(model_type=None),
     "{d}/config.json has no model_type, so nothing tells mlx-lm which architecture to "
     "build; " + SUPPORTED),
])
def test_fault_11_config_missing_malformed_or_unsupported(
        no_engine_env: dict[str, str], broken: Callable, case: str,
        edit: Callable[[Path], object], expected: str) -> None:
    model = broken(f"11-{case.replace(' ', '-')}", edit)
    line = one_sentence(generate(no_engine_env, model), 2)
    assert line == expected.format(d=model, v=mlx_lm_version()), case


def test_fault_11_supported_types_are_what_mlx_lm_loads() -> None:
    """The preflight reads mlx-lm's tables from its source; they must be the ones it runs."""
    import importlib

    from mlx_lm.utils import MODEL_ARCHITECTURE_REMAPPING, MODEL_REMAPPING

    from mixtui.registry.check import architecture_module, mlx_lm, supported_model_types

    lib = mlx_lm()
    assert lib is not None and lib.version == mlx_lm_version()
    assert lib.remapping == MODEL_REMAPPING
    assert lib.arch_remapping == MODEL_ARCHITECTURE_REMAPPING
    types = supported_model_types(lib)
    assert {"mixtral", "mistral", "llama"} <= set(types)  # mistral: remapped to llama
    assert not {"cache", "base", "switch_layers", "gpt-foo"} & set(types)
    for model_type in ["mixtral", "mistral", *MODEL_REMAPPING]:
        module = importlib.import_module(
            f"mlx_lm.models.{architecture_module({'model_type': model_type}, lib)}")
        assert hasattr(module, "Model") and hasattr(module, "ModelArgs"), model_type


# -- 12: code from the repository --------------------------------------------------------------
@pytest.mark.parametrize(("case", "edit", "expected"), [
    ("auto_map architecture",
     config(model_type="my_moe", auto_map={"AutoConfig": "configuration_my.MyConfig",
                                           "AutoModelForCausalLM": "modeling_my.MyModel"}),
     "The architecture 'my_moe' in {d}/config.json needs Python code from the model's "
     f"repository (auto_map: modeling_my.MyModel), {NEVER_RUNS}; " + SUPPORTED),
    ("model_file", config(model_file="my_model.py"),
     "The architecture in {d}/config.json needs Python code from the model's repository "
     f"(model_file: my_model.py), {NEVER_RUNS}; " + SUPPORTED),
    ("tokenizer only as code", then(CODE_TOKENIZER, remove("tokenizer.json")),
     "The tokenizer of {d} needs Python code from the model's repository (auto_map "
     f"AutoTokenizer: tokenization_my.MyTokenizer), {NEVER_RUNS}; pick an MLX conversion "
     "that ships a tokenizer.json."),
])
def test_fault_12_remote_code_is_refused_before_load(
        no_engine_env: dict[str, str], broken: Callable, case: str,
        edit: Callable[[Path], object], expected: str) -> None:
    model = broken(f"12-{case.replace(' ', '-')}", edit)
    (model / "modeling_my.py").write_text("raise SystemExit('repository code ran')\n")
    line = one_sentence(generate(no_engine_env, model), 2)
    assert line == expected.format(d=model), case


def test_fault_12_tokenizer_code_found_at_load(cli_env: dict[str, str],
                                               broken: Callable) -> None:
    """A tokenizer.model beside tokenizer code passes the preflight; loading refuses it."""
    model = broken("12-tokenizer-model-and-code", then(
        CODE_TOKENIZER, remove("tokenizer.json"), write("tokenizer.model", "not sentencepiece")))
    line = one_sentence(generate(cli_env, model), 2)
    assert line == (f"The tokenizer of {model} needs Python code from the model's repository "
                    f"(auto_map AutoTokenizer: tokenization_my.MyTokenizer), {NEVER_RUNS}; "
                    "pick an MLX conversion that ships a tokenizer.json.")


def test_fault_12_auto_map_of_an_architecture_mlx_lm_has_still_loads(broken: Callable) -> None:
    """mlx-lm builds mixtral itself, and tokenizer.json needs no code: an auto_map beside them
    asks for nothing to run, so neither the preflight nor the load refuses the model."""
    from mixtui.core.types import Sampling
    from mixtui.engine.messages import Finished, Generate
    from mixtui.engine.session import Session
    from mixtui.registry.local import require_local, resolve

    model = broken("12-auto_map-mixtral", then(
        config(auto_map={"AutoModelForCausalLM": "modeling_my.MyModel"}), CODE_TOKENIZER))
    (model / "modeling_my.py").write_text("raise SystemExit('repository code ran')\n")
    assert require_local(resolve(str(model))) == model
    events = list(Session.load(str(model)).generate(
        Generate(1, (("user", PROMPT),), sampling=Sampling(temperature=0, max_tokens=4))))
    assert isinstance(events[-1], Finished) and events[-1].stats.generation_tokens == 4


# -- 13: the tokenizer -----------------------------------------------------------------------
def test_fault_13_missing_tokenizer(no_engine_env: dict[str, str], broken: Callable) -> None:
    model = broken("13-no-tokenizer", remove("tokenizer.json"))
    line = one_sentence(generate(no_engine_env, model), 2)
    assert line == (f"{model} has no tokenizer (tokenizer.json or tokenizer.model); copy the "
                    "tokenizer files from the model's repository into it.")


@pytest.mark.parametrize(("case", "text", "why"), [
    ("not JSON", '{"version": "1.0", "model": ',
     "is not valid JSON (Expecting value: line 1 column 29 (char 28))"),
    ("rejected by tokenizers", json.dumps({"version": "1.0", "model": {"type": "Nope"}}),
     "is not a tokenizer that the tokenizers library can read (data did not match any "
     "variant of untagged enum ModelUntagged at line 1 column 45)"),
])
def test_fault_13_malformed_tokenizer_json(cli_env: dict[str, str], broken: Callable,
                                           case: str, text: str, why: str) -> None:
    model = broken(f"13-{case.replace(' ', '-')}", write("tokenizer.json", text))
    line = one_sentence(generate(cli_env, model), 2)
    assert line == f"{model}/tokenizer.json {why}; replace it with the model's own " \
                   "tokenizer.json.", case


# -- 14: a chat template that refuses the system role -------------------------------------------
def test_fault_14_system_prompt_merged_into_the_first_user_turn(
        cli_env: dict[str, str], tiny_moe_dir: Path, tmp_path: Path) -> None:
    """The tiny model's template raises for a system role: the answer still comes, with the
    system prompt at the head of the user's turn (exactly once)."""
    from transformers import AutoTokenizer

    from mixtui.app.trace import read_trace

    trace = tmp_path / "t.jsonl"
    proc = generate(cli_env, tiny_moe_dir, "--system", "w7 w8", "--trace", trace)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout.strip()
    _, tokens, summary = read_trace(trace)
    assert summary is not None and summary["generation_tokens"] == 4
    assert summary["system_merged"] is True  # and the user is told so
    assert "the system prompt was put before your message in the first user turn" in proc.stderr
    prompt_ids = [t["id"] for t in tokens if t["phase"] == "prompt"]
    merged = AutoTokenizer.from_pretrained(tiny_moe_dir).apply_chat_template(
        [{"role": "user", "content": "w7 w8\n\nw5 w6"}], add_generation_prompt=True)
    merged = merged["input_ids"] if hasattr(merged, "keys") else merged
    assert prompt_ids == list(merged)
    assert prompt_ids.count(7) == prompt_ids.count(8) == 1  # w7 w8: once, before w5 w6
    assert prompt_ids.index(8) + 1 == prompt_ids.index(5)


STRICT_TEMPLATE = CHAT_TEMPLATE.replace(
    "{% if m['role'] == 'user' %}",
    "{% if '\\n\\n' in m['content'] %}{{ raise_exception('one paragraph per turn') }}"
    "{% endif %}{% if m['role'] == 'user' %}")


def test_fault_14_template_refusing_the_merged_system_prompt(
        cli_env: dict[str, str], broken: Callable) -> None:
    model = broken("14-strict-template", tokenizer_config(chat_template=STRICT_TEMPLATE))
    line = one_sentence(generate(cli_env, model, "--system", "w7 w8"), 2)
    assert line == ("The model's chat template refuses a system prompt, both as a turn of its "
                    "own and merged into the first user turn (one paragraph per turn); run "
                    "without a system prompt.")


def test_fault_14_template_refusing_a_plain_conversation(broken: Callable) -> None:
    """The engine's sentence when even alternating turns without a system prompt fail."""
    from mlx_lm.utils import load_tokenizer

    from mixtui.core.errors import UsageError
    from mixtui.engine.messages import Generate
    from mixtui.engine.prompt import build_prompt_tokens

    model = broken("14-refusing-template", tokenizer_config(
        chat_template="{{ raise_exception('this template formats nothing') }}"))
    tokenizer = load_tokenizer(model)
    for system in (None, "w7"):
        with pytest.raises(UsageError) as err:
            build_prompt_tokens(tokenizer, Generate(1, (("user", "w5"),), system=system))
        assert str(err.value) == (
            "The model's chat template refused this conversation (this template formats "
            "nothing) although its turns alternate user and assistant; fix the template, or "
            "remove it to use the model as a base model.")


# -- 17: a prompt longer than the context ---------------------------------------------------------
def prompt_length(model: Path, messages: list[dict[str, str]]) -> int:
    """Tokens of a conversation by transformers' own chat template (not mixtui's code)."""
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(model).apply_chat_template(
        messages, add_generation_prompt=True)
    return len(ids["input_ids"] if hasattr(ids, "keys") else ids)


LONG = " ".join(f"w{i}" for i in range(10, 30))


def test_fault_17_prompt_longer_than_the_context(cli_env: dict[str, str],
                                                 tiny_moe_dir: Path) -> None:
    n = prompt_length(tiny_moe_dir, [{"role": "user", "content": LONG}])
    proc = mixtui(cli_env, "generate", "--model", tiny_moe_dir, "--prompt", LONG,
                  "--max-kv-size", 16, "--temp", 0)
    assert n > 16
    assert one_sentence(proc, 2) == (f"The prompt is {n} tokens but the context holds 16; "
                                     "shorten it or raise the context size (--max-kv-size).")


def test_fault_17_prompt_that_fills_the_context_exactly(tiny_moe_dir: Path) -> None:
    """One token short of the context is fine; the whole context leaves no room to answer."""
    from mixtui.core.errors import UsageError
    from mixtui.core.types import Sampling
    from mixtui.engine.messages import Finished, Generate
    from mixtui.engine.session import Session

    n = prompt_length(tiny_moe_dir, [{"role": "user", "content": LONG}])
    request = Generate(1, (("user", LONG),), sampling=Sampling(temperature=0, max_tokens=1))
    with pytest.raises(UsageError) as err:
        list(Session.load(str(tiny_moe_dir), max_kv_size=n).generate(request))
    assert str(err.value) == (f"The prompt is {n} tokens but the context holds {n}, the answer "
                              "included; shorten it or raise the context size (--max-kv-size).")
    events = list(Session.load(str(tiny_moe_dir), max_kv_size=n + 1).generate(request))
    assert isinstance(events[-1], Finished) and events[-1].stats.prompt_tokens == n


def test_fault_17_conversation_outgrows_the_context_and_is_kept(tiny_moe_dir: Path) -> None:
    """In a chat (the TUI's case) the engine answers Failed with the numbers, and the next,
    shorter turn still finds the earlier turns in its KV cache."""
    from mixtui.core.types import Sampling
    from mixtui.engine.client import EngineProcess
    from mixtui.engine.messages import Failed, Finished, Generate, Load, Ready
    from mixtui.engine.session import Session

    greedy = Sampling(temperature=0, max_tokens=4)
    engine = EngineProcess()

    def answer(rid: int, turns: tuple[tuple[str, str], ...]) -> Finished | Failed:
        engine.send(Generate(rid, turns, sampling=greedy))
        while True:
            event = engine.next_event(60)
            assert event is not None, "no answer within 60 s"
            if isinstance(event, Finished | Failed):
                return event
            assert not isinstance(event, Ready)

    try:
        engine.send(Load(str(tiny_moe_dir), "tiny", max_kv_size=24))
        while not isinstance(event := engine.next_event(60), Ready):
            assert event is not None and not isinstance(event, Failed), event
        first = answer(1, (("user", PROMPT),))
        assert isinstance(first, Finished)
        turns = (("user", PROMPT), ("assistant", first.text))
        too_long = turns + (("user", LONG),)
        n = prompt_length(tiny_moe_dir, [{"role": r, "content": c} for r, c in too_long])
        failed = answer(2, too_long)
        assert isinstance(failed, Failed) and failed.usage and n > 24
        assert failed.reason == (f"The conversation is {n} tokens but the context holds 24; "
                                 "clear the conversation, shorten your message or raise the "
                                 "context size (--max-kv-size).")
        short = turns + (("user", "w9"),)
        second = answer(3, short)
        assert isinstance(second, Finished), second
        # The first turn's prompt and answer were still cached: nothing was lost.
        assert second.stats.cached_tokens >= first.stats.prompt_tokens > 0
    finally:
        engine.close()
    fresh = list(Session.load(str(tiny_moe_dir), max_kv_size=24).generate(
        Generate(3, short, sampling=greedy)))
    assert second.text == fresh[-1].text


# -- 18: a mistyped local path ----------------------------------------------------------------
@pytest.mark.parametrize(("typed", "expected"), [
    ("./modles/tiny", "No such directory: ./modles/tiny does not exist; check the path, or "
                      "give a model key from `mixtui models`."),
    ("/nonexistent/dir", "No such directory: /nonexistent/dir does not exist; check the path, "
                         "or give a model key from `mixtui models`."),
    ("models/tyny", "No such directory: models/tyny does not exist, and no Hub repo of that "
                    "name is downloaded; check the path, or fetch the repo with "
                    "`mixtui download models/tyny`."),
])
def test_fault_18_mistyped_path_is_no_such_directory(
        no_engine_env: dict[str, str], tiny_moe_dir: Path, tmp_path: Path, typed: str,
        expected: str) -> None:
    (tmp_path / "models").mkdir()
    shutil.copytree(tiny_moe_dir, tmp_path / "models" / "tiny")
    line = one_sentence(generate(no_engine_env, typed, cwd=tmp_path), 2)
    assert line == expected


# -- 06: a shard named in the index but absent ---------------------------------------------------
@pytest.fixture(scope="module")
def sharded_dir(tiny_moe_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with its weights in two shards and a model.safetensors.index.json."""
    import mlx.core as mx

    path = tmp_path_factory.mktemp("sharded") / "tiny-shards"
    shutil.copytree(tiny_moe_dir, path)
    weights = mx.load(str(path / "model.safetensors"))
    (path / "model.safetensors").unlink()
    names = sorted(weights)
    halves = [names[:len(names) // 2], names[len(names) // 2:]]
    for shard, keys in zip(SHARDS, halves, strict=True):
        mx.save_safetensors(str(path / shard), {k: weights[k] for k in keys},
                            metadata={"format": "mlx"})
    weight_map = {k: shard for shard, keys in zip(SHARDS, halves, strict=True) for k in keys}
    (path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map}))
    return path


def hub_snapshot(cache: Path, repo: str, source: Path) -> Path:
    """`source` as the Hugging Face cache holds a download of `repo`."""
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)
    snap = repo_dir / "snapshots" / COMMIT
    shutil.copytree(source, snap)
    return snap


def register(config_dir: Path, key: str, repo: str, model_config: dict) -> None:
    """The user's models.toml names `repo` as model `key`."""
    from dataclasses import asdict

    from mixtui.families.geometry import Geometry

    fields = {k: v for k, v in asdict(Geometry.from_hf_config(model_config)).items()
              if k != "dtype_bytes"}
    geometry = "\n".join(f"{k} = {json.dumps(v)}" for k, v in fields.items())
    (config_dir / "models.toml").write_text(
        f'[models.{key}]\nrepo = "{repo}"\n[models.{key}.geometry]\n{geometry}\n')


def test_fault_06_missing_shard_named_before_load(
        no_engine_env: dict[str, str], empty_hf_cache: Path, isolated_config_dir: Path,
        sharded_dir: Path, tmp_path: Path) -> None:
    from mixtui.core.types import Sampling
    from mixtui.engine.messages import Finished, Generate
    from mixtui.engine.session import Session
    from mixtui.registry.local import require_local, resolve

    # Complete, the sharded model passes and loads: the shards and the index are real.
    snap = hub_snapshot(empty_hf_cache, REPO, sharded_dir)
    assert require_local(resolve(REPO)) == snap
    events = list(Session.load(str(snap)).generate(
        Generate(1, (("user", PROMPT),), sampling=Sampling(temperature=0, max_tokens=4))))
    assert isinstance(events[-1], Finished) and events[-1].stats.generation_tokens == 4

    (snap / SHARDS[1]).unlink()
    shard = SHARDS[1]
    for model, key in ((REPO, REPO), (snap, REPO), ("tiny", "tiny")):
        if key == "tiny":
            register(isolated_config_dir, "tiny", REPO,
                     json.loads((snap / "config.json").read_text()))
        line = one_sentence(generate(no_engine_env, model), 1)
        assert line == (f"{key} is incomplete in {snap}: the shard {shard} is missing; run "
                        f"`mixtui verify {key} --repair` (or `mixtui download {key}`) and try "
                        "again."), model

    # A directory of one's own (not a download) with the same hole: bad input, exit code 2.
    own = tmp_path / "own-copy"
    shutil.copytree(snap, own)
    line = one_sentence(generate(no_engine_env, own), 2)
    assert line == (f"{own} lacks the weight shard {shard} named in "
                    "model.safetensors.index.json; copy it from the model's repository into it.")


def test_fault_17_an_answer_stops_where_the_context_is_full(cli_env: dict[str, str],
                                                            tiny_moe_dir: Path) -> None:
    """mlx-lm's rotating cache would drop the start of the conversation unseen: the answer
    stops at the context instead, and says so."""
    proc = mixtui(cli_env, "generate", "--model", tiny_moe_dir, "--prompt", PROMPT,
                  "--max-tokens", 40, "--temp", 0, "--max-kv-size", 24, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["finish_reason"] == "context"
    assert result["prompt_tokens"] + result["generation_tokens"] == 24
    text = mixtui(cli_env, "generate", "--model", tiny_moe_dir, "--prompt", PROMPT,
                  "--max-tokens", 40, "--temp", 0, "--max-kv-size", 24)
    assert text.returncode == 0
    assert "the answer stopped where the context of 24 tokens is full" in text.stderr
