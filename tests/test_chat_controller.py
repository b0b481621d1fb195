"""The chat controller without Textual: its states and transitions against real engine
processes on the tiny random models."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from mixtui.app.chat import Change, ChatController, State
from mixtui.app.loader import Start, decide, launch
from mixtui.core.types import Sampling
from mixtui.engine.messages import EngineExited, Event, Failed, Finished, Load, Ready

pytestmark = pytest.mark.usefixtures("fixed_budget")

SHORT = Sampling(temperature=0.0, max_tokens=4)
LONG = Sampling(temperature=0.0, max_tokens=5000)  # this random model never says EOS


def drive(controller: ChatController, until: type | tuple[type, ...],
          on_change=None) -> list[Change]:
    """Feed the engine's events to the controller until one of type `until` was handled."""
    changes: list[Change] = []
    engine = controller.engine
    assert engine is not None
    while True:
        event: Event | None = engine.next_event(timeout=60)
        assert event is not None, "the engine said nothing for 60 s"
        change = controller.handle(event, controller.generation)
        if change is not None:
            changes.append(change)
            if on_change is not None:
                on_change(change)
        if isinstance(event, until):
            return changes


def start(controller: ChatController, model_dir: Path, keep: bool = False) -> int:
    outcome = decide(str(model_dir), context=4096)
    assert isinstance(outcome, Start)
    generation, old = controller.begin_load(outcome.spec.key, keep_conversation=keep)
    assert old is None and controller.state is State.LOADING and controller.running
    assert controller.attach(launch(outcome.load(4096)), generation)
    return generation


@pytest.fixture
def controller():
    chat = ChatController("tiny")
    yield chat
    chat.close()


def test_a_load_starts_a_new_conversation_unless_told_to_keep_it() -> None:
    controller = ChatController("one", system="w7")
    first = controller.conversation
    assert first.system == "w7"
    generation, old = controller.begin_load("two", system="w9")
    assert old is None and controller.state is State.LOADING and controller.model == "two"
    second = controller.conversation
    assert second is not first and (second.model, second.system) == ("two", "w9")
    again, _ = controller.begin_load("two", keep_conversation=True)
    assert again == generation + 1 and controller.conversation is second


def test_load_ask_finish(controller: ChatController, tiny_moe_dir: Path) -> None:
    assert controller.state is State.NO_ENGINE and not controller.running
    with pytest.raises(RuntimeError):
        controller.ask("w5", SHORT)  # nothing to ask yet
    start(controller, tiny_moe_dir)
    changes = drive(controller, Ready)
    assert changes[-1].first_ready and changes[-1].state is State.IDLE
    assert controller.info is not None and controller.info.num_experts == 8
    request = controller.ask("w5 w6 w7", SHORT)
    assert controller.state is State.GENERATING and request.messages == (("user", "w5 w6 w7"),)
    with pytest.raises(RuntimeError):
        controller.ask("again", SHORT)  # one answer at a time
    changes = drive(controller, Finished)
    finished = changes[-1]
    assert finished.ended == "length" and finished.state is State.IDLE
    assert controller.state is State.IDLE and controller.last_finish_reason == "length"
    conversation = controller.conversation
    stats = conversation.stats[-1]
    logged = sum(len(c.tokens.ids) for c in changes if c.tokens is not None)
    assert logged == len(conversation) == stats.prompt_tokens + stats.generation_tokens
    assert conversation.turns[-1] == ("assistant", controller.answer_text)
    assert controller.generated == stats.generation_tokens == 4
    assert conversation.counts().sum() == len(conversation) * 2 * 2  # tokens x layers x k


def test_stop_stale_events_and_a_waiting_prompt(controller: ChatController,
                                                tiny_moe_dir: Path) -> None:
    generation = start(controller, tiny_moe_dir)
    assert controller.wait_for_load("w5 w6")
    assert not controller.wait_for_load("w7")  # one prompt waits, not two
    ready = drive(controller, Ready)[-1]
    assert ready.send == "w5 w6" and controller.pending_prompt is None
    controller.ask(ready.send, LONG)

    def stop_once(change: Change) -> None:
        if change.tokens is not None and change.tokens.phase == "generate" \
                and controller.state is State.GENERATING:
            assert controller.stop()
            assert controller.state is State.STOPPING and controller.generating

    changes = drive(controller, Finished, stop_once)
    assert changes[-1].ended == "cancelled" and controller.state is State.IDLE
    assert not controller.stop()  # nothing to stop now
    assert 0 < controller.generated < 5000
    # events of an engine that was replaced are dropped, its engine is refused
    assert controller.handle(ready.event, generation - 1) is None
    assert controller.handle(Finished(controller.request_id, "late", changes[-1].event.stats),
                             generation) is None  # that request is over


def test_a_failed_load_ends_its_engine_and_gives_the_prompt_back(
        controller: ChatController, tmp_path: Path) -> None:
    generation, _ = controller.begin_load("nothing-here")
    assert controller.attach(launch(Load(str(tmp_path / "nothing-here"), "nothing-here")),
                             generation)
    assert controller.wait_for_load("w5")
    changes = drive(controller, (Failed, EngineExited))
    failed = changes[-1]
    assert isinstance(failed.event, Failed) and failed.load_failed
    assert failed.restore == "w5" and controller.pending_prompt is None
    assert controller.state is State.NOT_LOADED and controller.engine is None
    assert not controller.running


def test_a_killed_engine_then_a_reload_logs_the_history_once(controller: ChatController,
                                                             tiny_moe_dir: Path) -> None:
    start(controller, tiny_moe_dir)
    drive(controller, Ready)
    controller.ask("w5 w6 w7", LONG)
    engine = controller.engine
    assert engine is not None and engine.pid is not None

    def kill_once(change: Change) -> None:
        if change.tokens is not None and change.tokens.phase == "generate" \
                and engine.process.is_alive():
            os.kill(engine.pid, signal.SIGKILL)

    gone = drive(controller, EngineExited, kill_once)[-1]
    assert gone.state is State.EXITED and gone.ended == "engine exited"
    assert controller.engine is None and controller.info is None and not controller.running
    conversation = controller.conversation
    assert [r for r, _ in conversation.turns] == ["user", "assistant"]  # cut short, kept
    history = list(conversation.ids)
    engine.close()

    start(controller, tiny_moe_dir, keep=True)
    assert controller.conversation is conversation  # kept across the reload
    drive(controller, Ready)
    controller.ask("w8", SHORT)
    drive(controller, Finished)
    stats = conversation.stats[-1]
    begin, end = conversation.request_range(1)
    assert begin == len(history) and list(conversation.ids[:begin]) == history
    new_prompt = conversation.phases[begin:end].count("prompt")
    # the engine re-ran the history; the log kept only the new turn's prompt tokens
    assert stats.prompt_tokens > len(history) > new_prompt > 0
    assert conversation.phases[begin:end].count("generate") == 4


def test_a_new_conversation_resets_the_engine(controller: ChatController,
                                              tiny_moe_dir: Path) -> None:
    start(controller, tiny_moe_dir)
    drive(controller, Ready)
    controller.ask("w5", SHORT)
    drive(controller, Finished)
    controller.new_conversation(system="w9")
    assert controller.conversation.turns == [] and controller.conversation.system == "w9"
    controller.ask("w5", SHORT)
    stats = drive(controller, Finished)[-1].event.stats
    assert stats.cached_tokens == 0  # the engine forgot the old conversation's cache
    assert len(controller.conversation) == stats.prompt_tokens + stats.generation_tokens


def test_the_exit_of_a_failed_loads_engine_changes_nothing() -> None:
    """The controller ends the engine of a failed load itself; that engine's EngineExited
    must not turn "not loaded" into "exited" (a second notice, a wrong status)."""
    chat = ChatController("m")
    generation, _ = chat.begin_load("m")
    change = chat.handle(Failed(None, "It did not load."), generation)
    assert change is not None and change.load_failed and chat.state is State.NOT_LOADED
    assert chat.handle(EngineExited(0), generation) is None
    assert chat.state is State.NOT_LOADED


def test_a_released_engine_is_let_go_and_a_reload_continues_the_conversation(
        controller: ChatController, tiny_moe_dir: Path) -> None:
    generation = start(controller, tiny_moe_dir)
    drive(controller, Ready)
    controller.ask("w5 w6", LONG)
    with pytest.raises(RuntimeError):
        controller.release()  # not while answering
    controller.stop()
    drive(controller, Finished)
    conversation, history = controller.conversation, list(controller.conversation.ids)
    engine = controller.release()
    assert engine is not None and engine.pid is not None
    assert controller.engine is None and controller.info is None
    assert controller.state is State.NO_ENGINE and not controller.running
    engine.close()  # the caller's to end
    assert engine.process.exitcode is not None
    # what its reader sends next is stale: no "engine exited" for a released engine
    assert controller.handle(EngineExited(engine.process.exitcode), generation) is None
    assert controller.state is State.NO_ENGINE
    start(controller, tiny_moe_dir, keep=True)
    assert controller.conversation is conversation
    drive(controller, Ready)
    controller.ask("w7", SHORT)
    drive(controller, Finished)
    begin, _ = conversation.request_range(1)
    assert list(conversation.ids[:begin]) == history  # the history is in the log once
