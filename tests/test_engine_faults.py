"""Faults inside the engine: stopping a long prompt, callers that leave early, bad turns."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixtui.core.errors import UsageError
from mixtui.core.types import Sampling
from mixtui.engine.messages import Finished, Generate, Tokens
from mixtui.engine.session import Session

GREEDY = Sampling(temperature=0.0, max_tokens=6)


@pytest.fixture
def session(tiny_moe_dir: Path) -> Session:
    return Session.load(str(tiny_moe_dir), max_kv_size=None)


def cache_offset(session: Session) -> int:
    assert session._cache is not None
    return int(session._cache[0].offset)


def test_stop_during_a_long_prompt(session: Session) -> None:
    """A prompt of three prefill chunks stops after the first one, and nothing is kept."""
    words = " ".join(f"w{3 + i % 250}" for i in range(5000))
    checks = []

    def stop_after_first_chunk() -> bool:
        checks.append(1)
        return len(checks) >= 2  # the check before any chunk, then after chunk 1

    events = list(session.generate(Generate(1, (("user", words),), sampling=GREEDY),
                                   should_stop=stop_after_first_chunk))
    assert len(events) == 1 and isinstance(events[0], Finished)
    assert events[0].stats.finish_reason == "cancelled"
    assert events[0].stats.generation_tokens == 0
    assert session._cached_tokens == [] and session._cache is None
    assert session.capture is not None and session.capture.pending_steps == 0
    # The session is fine afterwards.
    again = list(session.generate(Generate(2, (("user", "w5 w6"),), sampling=GREEDY)))
    assert again[-1].stats.generation_tokens == 6


def test_stopped_prompt_reports_the_tokens_it_ran(session: Session) -> None:
    """A prompt stopped after its first prefill chunk reports that chunk, not the prompt."""
    words = " ".join(f"w{3 + i % 250}" for i in range(5000))
    checks = []

    def stop_after_first_chunk() -> bool:
        checks.append(1)
        return len(checks) >= 2

    events = list(session.generate(Generate(1, (("user", words),), sampling=GREEDY),
                                   should_stop=stop_after_first_chunk))
    stats = events[-1].stats  # type: ignore[union-attr]
    prompt = len(session.tokenizer.apply_chat_template([{"role": "user", "content": words}],
                                                       add_generation_prompt=True))
    assert prompt > 4096
    # mlx-lm prefills 2048 tokens a chunk; their keys and values went with the cache
    assert (stats.prompt_tokens, stats.cached_tokens, stats.generation_tokens) == (2048, 0, 0)
    assert stats.prompt_tps > 0 and stats.finish_reason == "cancelled"
    assert session._cache is None
    # stopped before the first chunk: nothing ran
    events = list(session.generate(Generate(2, (("user", words),), sampling=GREEDY),
                                   should_stop=lambda: True))
    assert events[-1].stats.prompt_tokens == 0  # type: ignore[union-attr]
    assert events[-1].stats.prompt_tps == 0.0  # type: ignore[union-attr]


def test_cache_matches_its_tokens_when_the_caller_leaves_early(session: Session) -> None:
    """Closing the event stream before Finished must not leave the cache out of step."""
    first = list(session.generate(Generate(1, (("user", "w5 w6 w7"),), sampling=GREEDY)))
    answer = first[-1].text
    stream = session.generate(Generate(2, (("user", "w5 w6 w7"), ("assistant", answer),
                                           ("user", "w9")), sampling=GREEDY))
    for event in stream:
        if isinstance(event, Tokens) and event.phase == "generate":
            break
    stream.close()
    if session._cache is not None:
        assert cache_offset(session) == len(session._cached_tokens)
    # A third turn gives what a fresh session gives for the same conversation.
    convo = (("user", "w5 w6 w7"), ("assistant", answer), ("user", "w9"),
             ("assistant", "w10"), ("user", "w11"))
    reused = list(session.generate(Generate(3, convo, sampling=GREEDY)))
    fresh = Session.load(str(session.path), max_kv_size=None)
    expected = list(fresh.generate(Generate(3, convo, sampling=GREEDY)))
    assert reused[-1].text == expected[-1].text
    assert cache_offset(session) == len(session._cached_tokens)


def test_system_prompt_needs_a_user_turn(session: Session) -> None:
    request = Generate(1, (("assistant", "w5"),), system="w7", sampling=GREEDY)
    with pytest.raises(UsageError, match="no user turn"):
        list(session.generate(request))


def test_turns_that_do_not_alternate_are_refused(session: Session) -> None:
    # The tiny model's template refuses a system role; with one it retries merged, and a
    # conversation it still refuses ends in one sentence, not an internal error.
    request = Generate(1, (("user", "w5"), ("system", "w6")), system="w7", sampling=GREEDY)
    with pytest.raises(UsageError, match="chat template refused"):
        list(session.generate(request))
