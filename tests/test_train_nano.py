"""scripts/train_nano.py: the R-serialization reader, the corpus, and a 3-step training run.

The corpus tests use the real Debian package (``apt-get download r-cran-janeaustenr``) cached
under the user's default cache directory, so it is fetched once per machine; they are
skipped where it can be neither found nor downloaded.
"""

from __future__ import annotations

import importlib.util
import json
import math
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts" / "train_nano.py"
CACHE_DIR = Path("~/.cache/mixtui/corpus").expanduser()


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("train_nano", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_nano"] = module
    spec.loader.exec_module(module)
    return module


tn = _load_script()


@pytest.fixture(scope="module")
def novels() -> dict[str, list[str]]:
    """The six novels from the cached (or freshly downloaded) Debian package."""
    try:
        lines, _ = tn.load_austen_novels(CACHE_DIR)
    except SystemExit as exc:  # no apt-get, or no package index
        pytest.skip(f"r-cran-janeaustenr is not available: {exc}")
    return lines


# --- the R reader, on hand-made serializations ------------------------------------------


def _int(value: int) -> bytes:
    return struct.pack(">i", value)


def _charsxp(text: str | None) -> bytes:
    if text is None:
        return _int(9) + _int(-1)
    raw = text.encode("utf-8")
    return _int(9 | (1 << 3 << 12)) + _int(len(raw)) + raw


def _header(version: int = 3) -> bytes:
    head = b"X\n" + _int(version) + _int(0x040201) + _int(0x030500)
    return head + (_int(5) + b"UTF-8" if version == 3 else b"")


def _named_strings(values: list[str | None], names: list[str]) -> bytes:
    """c(name1 = value1, ...) as R's serialize() writes it."""
    body = _int(16 | (1 << 9)) + _int(len(values)) + b"".join(_charsxp(v) for v in values)
    attrs = _int(2 | (1 << 10)) + _int(1) + _charsxp("names")  # pairlist cell, tag: names
    attrs += _int(16) + _int(len(names)) + b"".join(_charsxp(n) for n in names)
    return body + attrs + _int(254)  # end of the attribute pairlist


@pytest.mark.parametrize("version", [2, 3])
def test_reader_character_vector_with_na_and_names(version: int) -> None:
    obj = tn.unserialize(_header(version) + _named_strings(["Emma", None, "é"], ["a", "b", "c"]))
    assert obj.sexptype == tn.STRSXP
    assert obj.value == ["Emma", None, "é"]
    assert obj.names() == ["a", "b", "c"]
    assert obj.as_dict() == {"a": "Emma", "b": None, "c": "é"}


def test_reader_numbers_lists_and_symbol_references() -> None:
    ints = _int(13) + _int(3) + _int(1) + _int(-(2**31)) + _int(7)
    reals = _int(14) + _int(2) + struct.pack(">dd", 0.5, -2.0)
    inner = _named_strings(["x"], ["n1"])  # defines the symbol `names` (reference 1)
    # The outer list's names attribute refers back to that symbol (REFSXP, index 1).
    names_attr = _int(2 | (1 << 10)) + _int((1 << 8) | 255)
    names_attr += _int(16) + _int(3) + _charsxp("i") + _charsxp("r") + _charsxp("s") + _int(254)
    data = _header() + _int(19 | (1 << 9)) + _int(3) + ints + reals + inner + names_attr
    obj = tn.unserialize(data)
    assert obj.sexptype == tn.VECSXP
    fields = obj.as_dict()
    assert fields["i"].value == [1, None, 7]
    assert fields["r"].value == [0.5, -2.0]
    assert fields["s"].as_dict() == {"n1": "x"}


def test_lazyload_db_roundtrip() -> None:
    payload = _header() + _named_strings(["one", "two"], ["x", "y"])
    blob = struct.pack(">I", len(payload)) + zlib.compress(payload)
    index_obj = _header() + _int(19 | (1 << 9)) + _int(3)
    index_obj += _int(19 | (1 << 9)) + _int(1) + _int(13) + _int(2) + _int(0) + _int(len(blob))
    index_obj += _int(2 | (1 << 10)) + _int(1) + _charsxp("names")
    index_obj += _int(16) + _int(1) + _charsxp("vec") + _int(254)
    index_obj += _int(19) + _int(0)  # references: list()
    index_obj += _int(10) + _int(1) + _int(1)  # compressed: TRUE
    index_obj += _int(2 | (1 << 10)) + _int((1 << 8) | 255)  # tag: the "names" symbol
    index_obj += (
        _int(16)
        + _int(3)
        + b"".join(_charsxp(n) for n in ("variables", "references", "compressed"))
    )
    index_obj += _int(254)
    rdx = struct.pack(">I", len(index_obj)) + zlib.compress(index_obj)
    objects = tn.read_lazyload_db(blob, rdx)
    assert objects["vec"].value == ["one", "two"]


def test_ar_archive_reader() -> None:
    def member(name: str, data: bytes) -> bytes:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        return header + data + (b"\n" if len(data) % 2 else b"")

    archive = b"!<arch>\n" + member("debian-binary", b"2.0\n") + member("odd", b"abc")
    assert tn.read_ar_members(archive) == {"debian-binary": b"2.0\n", "odd": b"abc"}


# --- the real package data -------------------------------------------------------------


def test_reader_on_janeaustenr(novels: dict[str, list[str]]) -> None:
    assert set(novels) == set(tn.NOVELS)
    assert novels["emma"][0] == "EMMA"
    assert len(novels["emma"]) > 10_000
    assert all(len(lines) > 5_000 for lines in novels.values())
    assert any("Woodhouse" in line for line in novels["emma"][:50])


def test_paragraphs_and_holdout(novels: dict[str, list[str]]) -> None:
    pride = tn.novel_paragraphs(novels["prideprejudice"])
    assert pride[0].startswith("It is a truth universally acknowledged")
    assert not any(p.lower().startswith("chapter ") for p in pride)
    northanger = tn.novel_paragraphs(novels["northangerabbey"])
    assert not any("Signet Classic" in p for p in northanger)  # the editor's note is dropped
    train, val = tn.split_holdout(pride, 0.05)
    assert train + val == pride
    held = sum(len(p) for p in val) / sum(len(p) for p in pride)
    assert 0.05 <= held < 0.07
    assert tn.split_holdout(pride, 0.05) == (train, val)


# --- an end-to-end run -------------------------------------------------------------------


@pytest.mark.slow
def test_train_script_runs_and_output_loads(tmp_path: Path, novels: dict[str, list[str]]) -> None:
    out = tmp_path / "nano"
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--steps",
        "3",
        "--batch-size",
        "4",
        "--seq-len",
        "128",
        "--max-train-chars",
        "200000",
        "--max-val-chars",
        "20000",
        "--sample-tokens",
        "16",
        "--log-every",
        "1",
        "--cache-dir",
        str(CACHE_DIR),
        "--out",
        str(out),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "step     3/3" in result.stdout

    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (out / name).is_file(), name
    assert sum(p.stat().st_size for p in out.iterdir()) <= 20_000_000

    from mlx_lm import generate, load

    loaded = load(str(out))
    model, tokenizer = loaded[0], loaded[1]
    assert type(model).__module__ == "mlx_lm.models.mixtral"
    ids = tokenizer.encode("It was")
    assert ids[0] == tokenizer.bos_token_id == 1
    text = generate(model, tokenizer, "It was", max_tokens=5)
    assert isinstance(text, str)
    assert tokenizer.decode(tokenizer.encode("Mr. Darcy bowed."), skip_special_tokens=True) == (
        "Mr. Darcy bowed."
    )

    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "mixtral"
    assert config["architectures"] == ["MixtralForCausalLM"]
    assert (config["num_local_experts"], config["num_experts_per_tok"]) == (8, 2)
    assert config["num_hidden_layers"] >= 4
    assert config["torch_dtype"] == "float32"

    report = json.loads((out / "train_report.json").read_text())
    for key in (
        "model",
        "corpus",
        "tokenizer",
        "training",
        "evaluation",
        "routing",
        "samples",
        "words",
        "machine",
        "files",
    ):
        assert key in report, key
    assert report["corpus"]["package"] == "r-cran-janeaustenr"
    assert report["corpus"]["train_chars"] <= 200_000 + 2_000
    assert report["tokenizer"]["decode_roundtrip"] and report["tokenizer"]["stream_roundtrip"]
    assert report["training"]["steps"] == 3
    assert report["training"]["tokens_seen"] == 3 * 4 * 128
    evaluation = report["evaluation"]
    assert math.isfinite(evaluation["val_loss"]) and 0 < evaluation["val_loss"] < 10
    assert 0 < evaluation["unigram_loss"] < math.log(config["vocab_size"]) + 0.1
    layers = report["routing"]["layers"]
    assert len(layers) == config["num_hidden_layers"]
    for layer in layers:
        assert len(layer["top1_share"]) == 8
        assert abs(sum(layer["top1_share"]) - 1) < 1e-3
        for rate in ("same_top1_rate", "next_top1_in_top2_rate", "top2_overlap_rate"):
            assert 0 <= layer[rate] <= 1
        assert layer["same_top1_rate"] <= layer["next_top1_in_top2_rate"]
    assert len(report["samples"]) == len(tn.PROMPTS)
    assert all(s["generated_tokens"] > 0 for s in report["samples"])
    assert 0 <= report["words"]["fraction"] <= 1
    assert report["files"]["total_bytes"] <= 20_000_000
    n_params = sum(int(v.size) for v in tn.flat_parameters(model).values())
    assert report["model"]["parameters"] == n_params
