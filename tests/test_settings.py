"""Settings: load / save of settings.json, and the checks that turn typed text into values."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from mixtui.app.settings import (
    Settings,
    SettingsError,
    load_settings,
    parse_experts_per_token,
    parse_max_kv_size,
    parse_sampling,
    parse_value,
    save_settings,
    settings_path,
    validate_sampling,
)
from mixtui.core.errors import MixtuiError, UsageError
from mixtui.core.types import DEFAULT_CONTEXT, Sampling


def one_sentence(message: str) -> bool:
    return message.endswith(".") and "\n" not in message and ". " not in message


def custom() -> Settings:
    return Settings(last_model="mixtral-8x7b-instruct",
                    sampling=Sampling(temperature=0.2, top_p=0.9, top_k=40, min_p=0.05,
                                      seed=1234, max_tokens=512),
                    system_prompt="Answer like Mr Darcy. «ünïcode»",
                    experts_per_token={"nano": 3, "mixtral-8x7b-instruct": 1},
                    expert_colouring=False, max_kv_size=8192)


def test_defaults_when_there_is_no_file(isolated_config_dir: Path) -> None:
    assert settings_path() == isolated_config_dir / "settings.json"
    settings, warning = load_settings()
    assert settings == Settings() and warning is None
    assert settings.max_kv_size == DEFAULT_CONTEXT and settings.sampling == Sampling()
    assert settings.experts_for("nano") is None


def test_round_trip(isolated_config_dir: Path) -> None:
    save_settings(custom())
    settings, warning = load_settings()
    assert warning is None
    assert settings == custom()
    assert settings.experts_for("nano") == 3
    text = settings_path().read_text(encoding="utf-8")
    record = json.loads(text)
    assert record["version"] == 1 and list(record)[0] == "version"
    assert text.endswith("\n") and "\n  " in text  # pretty
    assert list(record["experts_per_token"]) == ["mixtral-8x7b-instruct", "nano"]  # sorted
    # Stable: the same settings give the same bytes; no temporary file stays behind.
    save_settings(settings)
    assert settings_path().read_text(encoding="utf-8") == text
    assert sorted(p.name for p in isolated_config_dir.iterdir()) == ["settings.json"]


def test_save_creates_the_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "a" / "b"
    monkeypatch.setenv("MIXTUI_CONFIG_DIR", str(folder))
    save_settings(Settings(last_model="nano"))
    assert load_settings() == (Settings(last_model="nano"), None)


def test_invalid_json_is_kept_as_bad(isolated_config_dir: Path) -> None:
    path = settings_path()
    path.write_text('{"last_model": "nano",\n "sampling": {', encoding="utf-8")
    settings, warning = load_settings()
    assert settings == Settings()
    assert warning is not None and one_sentence(warning)
    assert str(path) in warning and "not valid JSON" in warning and "settings.json.bad" in warning
    assert not path.exists()
    bad = isolated_config_dir / "settings.json.bad"
    assert bad.read_text(encoding="utf-8") == '{"last_model": "nano",\n "sampling": {'
    # The next save writes a fresh file and leaves the kept one alone.
    save_settings(custom())
    assert load_settings() == (custom(), None) and bad.exists()


def test_not_an_object_is_kept_as_bad(isolated_config_dir: Path) -> None:
    settings_path().write_text("[1, 2]", encoding="utf-8")
    settings, warning = load_settings()
    assert settings == Settings() and warning is not None and one_sentence(warning)
    assert "JSON object" in warning
    assert (isolated_config_dir / "settings.json.bad").read_text(encoding="utf-8") == "[1, 2]"


def test_binary_garbage_is_kept_as_bad(isolated_config_dir: Path) -> None:
    settings_path().write_bytes(b"\xff\xfe\x00garbage")
    settings, warning = load_settings()
    assert settings == Settings() and warning is not None and "not valid JSON" in warning
    assert (isolated_config_dir / "settings.json.bad").exists()


def test_invalid_values_are_defaulted_and_named(isolated_config_dir: Path) -> None:
    record = {
        "version": 1,
        "last_model": "nano",
        "sampling": {"temperature": -1, "top_p": 1.5, "top_k": 5, "min_p": 0.1,
                     "seed": "x", "max_tokens": 0},
        "system_prompt": "Be brief.",
        "experts_per_token": {"nano": 0, "big": 3, "bool": True},
        "expert_colouring": "yes",
        "max_kv_size": 8,
        "something_new": {"ignored": True},
    }
    settings_path().write_text(json.dumps(record), encoding="utf-8")
    settings, warning = load_settings()
    assert settings == Settings(last_model="nano",
                                sampling=Sampling(top_k=5, min_p=0.1),
                                system_prompt="Be brief.", experts_per_token={"big": 3})
    assert warning is not None and one_sentence(warning) and str(settings_path()) in warning
    for name in ("sampling.temperature", "sampling.top_p", "sampling.seed",
                 "sampling.max_tokens", 'experts_per_token["nano"]',
                 'experts_per_token["bool"]', "expert_colouring", "max_kv_size"):
        assert name in warning
    assert "something_new" not in warning and "top_k" not in warning
    # the file stays, and a copy as it was survives the next save, which rewrites it
    assert settings_path().is_file() and "settings.json.bad" in warning
    kept = json.loads((isolated_config_dir / "settings.json.bad").read_text(encoding="utf-8"))
    assert kept == record


def test_wrong_types_of_whole_sections(isolated_config_dir: Path) -> None:
    settings_path().write_text(json.dumps({"sampling": [1], "experts_per_token": 3,
                                           "last_model": 7, "system_prompt": None,
                                           "max_kv_size": 100.0}), encoding="utf-8")
    settings, warning = load_settings()
    assert settings == Settings(max_kv_size=100)  # an integral float is a whole number
    assert warning is not None
    for name in ("sampling", "experts_per_token", "last_model", "system_prompt"):
        assert name in warning


def test_non_finite_numbers_are_rejected(isolated_config_dir: Path) -> None:
    settings_path().write_text('{"sampling": {"temperature": NaN, "top_p": Infinity}}',
                               encoding="utf-8")
    settings, warning = load_settings()
    assert settings.sampling == Sampling() and warning is not None
    assert "temperature" in warning and "top_p" in warning


def test_newer_version_warns(isolated_config_dir: Path) -> None:
    settings_path().write_text(json.dumps({"version": 2, "last_model": "nano"}),
                               encoding="utf-8")
    settings, warning = load_settings()
    assert settings.last_model == "nano"
    assert warning is not None and "newer mixtui" in warning and one_sentence(warning)


def test_unreadable_file_gives_defaults(isolated_config_dir: Path) -> None:
    settings_path().mkdir()  # a directory where the file should be
    settings, warning = load_settings()
    assert settings == Settings() and warning is not None and "Cannot read" in warning
    assert one_sentence(warning)


def test_save_into_an_unusable_directory(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("MIXTUI_CONFIG_DIR", str(blocker / "mixtui"))
    with pytest.raises(SettingsError) as err:
        save_settings(Settings())
    message = str(err.value)
    assert isinstance(err.value, MixtuiError) and one_sentence(message)
    assert "Cannot save the settings" in message and "MIXTUI_CONFIG_DIR" in message


def test_save_into_a_read_only_directory(isolated_config_dir: Path) -> None:
    save_settings(Settings())
    isolated_config_dir.chmod(0o500)
    try:
        if os.access(isolated_config_dir, os.W_OK):
            pytest.skip("running as a user that chmod cannot stop (root)")
        with pytest.raises(SettingsError) as err:
            save_settings(custom())
        assert str(isolated_config_dir) in str(err.value)
        assert load_settings() == (Settings(), None)  # the old file is intact
    finally:
        isolated_config_dir.chmod(0o700)


# -- typed text --------------------------------------------------------------------------------
def test_parse_sampling_accepts_good_text() -> None:
    current = Sampling(seed=7)
    got = parse_sampling({"temperature": " 0 ", "top_p": "0.95", "top_k": "40",
                          "min_p": "0.05", "seed": "", "max_tokens": "1e3"}, current)
    assert got == Sampling(temperature=0.0, top_p=0.95, top_k=40, min_p=0.05, seed=None,
                           max_tokens=1000)
    assert isinstance(got.temperature, float) and isinstance(got.max_tokens, int)
    # Fields left out keep their current value.
    assert parse_sampling({"seed": "42"}, current) == replace(current, seed=42)
    assert parse_sampling({}, current) == current


@pytest.mark.parametrize(("name", "text", "message"), [
    ("temperature", "abc", "Temperature must be a number >= 0, not 'abc'."),
    ("temperature", "-0.1", "Temperature must be a number >= 0, not '-0.1'."),
    ("temperature", "", "Temperature must be a number >= 0, not ''."),
    ("temperature", "nan", "Temperature must be a number >= 0, not 'nan'."),
    ("top_p", "0", "Top-p must be a number greater than 0 and at most 1, not '0'."),
    ("top_p", "1.01", "Top-p must be a number greater than 0 and at most 1, not '1.01'."),
    ("top_k", "2.5", "Top-k must be a whole number >= 0 (0 turns it off), not '2.5'."),
    ("min_p", "2", "Min-p must be a number from 0 to 1 (0 turns it off), not '2'."),
    ("seed", "-1", "Seed must be a whole number >= 0, or empty for a random seed, not '-1'."),
    ("max_tokens", "0", "Max tokens must be a whole number >= 1, not '0'."),
])
def test_parse_sampling_rejects_bad_text(name: str, text: str, message: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_sampling({name: text}, Sampling())
    assert str(err.value) == message


def test_parse_sampling_unknown_field_is_a_bug() -> None:
    with pytest.raises(KeyError):
        parse_sampling({"temp": "1"}, Sampling())


def test_validate_sampling() -> None:
    validate_sampling(Sampling())
    with pytest.raises(UsageError, match=r"^Top-p must be"):
        validate_sampling(Sampling(top_p=0.0))
    with pytest.raises(UsageError, match=r"^Max tokens must be"):
        validate_sampling(Sampling(max_tokens=-3))


def test_other_parsers() -> None:
    assert parse_max_kv_size("2048") == 2048
    with pytest.raises(UsageError, match=r"^Context size must be a whole number >= 16, not '8'"):
        parse_max_kv_size("8")
    assert parse_value("seed", " 3 ") == 3
    assert parse_experts_per_token("") is None
    assert parse_experts_per_token("Default") is None
    assert parse_experts_per_token("3", num_experts=8) == 3
    with pytest.raises(UsageError) as err:
        parse_experts_per_token("9", num_experts=8)
    assert str(err.value) == ("Experts per token must be a whole number from 1 to 8, or empty "
                              "for the model's default, not '9'.")
    with pytest.raises(UsageError, match="from 1 or more"):
        parse_experts_per_token("x")
