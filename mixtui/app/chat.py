"""The chat controller: one conversation with one engine process, as an explicit state machine.

It owns the engine process of the conversation, sends it `Generate`, `SetExpertsPerToken` and
`ResetConversation`, folds its events (`Loading`, `Ready`, `Tokens`, `Finished`, `Failed`,
`EngineExited`) into the `Conversation` and returns, per event, a `Change` the views react
to. It never words anything for the user and imports no Textual: the TUI and `mixtui
generate` are views on it. Calls come from one thread (the UI's, or the CLI's main one).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING

from mixtui.app.conversation import Conversation
from mixtui.core.types import ModelInfo, Sampling, Stats
from mixtui.engine.messages import (
    EngineExited,
    Event,
    Failed,
    Finished,
    Generate,
    Loading,
    Ready,
    ResetConversation,
    SetExpertsPerToken,
    Tokens,
)

if TYPE_CHECKING:
    import psutil

    from mixtui.engine.client import EngineProcess  # loads with the first engine
else:  # psutil loads when a figure is first read (core/lazy.py)
    from mixtui.core.lazy import psutil

LIVE_TPS_AFTER_S = 0.2  # a decode speed over a shorter time than this says nothing yet


class State(Enum):
    """Where the conversation's engine stands."""

    NO_ENGINE = "no engine"  # none was started yet
    LOADING = "loading"  # an engine is starting or loading the model; no Ready yet
    IDLE = "idle"  # ready for a prompt
    GENERATING = "generating"  # an answer is arriving
    STOPPING = "stopping"  # asked to stop: the answer ends after the current token
    NOT_LOADED = "not loaded"  # the model failed to load; that engine was ended
    EXITED = "exited"  # the engine process died (crash, kill, out of memory)


ANSWERING = (State.GENERATING, State.STOPPING)
ENGINELESS = (State.NO_ENGINE, State.NOT_LOADED, State.EXITED)  # a load may start


@dataclass(frozen=True)
class Change:
    """What one engine event changed, for the views (the event itself says what happened)."""

    event: Event
    state: State  # after the event
    tokens: Tokens | None = None  # tokens just logged in the conversation (a replay dropped)
    first_ready: bool = False  # the first Ready of this engine (a later one: k changed)
    send: str | None = None  # a prompt that waited for the load: ask it now
    restore: str | None = None  # text that goes back into the prompt input (nothing is lost)
    ended: str | None = None  # the answer ended, with this finish reason
    dropped: bool = False  # an unanswered question left the conversation: redraw from it
    text_replaced: bool = False  # the finished answer's text differs from what streamed
    load_failed: bool = False  # the model did not load; its engine is being ended


class ChatController:
    """A conversation, the engine process that continues it, and the state between them."""

    def __init__(self, model: str, system: str | None = None) -> None:
        self.conversation = Conversation(model, system=system)
        self.model = model
        self.state = State.NO_ENGINE
        self.engine: EngineProcess | None = None
        self.info: ModelInfo | None = None
        self.generation = 0  # which engine's events count: older ones are dropped
        self.request_id = 0
        self.last_finish_reason: str | None = None
        self.answer_text = ""  # the answer now arriving (or the last one)
        self.generated = 0  # its tokens so far
        self.live_tps: float | None = None  # its decode speed so far
        self.pending_prompt: str | None = None  # asked during the load; sent at Ready
        self._first_generated_at: float | None = None
        # The engine's KV cache does not hold the logged conversation (a new engine, a reset,
        # another k): the next request re-runs the history as prompt tokens. Those already
        # logged are dropped (matched by id), so the history is in the log once.
        self._cache_cold = False
        self._replay: list[int] | None = None  # ids of the log the running request re-runs
        self._dropped = 0  # prompt tokens of the running request dropped as replayed

    # -- reading -------------------------------------------------------------------------------
    @property
    def generating(self) -> bool:
        return self.state in ANSWERING

    @property
    def loading(self) -> bool:
        return self.state is State.LOADING

    @property
    def running(self) -> bool:
        """An engine is starting, loading or loaded (there is nothing to reload)."""
        return self.state not in ENGINELESS and (
            self.engine is None or self.engine.exited is None)

    def engine_memory(self) -> int:
        """Bytes the engine holds now (what ending it gives back); 0 without one."""
        engine = self.engine
        if engine is None or engine.pid is None or engine.exited is not None:
            return 0
        try:
            return int(psutil.Process(engine.pid).memory_info().rss)
        except (psutil.Error, OSError):  # gone already: nothing to give back
            return 0

    # -- the engine ----------------------------------------------------------------------------
    def begin_load(self, model: str, keep_conversation: bool = False,
                   system: str | None = None) -> tuple[int, EngineProcess | None]:
        """A new engine is coming for `model`: (its generation, the old engine to close)."""
        old, self.engine = self.engine, None
        self.model = model
        self.info = None
        self.pending_prompt = None
        self.state = State.LOADING
        self.generation += 1
        if keep_conversation:
            self._cache_cold = True
        else:
            self.new_conversation(system, reset=False)
        return self.generation, old

    def attach(self, engine: EngineProcess, generation: int) -> bool:
        """The started engine of `generation`; False when a newer load replaced it (the
        caller closes it)."""
        if generation != self.generation or self.state is not State.LOADING:
            return False
        self.engine = engine
        return True

    def release(self) -> EngineProcess | None:
        """Let the engine go for a while (the compare screen's runs need its memory): the
        caller ends the process returned (off the UI thread), whose events are dropped from
        now on; the conversation stays, and `begin_load(keep_conversation=True)` continues
        it. A prompt that waited for the load is forgotten (the caller gives it back)."""
        if self.generating:
            raise RuntimeError(f"release the engine while {self.state.value}")
        engine, self.engine = self.engine, None
        self.generation += 1  # a loading engine's late Ready or exit is stale now
        self.state = State.NO_ENGINE
        self.info = None
        self.pending_prompt = None
        self._cache_cold = True
        return engine

    def close(self, timeout: float = 1.0) -> None:
        """End the engine (quitting): within about `timeout`, whatever it is doing."""
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.close(timeout=timeout)

    # -- commands ------------------------------------------------------------------------------
    def wait_for_load(self, text: str) -> bool:
        """Keep a prompt asked during the load, to send at Ready; False if one waits already."""
        if self.pending_prompt is not None:
            return False
        self.pending_prompt = text
        return True

    def ask(self, text: str, sampling: Sampling, completion: bool = False,
            capture: bool = True) -> Generate:
        """Send the conversation with `text` as its next user turn (the state must be idle)."""
        if self.state is not State.IDLE or self.engine is None:
            raise RuntimeError(f"ask while {self.state.value}")
        if completion and self.conversation.turns and not text.startswith((" ", "\n")):
            text = " " + text.lstrip()  # a base model continues the text: words stay apart
        self.conversation.add_user(text)
        self.request_id += 1
        self.state = State.GENERATING
        self.last_finish_reason = None
        self.answer_text = ""
        self.generated = 0
        self.live_tps = None
        self._first_generated_at = None
        self._dropped = 0
        if self._cache_cold and len(self.conversation):
            self._replay = list(self.conversation.ids)
        self._cache_cold = False
        request = Generate(self.request_id, self.conversation.messages(),
                           system=self.conversation.system, sampling=sampling,
                           capture=capture, completion=completion)
        self.engine.send(request)
        return request

    def stop(self) -> bool:
        """Ask the answer to stop after the current token; False when none is arriving."""
        if not self.generating or self.engine is None:
            return False
        self.engine.cancel()
        self.state = State.STOPPING
        return True

    def set_experts_per_token(self, k: int | None) -> None:
        if self.engine is None or self.state is not State.IDLE:
            raise RuntimeError(f"experts per token while {self.state.value}")
        self.engine.send(SetExpertsPerToken(k))
        self._cache_cold = True  # the engine starts its KV cache afresh

    def new_conversation(self, system: str | None = None, reset: bool = True) -> None:
        """An empty conversation (the engine forgets its KV cache when `reset`)."""
        self.replace_conversation(Conversation(self.model, info=self.info, system=system),
                                  reset)

    def replace_conversation(self, conversation: Conversation, reset: bool = True) -> None:
        """Continue `conversation` instead (e.g. one loaded from a file)."""
        if self.generating:
            raise RuntimeError("replace the conversation while answering")
        self.conversation = conversation
        self._cache_cold = bool(len(conversation))
        if reset and self.engine is not None:
            self.engine.send(ResetConversation())

    # -- events --------------------------------------------------------------------------------
    def handle(self, event: Event, generation: int | None = None) -> Change | None:
        """Fold one engine event in; None when it is stale (another engine, another request).

        `generation`: the engine that sent it (default: the current one)."""
        if generation is not None and generation != self.generation:
            return None
        if isinstance(event, Loading):
            return Change(event, self.state)
        if isinstance(event, Ready):
            return self._ready(event)
        if isinstance(event, Tokens):
            return self._tokens(event)
        if isinstance(event, Finished):
            return self._finished(event)
        if isinstance(event, Failed):
            return self._failed(event)
        if isinstance(event, EngineExited):
            return self._exited(event)
        return None  # a benchmark's events: never sent to a chat's engine

    def _ready(self, event: Ready) -> Change:
        first = self.info is None
        self.info = event.info
        self.conversation.info = event.info
        send = None
        if self.state is State.LOADING:
            self.state = State.IDLE
            send, self.pending_prompt = self.pending_prompt, None
        return Change(event, self.state, first_ready=first, send=send)

    def _tokens(self, event: Tokens) -> Change | None:
        if event.request_id != self.request_id or not self.generating:
            return None
        event = self._without_replay(event)
        if not event.ids:
            return None
        self.conversation.add_tokens(event)
        if event.phase == "generate":
            now = time.perf_counter()
            if self._first_generated_at is None:
                self._first_generated_at = now
            self.generated += len(event.ids)
            self.answer_text += "".join(event.texts)
            elapsed = now - self._first_generated_at
            self.live_tps = ((self.generated - len(event.ids)) / elapsed
                             if elapsed > LIVE_TPS_AFTER_S else None)
        return Change(event, self.state, tokens=event)

    def _without_replay(self, event: Tokens) -> Tokens:
        """The event less the prompt tokens that re-run history the log already holds."""
        if event.phase != "prompt" or (self._replay is None and not self._dropped):
            return event
        n = 0
        replay = self._replay
        if replay is not None:
            while (n < len(event.ids) and self._dropped + n < len(replay)
                   and event.ids[n] == replay[self._dropped + n]):
                n += 1
            if n < len(event.ids):
                self._replay = None  # the rest is new
        start = event.start - self._dropped  # the log never saw the dropped ones
        self._dropped += n
        routing = event.routing.slice(n, len(event.ids)) if event.routing is not None else None
        return replace(event, start=start, ids=event.ids[n:], texts=event.texts[n:],
                       routing=routing)

    def _finished(self, event: Finished) -> Change | None:
        if event.request_id != self.request_id or not self.generating:
            return None
        self.state = State.IDLE
        self._end_request()
        self.last_finish_reason = event.stats.finish_reason
        replaced = event.text != self.answer_text
        self.answer_text = event.text
        self.conversation.finish(event)
        return Change(event, self.state, ended=event.stats.finish_reason,
                      text_replaced=replaced)

    def _failed(self, event: Failed) -> Change:
        if self.info is None and (self.state is State.LOADING or self.engine is not None):
            # The model did not load: end that engine, so that a reload or another model
            # can be tried; a prompt that waited goes back to the user.
            self.state = State.NOT_LOADED
            engine, self.engine = self.engine, None
            if engine is not None:  # its close waits for the process: not on the UI thread
                threading.Thread(target=engine.close, daemon=True).start()
            restore, self.pending_prompt = self.pending_prompt, None
            return Change(event, self.state, restore=restore, load_failed=True)
        if self.generating and event.request_id in (None, self.request_id):
            self.state = State.IDLE
            return self._cut_short(event, "failed")
        return Change(event, self.state)

    def _exited(self, event: EngineExited) -> Change | None:
        if self.state is State.NOT_LOADED and self.engine is None:
            return None  # the engine of a failed load, which _failed ended on purpose
        was_answering = self.generating
        self.state = State.EXITED
        self.info = None
        self.engine = None
        self._cache_cold = True
        if was_answering:
            change = self._cut_short(event, "engine exited")
            restore = change.restore
        else:
            change, restore = Change(event, self.state), None
        waiting, self.pending_prompt = self.pending_prompt, None
        return replace(change, restore=restore or waiting)

    def _cut_short(self, event: Event, reason: str) -> Change:
        """The answer ended without a Finished: what had arrived stays, cut short; a question
        that got nothing goes back to the user."""
        self._end_request()
        self.last_finish_reason = reason
        if not self.answer_text:
            turns = self.conversation.turns
            question = turns[-1][1] if turns and turns[-1][0] == "user" else None
            self.conversation.drop_unanswered()
            return Change(event, self.state, ended=reason, dropped=True,
                          restore=question.strip() if question is not None else None)
        self.conversation.finish(Finished(self.request_id, self.answer_text, Stats(
            prompt_tokens=0, cached_tokens=0, generation_tokens=self.generated, ttft_s=0.0,
            prompt_tps=0.0, generation_tps=0.0, peak_memory_bytes=0, kv_cache_bytes=0,
            finish_reason=reason)))
        return Change(event, self.state, ended=reason)

    def _end_request(self) -> None:
        self._replay = None
        self._dropped = 0
