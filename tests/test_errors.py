"""Errors as data: a code, facts and remedies; each front end words the remedies its own way."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest

from mixtui.cli.main import main
from mixtui.cli.wording import error_record
from mixtui.core.errors import MixtuiError, ModelNotFound, Remedy, UsageError, literal
from mixtui.engine.messages import Failed
from mixtui.hub.errors import DiskFull, describe, endpoint
from mixtui.tui import wording as tui_wording


def test_codes_come_from_the_class_and_can_be_given() -> None:
    assert ModelNotFound("x").code == "model-not-found"
    assert DiskFull("x").code == "disk-full"
    assert UsageError("x").code == "usage" and UsageError("x").exit_code == 2
    assert MixtuiError("x", code="my-code").code == "my-code"


def test_remedies_are_worded_by_whoever_renders_them() -> None:
    again = Remedy("again", "run the command again")
    flag = Remedy("context", "--max-kv-size {value}", 2048)
    error = MixtuiError("It broke ({context}); {again}.", remedies=(again, flag))
    assert str(error) == error.message == "It broke (--max-kv-size 2048); run the command again."
    tui = {"again": "try again", "context": "max_kv_size {value} in settings.json"}
    assert error.render(tui) == "It broke (max_kv_size 2048 in settings.json); try again."
    # a remedy the front end has no wording for keeps its plain one
    assert error.render({"again": "press r"}) == "It broke (--max-kv-size 2048); press r."


def test_without_remedies_a_sentence_is_taken_as_it_stands() -> None:
    text = "quantization must be { bits = N, group_size = N }; fix it."
    assert str(UsageError(text)) == text
    braces = MixtuiError(literal("a {weird} name") + ": {again}.",
                         remedies=(Remedy("again", "retry"),))
    assert str(braces) == "a {weird} name: retry."
    # text that was not escaped cannot make rendering fail: unknown fields stay as they are
    raw = MixtuiError("/models/na{no} does not fit{force}.", remedies=(Remedy("force", "!"),))
    assert str(raw) == "/models/na{no} does not fit!." and raw.render({"force": ""}) == (
        "/models/na{no} does not fit.")


def test_an_error_crosses_a_process_boundary_whole() -> None:
    error = DiskFull("Full; {again}.", "traceback", facts={"free": 3},
                     remedies=(Remedy("again", "run the command again"),))
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is DiskFull and back.code == "disk-full" and back.exit_code == 1
    assert back.detail == "traceback" and back.facts == {"free": 3}
    assert back.render({"again": "try again"}) == "Full; try again."


def test_the_engine_failure_keeps_code_and_facts() -> None:
    error = UsageError("The prompt is 30 tokens but the context holds 24.",
                       code="context-overflow", facts={"tokens": 30, "context": 24})
    event = Failed.of(7, error)
    assert event.usage and event.code == "context-overflow"
    again = event.error()
    assert isinstance(again, UsageError) and again.exit_code == 2
    assert again.facts == {"tokens": 30, "context": 24} and str(again) == str(error)


def test_hub_errors_in_each_front_ends_words() -> None:
    error = describe(ConnectionError("refused"), "org/model", None)
    assert error.code == "hub-unreachable" and error.facts["repo"] == "org/model"
    head = (f"The Hub at {endpoint()} cannot be reached or the connection dropped "
            "(ConnectionError); check the network and ")
    assert str(error) == head + ("run the command again (finished files are kept), or use "
                                 "--offline for what is cached.")
    assert tui_wording.say(error) == head + "try again (finished files are kept)."


def test_json_record_of_an_error() -> None:
    record = error_record(ModelNotFound("Unknown model 'x'.", facts={"model": "x"}))
    assert record == {"error": {"code": "model-not-found", "message": "Unknown model 'x'.",
                                "exit_code": 2, "model": "x"}}


def test_generate_json_failure_is_structured(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--model", "no-such-model", "--prompt", "x", "--json"]) == 2
    out, err = capsys.readouterr()
    record = json.loads(out)["error"]
    assert record["code"] == "model-not-found" and record["model"] == "no-such-model"
    assert "nano" in record["known"] and record["exit_code"] == 2
    assert record["message"].startswith("Unknown model 'no-such-model'; use one of nano")
    assert err == ""
    # without --json: the same sentence on stderr, nothing on stdout
    assert main(["generate", "--model", "no-such-model", "--prompt", "x"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"mixtui: {record['message']}\n"


def test_json_usage_errors_are_structured_too() -> None:
    """The real command: a missing argument and a bad value, each a record and exit 2."""
    for args, code in ((["--model", "nano", "--json"], "bad-arguments"),
                       (["--model", "nano", "--prompt", "x", "--top-p", "2", "--json"],
                        "bad-option")):
        proc = subprocess.run([sys.executable, "-m", "mixtui", "generate", *args],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert json.loads(proc.stdout)["error"]["code"] == code
        assert proc.stderr == ""
