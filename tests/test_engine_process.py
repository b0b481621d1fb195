"""The engine process: load, stream, cancel, survive failures, report its own death."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mixtui.core.types import Sampling
from mixtui.engine.client import EngineProcess
from mixtui.engine.messages import (
    EngineExited,
    Event,
    Failed,
    Finished,
    Generate,
    Load,
    Loading,
    Ready,
    Tokens,
)

START_TIMEOUT = 60.0  # the first event waits for the process to import MLX
# Long generations are greedy: sampling at temperature 0.8 from a random model draws the
# end-of-sequence token within a few hundred tokens, which would end them before a cancel
# or a kill arrives; greedy decoding from this prompt runs thousands of tokens without it.
LONG = Sampling(temperature=0.0, max_tokens=5000)


def next_event(engine: EngineProcess, timeout: float = START_TIMEOUT) -> Event:
    event = engine.next_event(timeout)
    assert event is not None, f"no event within {timeout} s"
    return event


def load(engine: EngineProcess, path: Path) -> tuple[Ready, list[Loading]]:
    engine.send(Load(str(path), "tiny"))
    loading: list[Loading] = []
    while True:
        event = next_event(engine)
        if isinstance(event, Loading):
            loading.append(event)
            continue
        assert isinstance(event, Ready), event
        return event, loading


def generate(engine: EngineProcess, rid: int, max_tokens: int = 8,
             temperature: float = 0.0) -> list[Event]:
    engine.send(Generate(rid, (("user", "w5 w6 w7"),),
                         sampling=Sampling(temperature=temperature, max_tokens=max_tokens)))
    events: list[Event] = []
    while not events or not isinstance(events[-1], Finished | Failed | EngineExited):
        events.append(next_event(engine, 30.0))
    return events


@pytest.fixture(scope="module")
def engine(tiny_moe_dir: Path) -> Iterator[EngineProcess]:
    """An engine with the tiny MoE model loaded."""
    proc = EngineProcess()
    try:
        ready, _ = load(proc, tiny_moe_dir)
        assert ready.info.moe_layers == (0, 1)
        yield proc
    finally:
        proc.close()


def test_load_reports_progress_and_ready(tiny_moe_dir: Path) -> None:
    engine = EngineProcess()
    try:
        assert engine.pid is not None and engine.pid != os.getpid()
        # failures are events, not crashes: a Generate before any Load ...
        engine.send(Generate(7, (("user", "w5"),)))
        failed = next_event(engine)
        assert isinstance(failed, Failed) and failed.request_id == 7
        assert "load" in failed.reason.lower()
        # ... and a directory without weights
        empty = tiny_moe_dir.parent / "no-weights"
        empty.mkdir(exist_ok=True)
        for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
            (empty / name).write_bytes((tiny_moe_dir / name).read_bytes())
        engine.send(Load(str(empty), "broken"))
        events = []
        while not events or isinstance(events[-1], Loading):
            events.append(next_event(engine))
        assert isinstance(events[-1], Failed), events
        assert str(empty) in events[-1].reason and "internal error" not in events[-1].reason
        assert engine.process.is_alive()
        # the same process still loads and generates
        ready, loading = load(engine, tiny_moe_dir)
        assert ready.info.num_experts == 8 and ready.info.top_k == 2
        assert loading and loading[-1].done == loading[-1].total
        assert [e.done for e in loading] == sorted(e.done for e in loading)
        events = generate(engine, 1, max_tokens=4)
        assert isinstance(events[-1], Finished)
    finally:
        engine.close()
    assert not engine.process.is_alive()


def test_generate_streams_tokens_then_finished(engine: EngineProcess) -> None:
    events = generate(engine, 3, max_tokens=12)
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.request_id == 3
    tokens = events[:-1]
    assert tokens and all(isinstance(e, Tokens) and e.request_id == 3 for e in tokens)
    assert tokens[0].phase == "prompt"  # type: ignore[union-attr]
    assert all(e.phase == "generate" for e in tokens[1:])  # type: ignore[union-attr]
    ids = [i for e in tokens[1:] for i in e.ids]  # type: ignore[union-attr]
    assert len(ids) == finished.stats.generation_tokens == 12
    assert finished.stats.finish_reason == "length"
    for e in tokens:
        assert e.routing is not None and len(e.routing) == len(e.ids)  # type: ignore[union-attr]
    assert finished.text == "".join(t for e in tokens[1:] for t in e.texts)  # type: ignore[union-attr]


def test_cancel_stops_a_long_generation(engine: EngineProcess) -> None:
    engine.send(Generate(4, (("user", "w5 w6 w7"),), sampling=LONG))
    while True:
        event = next_event(engine, 30.0)
        assert not isinstance(event, Finished | Failed | EngineExited), event
        if isinstance(event, Tokens) and event.phase == "generate":
            break
    engine.cancel()
    cancelled_at = time.monotonic()
    while True:
        event = next_event(engine, 2.0)
        if isinstance(event, Finished):
            break
        assert isinstance(event, Tokens), event
    assert time.monotonic() - cancelled_at < 2.0
    assert event.request_id == 4
    assert event.stats.finish_reason == "cancelled"
    assert 0 < event.stats.generation_tokens < 5000
    # the next request is not cancelled by the old flag
    events = generate(engine, 5, max_tokens=3)
    assert isinstance(events[-1], Finished)
    assert events[-1].stats.finish_reason == "length"


def test_cancel_reaches_a_request_that_is_still_queued(engine: EngineProcess,
                                                       tiny_moe_dir: Path) -> None:
    """A cancel sent after a Generate stops it, even if the engine had not started it yet."""
    engine.send(Load(str(tiny_moe_dir), "tiny"))  # keeps the engine busy for a moment
    engine.send(Generate(6, (("user", "w5 w6 w7"),), sampling=LONG))
    engine.cancel()
    deadline = time.monotonic() + 5.0
    finished: Finished | None = None
    late = False
    while finished is None:
        if not late and time.monotonic() > deadline:
            late = True  # still generating: the cancel was lost; stop it to go on
            engine.cancel()
        event = next_event(engine, 10.0)
        assert not isinstance(event, Failed | EngineExited), event
        if isinstance(event, Finished):
            finished = event
    assert finished.request_id == 6
    assert not late, "the cancel was lost: the queued generation ran on"
    assert finished.stats.finish_reason == "cancelled"
    assert finished.stats.generation_tokens < 5000


def test_fault_16_killed_engine_reports_exit(tiny_moe_dir: Path) -> None:
    engine = EngineProcess()
    try:
        load(engine, tiny_moe_dir)
        engine.send(Generate(1, (("user", "w5 w6 w7"),), sampling=LONG))
        while True:
            event = next_event(engine, 30.0)
            if isinstance(event, Tokens) and event.phase == "generate":
                break
        assert engine.pid is not None
        os.kill(engine.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10.0
        while True:
            assert time.monotonic() < deadline, "no EngineExited after SIGKILL"
            event = next_event(engine, 5.0)
            if isinstance(event, EngineExited):
                break
            assert isinstance(event, Tokens), event
        assert event.code == -signal.SIGKILL
        assert "-9" in event.reason
        # once gone, it stays gone: no hang on the next read or send
        engine.send(Generate(2, (("user", "w5"),)))
        assert engine.next_event(0.5) == event
    finally:
        engine.close()

    fresh = EngineProcess()
    try:
        ready, _ = load(fresh, tiny_moe_dir)
        assert ready.info.num_experts == 8
        events = generate(fresh, 1, max_tokens=3)
        assert isinstance(events[-1], Finished)
        assert events[-1].stats.generation_tokens == 3
    finally:
        fresh.close()


def test_closing_from_two_threads_at_once_is_one_close(monkeypatch: pytest.MonkeyPatch) -> None:
    """Quitting closes the engine while the reader thread, woken by that, closes it too: one
    of them closes (here made slow, to hold the race open), the other waits, neither fails."""
    import threading

    proc = EngineProcess()
    real, calls = proc._close, []

    def slow_close(timeout: float) -> None:
        calls.append(threading.get_ident())
        time.sleep(0.3)
        real(timeout)

    monkeypatch.setattr(proc, "_close", slow_close)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def close() -> None:
        barrier.wait()
        try:
            proc.close(timeout=1.0)
        except BaseException as exc:  # the test's point: none may escape
            errors.append(exc)

    threads = [threading.Thread(target=close) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == [] and len(calls) == 1 and not proc.process.is_alive()
    proc.close()  # and once more, later: nothing
    assert len(calls) == 1


def test_a_reader_waiting_when_its_engine_closes_never_reads_the_next_engines_pipe(
        tiny_moe_dir: Path) -> None:
    """The TUI reads an engine's events on a thread of its own; switching models (or a
    compare run) closes that engine and starts the next ones at once. The waiting reader
    sees the exit and nothing else, and each new engine its own events from the first.
    (EngineProcess keeps the old pipe open until that reader has left; the race that guards
    against, a reused descriptor read by the old reader, did not show here without it.)"""
    import threading

    old = EngineProcess()
    seen: list[object] = []
    reader = threading.Thread(target=lambda: seen.extend(old.events()))
    reader.start()
    time.sleep(0.3)  # the reader waits on the old pipe
    old.close()
    engines = [EngineProcess() for _ in range(3)]  # pipes made while the reader leaves
    for engine in engines:
        engine.send(Load(str(tiny_moe_dir), "tiny"))
    reader.join(timeout=10)
    assert not reader.is_alive()
    assert len(seen) == 1 and isinstance(seen[0], EngineExited)
    for engine in engines:  # each gets its own events, from the first on
        first = engine.next_event(timeout=60)
        assert isinstance(first, Loading), first
        engine.close()
    assert old.next_event(timeout=1) is seen[0]  # closed: it says so again, at once
