"""The loader policy's outcomes (app/loader.py), and how the TUI and the CLI word them."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixtui.app.loader import OfferDownload, Refused, Start, Unavailable, decide, is_here
from mixtui.core.errors import ModelNotFound, ModelNotLocal, UsageError
from mixtui.planner import plan
from mixtui.registry.local import resolve

pytestmark = pytest.mark.usefixtures("empty_hf_cache", "fixed_budget")

HUB_MODEL = "mistral-7b-instruct"  # 4.1 GB, never in the (empty) test cache


@pytest.fixture
def online(empty_hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Hub may be asked (nothing here asks it: the policy only decides)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def need_of(model_dir: Path) -> int:
    return plan(resolve(str(model_dir)), context=4096).need_bytes


def test_a_name_that_is_not_a_model_is_unavailable(tmp_path: Path) -> None:
    outcome = decide("no-such-model", context=4096)
    assert isinstance(outcome, Unavailable) and outcome.spec is None
    assert isinstance(outcome.error, ModelNotFound) and outcome.error.exit_code == 2
    assert "Unknown model 'no-such-model'" in str(outcome.error)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    outcome = decide(str(broken), context=4096)
    assert isinstance(outcome, Unavailable) and outcome.error.exit_code == 2


@pytest.mark.usefixtures("online")
def test_a_hub_model_not_here_is_offered_when_it_fits() -> None:
    outcome = decide(HUB_MODEL, context=4096)
    assert isinstance(outcome, OfferDownload) and outcome.spec.key == HUB_MODEL
    assert outcome.fit.verdict == "fits" and isinstance(outcome.error, ModelNotLocal)
    # a front end that does not download (the CLI) gets the sentence saying how to
    outcome = decide(HUB_MODEL, context=4096, offer_download=False)
    assert isinstance(outcome, Unavailable) and isinstance(outcome.error, ModelNotLocal)
    assert f"mixtui download {HUB_MODEL}" in str(outcome.error)
    assert not is_here(HUB_MODEL)


def test_offline_a_hub_model_not_here_is_unavailable() -> None:
    outcome = decide(HUB_MODEL, context=4096)
    assert isinstance(outcome, Unavailable) and isinstance(outcome.error, ModelNotLocal)


@pytest.mark.usefixtures("online")
def test_a_download_that_would_not_fit_is_refused_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXTUI_MEMORY_BUDGET", "1GB")
    outcome = decide(HUB_MODEL, context=4096)
    assert isinstance(outcome, Refused) and outcome.fit.verdict == "does-not-fit"
    assert isinstance(decide(HUB_MODEL, context=4096, force=True), OfferDownload)


def test_a_model_that_does_not_fit_is_refused_unless_forced(
        tiny_moe_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    need = need_of(tiny_moe_dir)
    monkeypatch.setenv("MIXTUI_MEMORY_BUDGET", str(need // 2))
    outcome = decide(str(tiny_moe_dir), context=4096)
    assert isinstance(outcome, Refused) and outcome.fit.verdict == "does-not-fit"
    forced = decide(str(tiny_moe_dir), context=10**7, force=True)
    assert isinstance(forced, Start) and forced.forced and forced.warn
    # what the engine about to end holds comes back before the load: then it fits
    held = decide(str(tiny_moe_dir), context=4096, held_bytes=need * 2)
    assert isinstance(held, Start) and not held.warn


def test_a_tight_fit_starts_with_a_warning(tiny_moe_dir: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXTUI_MEMORY_BUDGET", str(int(need_of(tiny_moe_dir) / 0.95)))
    outcome = decide(str(tiny_moe_dir), context=4096)
    assert isinstance(outcome, Start) and outcome.fit.verdict == "tight"
    assert outcome.warn and not outcome.forced


def test_a_model_that_fits_starts(tiny_moe_dir: Path) -> None:
    checked = []
    outcome = decide(str(tiny_moe_dir), context=1024, check=checked.append)
    assert isinstance(outcome, Start) and not outcome.warn
    assert outcome.where == tiny_moe_dir and [s.key for s in checked] == [outcome.spec.key]
    load = outcome.load(1024, experts_per_token=1)
    assert (load.path, load.max_kv_size, load.experts_per_token) == (str(tiny_moe_dir), 1024, 1)
    assert is_here(str(tiny_moe_dir))

    def refuse(spec: object) -> None:
        raise UsageError("no.")

    with pytest.raises(UsageError):  # the caller's own checks come before any load
        decide(str(tiny_moe_dir), context=1024, check=refuse)


def test_the_tui_and_the_cli_word_the_outcomes(tiny_moe_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from mixtui.cli import wording as cli
    from mixtui.tui import wording as tui

    # it fits at 4096 tokens of context, not at ten million: a shorter context is the remedy
    monkeypatch.setenv("MIXTUI_MEMORY_BUDGET", str(int(need_of(tiny_moe_dir) * 1.3)))
    refused = decide(str(tiny_moe_dir), context=10**7)
    assert isinstance(refused, Refused)
    fit = refused.fit
    n = fit.fits_at_context
    assert n is not None and 4096 <= n < 10**7
    plain = fit.error().message
    assert cli.say(refused) == plain
    assert f"(--max-kv-size {n}); --force loads it anyway." in plain
    assert tui.say(refused) == plain.replace(f"--max-kv-size {n}",
                                             f"max_kv_size {n} in settings.json").replace(
        "; --force loads", "; `mixtui --force` loads")
    assert tui.say(refused, force=True).endswith(f"(max_kv_size {n} in settings.json).")
    forced = decide(str(tiny_moe_dir), context=10**7, force=True)
    assert tui.say(forced).endswith("; loading it anyway (--force).")
    assert cli.say(forced).startswith("warning: ") and cli.say(forced).endswith(
        "loading it anyway (--force).")
    unknown = decide("no-such-model", context=4096)
    assert isinstance(unknown, Unavailable)
    assert tui.say(unknown) == cli.say(unknown) == str(unknown.error)
