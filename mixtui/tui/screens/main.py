"""The main screen: its layout, and the views of the chat controller's conversation and state.

The screen asks the loader policy (`app/loader.py`) what a model pick comes to, hands a load
to the app's engine bridge, folds the engine's messages in through the `ChatController` and
shows what each `Change` says. The widgets are pure views: after a load, a reload or a
failed request they are rebuilt from the conversation, the one source of truth; while an
answer streams they catch up ten times a second (`UI_TICK_S`), never once per token.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from textual import on
from textual.app import ComposeResult
from textual.containers import Container, Horizontal, Vertical, VerticalScroll
from textual.reactive import var
from textual.screen import Screen
from textual.widgets import Footer, Input

from mixtui.app.bench.machine import speed_note, speeds_here
from mixtui.app.catalog import describe
from mixtui.app.chat import ENGINELESS, Change, ChatController, State
from mixtui.app.conversation import Conversation
from mixtui.app.loader import OfferDownload, Refused, Start, Unavailable, decide, is_here
from mixtui.app.settings import prune_favourites
from mixtui.core.errors import MixtuiError, RegistryError
from mixtui.engine.messages import Tokens
from mixtui.planner import memory_budget, plan
from mixtui.registry.loader import load_registry
from mixtui.registry.local import local_state
from mixtui.registry.spec import ModelSpec
from mixtui.tui.download_screen import DownloadScreen
from mixtui.tui.messages import (
    EngineFailed,
    EngineFinished,
    EngineGone,
    EngineLoading,
    EngineMessage,
    EngineReady,
    TokensArrived,
)
from mixtui.tui.widgets.chat import ChatLog
from mixtui.tui.widgets.heatmap import RoutingHeatmap
from mixtui.tui.widgets.model_bar import BarEntry, ModelBar
from mixtui.tui.widgets.stats import StatsPanel
from mixtui.tui.widgets.timeline import RoutingTimeline
from mixtui.tui.widgets.token_strip import TokenStrip, top1_experts
from mixtui.tui.wording import say

if TYPE_CHECKING:
    import numpy as np
else:  # numpy loads when routing first needs it (core/lazy.py)
    from mixtui.core.lazy import np

if TYPE_CHECKING:
    from mixtui.engine.client import EngineProcess  # loads with the first engine
    from mixtui.tui.app import MixtuiApp

BAR_SLOTS = 5  # models on the number keys
UI_TICK_S = 0.1  # how often streaming tokens reach the widgets
NARROW = 130  # below this many columns routing and stats share one narrower column

M = TypeVar("M", bound=EngineMessage)


def _shielded(handler: Callable[[MainScreen, M], None]) -> Callable[[MainScreen, M], None]:
    """A bug while showing an engine event must not take the app (and the conversation)
    down: it is logged and said in the chat instead."""
    @functools.wraps(handler)
    def run(screen: MainScreen, message: M) -> None:
        try:
            handler(screen, message)
            screen.engine_state = screen.controller.state
        except Exception as exc:
            event = getattr(message, "event", None)
            name = type(event).__name__ if event is not None else "Tokens"
            screen.log.error(f"handling {name}: {exc!r}")
            screen.notice(f"internal error while showing {name}: {exc!r}; please report it "
                          "(the conversation is kept).")
    return run


class MainScreen(Screen[None]):
    """Model bar, chat, routing over time, token strip, routing heatmaps and speed/memory
    figures."""

    app: MixtuiApp
    # The controller's state as the views last saw it (set after every change of it).
    engine_state: var[State] = var(State.NO_ENGINE, init=False, always_update=True)

    def __init__(self, chat: ChatController) -> None:
        super().__init__()
        self.controller = chat
        self.spec: ModelSpec | None = None
        self.entries: list[ModelSpec] = []  # the bar's models, in key order
        self.writing = False  # a conversation or trace file is being written
        self._pending_switch: str | None = None
        self._registry_error: str | None = None
        self._merge_noted = False
        self._answer: int | None = None  # the streaming answer's block in the chat
        self._answer_shown = 0  # characters of it on screen
        self._turn: int | None = None  # the answer whose expert shares show (None: none yet)
        # Tokens are logged in the conversation as they arrive; the widgets catch up at ticks.
        self._dirty = False
        self._strip_buffer: list[tuple[list[str], list[str], np.ndarray | None]] = []
        self._last_token: tuple[np.ndarray, np.ndarray, np.ndarray, str, int] | None = None
        # Whether the routing-over-time panel shows, per layout: wide, beside the strip (on
        # at first); narrow, in place of the strip (off at first: the strip stays).
        self._over_time = {"wide": True, "narrow": False}

    # -- layout ------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield ModelBar(id="model-bar")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield ChatLog(id="chat")
                yield RoutingTimeline(id="timeline")
                yield TokenStrip(id="strip")
            with Container(id="side"):  # wide: two columns; narrow: one, scrolling
                with VerticalScroll(id="routing"):
                    yield RoutingHeatmap(id="heatmap")
                yield StatsPanel(id="stats", masked=self.app.mask_live_figures,
                                 system_interval=None if self.app.mask_live_figures else 1.0)
        yield Input(placeholder="Type a prompt and press Enter · Esc then ? for help",
                    id="prompt")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#chat").border_title = "chat"
        self.query_one("#strip").border_title = "tokens"
        self.query_one("#timeline").border_title = "routing over time"
        self.query_one("#routing").border_title = "routing"
        self.query_one("#stats").border_title = "speed · memory"
        self.query_one(TokenStrip).colouring = self.app.settings.expert_colouring
        self.query_one(Input).focus()
        # One cursor and one layer for the strip and the timeline: each follows the other
        # (a reactive set to the value it has calls no watcher, so this never loops).
        strip, timeline = self.query_one(TokenStrip), self.query_one(RoutingTimeline)
        self.watch(strip, "cursor", lambda value: setattr(timeline, "cursor", value),
                   init=False)
        self.watch(timeline, "cursor", lambda value: setattr(strip, "cursor", value),
                   init=False)
        self.watch(strip, "layer_index", lambda value: setattr(timeline, "layer_index", value),
                   init=False)
        self.watch(timeline, "layer_index", lambda value: setattr(strip, "layer_index", value),
                   init=False)
        self.apply_width(self.app.size.width)
        if self.app.startup_warning:
            self.notice(self.app.startup_warning)
        self.set_interval(UI_TICK_S, self.flush)

    def apply_width(self, width: int) -> None:
        self.set_class(width < NARROW, "narrow")
        self._show_over_time()

    def toggle_over_time(self) -> None:
        """Key o: show the routing-over-time panel and focus it (so that its keys act); when
        it is focused, hide it. Wide it sits above the token strip, narrow in its place."""
        layout = "narrow" if self.has_class("narrow") else "wide"
        timeline = self.query_one(RoutingTimeline)
        if self._over_time[layout] and self.focused is not timeline:
            timeline.focus()  # shown already: o reaches it
            return
        self._over_time[layout] = not self._over_time[layout]
        self._show_over_time()
        if self._over_time[layout]:
            timeline.focus()

    def focus_tokens(self) -> None:
        """Key t: the token strip, or the timeline where it stands in the strip's place."""
        if self.has_class("narrow") and self.over_time_shown:
            self.query_one(RoutingTimeline).focus()
        else:
            self.query_one(TokenStrip).focus()

    @property
    def over_time_shown(self) -> bool:
        return self._over_time["narrow" if self.has_class("narrow") else "wide"]

    def _show_over_time(self) -> None:
        # app.tcss: hidden in the wide layout, or in place of the strip in the narrow one
        shown = self.over_time_shown
        self.set_class(not shown, "timeline-off")
        self.set_class(shown, "timeline-on")
        # a panel that goes (by key o, or a resize into the other layout) takes no keys
        focused = self.focused  # None before the widgets are mounted, too
        if isinstance(focused, RoutingTimeline) and not shown or \
                isinstance(focused, TokenStrip) and shown and self.has_class("narrow"):
            self.set_focus(None)

    @property
    def chat(self) -> ChatLog:
        return self.query_one("#chat", ChatLog)

    def notice(self, text: str) -> None:
        self.chat.add("notice", text)

    def status(self, text: str) -> None:
        self.query_one(ModelBar).set_active(self.spec.key if self.spec else None, text)

    # -- the model bar -----------------------------------------------------------------------
    def start(self, name: str, from_settings: bool) -> None:
        """The registry scan and the first engine (after the first frame is on screen)."""
        self.refresh_bar()
        if from_settings and not is_here(name, self.registry()):
            # the last session's model is gone from disk: open nano rather than a download
            self.notice(f"{name}, the model of the last session, is not on disk any more; "
                        "opened nano instead (pick it on the model bar to download it again).")
            name = "nano"
        self.load_model(name)

    def registry(self) -> dict[str, ModelSpec]:
        """The models: the user's models.toml over the built-in one. A broken user file is
        reported once and set aside (the built-in models still work) until it is fixed."""
        try:
            registry = load_registry()
        except RegistryError as exc:
            text = f"{say(exc)[:-1]}; until then mixtui uses its built-in models."
            if text != self._registry_error:
                self._registry_error = text
                self.notice(text)
            return load_registry(include_user=False)
        self._registry_error = None
        return registry

    def refresh_bar(self) -> None:
        try:
            registry = self.registry()
            budget = memory_budget()
        except MixtuiError as exc:
            self.notice(say(exc))
            return
        settings = self.app.settings
        if self._registry_error is None:  # a broken models.toml must not unpin its models
            dropped = prune_favourites(settings, registry)
            if dropped:
                self.notice(dropped)
                self.app.save_settings()
        self.entries = self.keyed(registry)
        speeds = speeds_here()  # read once for the five entries
        entries = []
        for n, spec in enumerate(self.entries, start=1):
            state = {"bundled": "bundled", "complete": "downloaded", "partial": "partial"}.get(
                local_state(spec), "not downloaded")
            fit = plan(spec, context=self.app.settings.max_kv_size, budget=budget,
                       registry=registry)
            if fit.verdict == "does-not-fit":
                state = "does not fit"
            elif fit.verdict == "tight" and state not in ("not downloaded", "partial"):
                state = "tight"
            on_disk = local_state(spec) in ("bundled", "complete")
            # a model not here: what a synthetic run of it measured on this machine, if any
            speed = "" if on_disk else speed_note(spec.key, synthetic_only=True,
                                                   speeds=speeds)
            reason = say(fit, force=self.app.force)
            entries.append(BarEntry(n, spec.key, spec.name, state,
                                    f"{fit.weight_bytes / 1e9:.1f} GB",
                                    reason + (f" Decode: {speed} (mixtui bench)." if speed
                                              else ""),
                                    pinned=spec.key in settings.favourites, speed=speed))
        self.query_one(ModelBar).set_entries(entries)

    def keyed(self, registry: dict[str, ModelSpec]) -> list[ModelSpec]:
        """The models on the number keys: the pinned ones in order, then the registry's
        first ones, BAR_SLOTS in all."""
        pins = [registry[key] for key in self.app.settings.favourites if key in registry]
        rest = [spec for spec in registry.values() if spec not in pins]
        return (pins + rest)[:BAR_SLOTS]

    def catalogue(self) -> list[dict[str, Any]]:
        """Every registry model's catalogue row, for the picker (a few ms: no thread)."""
        registry = self.registry()
        budget = memory_budget()
        speeds = speeds_here()
        return [describe(spec, budget, registry, speeds) for spec in registry.values()]

    # -- loading -----------------------------------------------------------------------------
    def load_model(self, name: str, keep_conversation: bool = False,
                   offer_download: bool = True) -> None:
        """End the current engine (its memory goes back), then start `name` in a new one."""
        chat = self.controller
        outcome = decide(name, context=self.app.settings.max_kv_size, force=self.app.force,
                         registry=self.registry(), offer_download=offer_download,
                         held_bytes=chat.engine_memory(),
                         without_routing=self.app.without_routing)
        if isinstance(outcome, OfferDownload):
            self._offer_download(outcome.spec, keep_conversation)
            return
        if isinstance(outcome, Unavailable | Refused):
            self.notice(say(outcome, force=self.app.force))
            if self.spec is None:
                self.status(f"{name}: " + ("does not fit" if isinstance(outcome, Refused)
                                           else "not available"))
            return
        assert isinstance(outcome, Start)
        if not keep_conversation and any(b.kind != "notice" for b in self.chat.blocks):
            self.chat.clear()  # the chat shows only the new conversation
            self._answer = None
        if outcome.warn:  # tight, or forced: say so once, then load
            self.notice(say(outcome))
        self.spec = outcome.spec
        generation, old = chat.begin_load(outcome.spec.key, keep_conversation,
                                          system=self.app.settings.system_prompt or None)
        self.engine_state = chat.state
        if not keep_conversation:
            self.rebuild_views()
        self.status("starting the engine…")
        settings = self.app.settings
        self.app.start_engine(old, outcome.load(settings.max_kv_size,
                                                settings.experts_per_token.get(outcome.spec.key)),
                              generation)

    def _offer_download(self, spec: ModelSpec, keep_conversation: bool) -> None:
        """The download screen; when every file is here, the model loads."""
        def done(ok: bool | None) -> None:
            self.refresh_bar()  # on disk, or partly
            if ok:
                self.load_model(spec.key, keep_conversation, offer_download=False)

        self.app.push_screen(DownloadScreen(spec), done)

    def watch_engine_state(self, state: State) -> None:
        # No engine process, or not yet the new one (a loading engine has one: its pid came
        # with engine_started, and its memory is what the panel should show).
        if state in ENGINELESS or self.controller.engine is None:
            self.query_one(StatsPanel).set_engine_pid(None)

    def engine_started(self, pid: int | None) -> None:
        self.query_one(StatsPanel).set_engine_pid(pid)

    def switch_model(self, key: str) -> None:
        chat = self.controller
        same = self.spec is not None and key == self.spec.key
        if same and chat.running:
            assert self.spec is not None
            self.notice(f"{self.spec.name} is already the active model.")
            return
        if same:  # its engine is gone: start it again, keeping the conversation
            self.reload()
            return
        if chat.generating:
            self._pending_switch = key  # once the answer has stopped
            self.stop_answer()
            self.notice(f"Stopping the answer, then switching to {key}.")
            return
        self.load_model(key)
        if self.spec is not None and self.spec.key == key:
            self.notice(f"Switching to {self.spec.name}: a new conversation.")

    def stop_answer(self) -> None:
        """Stop the answer within a token; what came stays."""
        self.controller.stop()
        self.engine_state = self.controller.state

    def reload(self) -> None:
        if self.controller.running:
            self.notice("The engine is running; nothing to reload.")
            return
        self.load_model(self.controller.model, keep_conversation=True)

    def suspend_engine(self) -> tuple[EngineProcess | None, bool]:
        """Stop the chat's engine for a compare run, which needs its memory: (the process,
        for the caller to end off the UI thread; whether one was running or loading, so that
        `resume_engine` should start it again). The conversation and the chat stay."""
        chat = self.controller
        was_running = chat.running
        waiting = chat.pending_prompt
        engine = chat.release()
        self.engine_state = chat.state
        prompt = self.query_one("#prompt", Input)
        if waiting is not None and not prompt.value:
            prompt.value = waiting  # nothing the user typed is lost
        if was_running:
            self.status("stopped for the compare run · it starts again after it")
        return engine, was_running

    def resume_engine(self) -> None:
        """After a compare run: the chat's model in a new engine, the conversation kept."""
        self.notice(f"The compare run is over; {self.controller.model} starts again, the "
                    "conversation is kept.")
        self.load_model(self.controller.model, keep_conversation=True)

    # -- engine messages ---------------------------------------------------------------------
    @on(EngineLoading)
    @_shielded
    def _loading(self, message: EngineLoading) -> None:
        if self.controller.handle(message.event, message.generation) is not None:
            event = message.event
            self.status(f"{event.stage} {event.done}/{event.total}")

    @on(EngineReady)
    @_shielded
    def _ready(self, message: EngineReady) -> None:
        change = self.controller.handle(message.event, message.generation)
        if change is None:
            return
        info = message.event.info
        experts = (f"{info.num_experts} experts, {info.top_k} per token, "
                   f"{len(info.moe_layers)} MoE layers" if info.is_moe else "dense")
        self.status(f"ready · {experts}")
        shown = info if self.spec is None else replace(info, name=self.spec.name)
        self.query_one(StatsPanel).set_model(shown)
        self.rebuild_views()
        settings = self.app.settings
        if change.first_ready and self.spec is not None and settings.last_model != self.spec.key:
            settings.last_model = self.spec.key
            self.app.save_settings()
        if change.send is not None:
            self.send(change.send)

    @on(TokensArrived)
    @_shielded
    def _tokens(self, message: TokensArrived) -> None:
        self._drain()

    def _drain(self) -> None:
        """Fold in every Tokens event waiting in the inbox (before a Finished, and so on)."""
        for generation, event in self.app.token_inbox.take():
            change = self.controller.handle(event, generation)
            if change is not None and change.tokens is not None:
                self._take(change.tokens)

    @on(EngineFinished)
    @_shielded
    def _finished(self, message: EngineFinished) -> None:
        self._drain()  # tokens still waiting come first
        change = self.controller.handle(message.event, message.generation)
        if change is None:
            return
        self.flush()
        event = message.event
        text = self.controller.answer_text
        if self._answer is not None and change.text_replaced:
            self.chat.set_text(self._answer, text)
            self._answer_shown = len(text)
        if event.stats.system_merged and not self._merge_noted:
            self._merge_noted = True  # said once a session
            self.notice("This model's chat template has no system role, so the system prompt "
                        "goes before your message in the first user turn.")
        if event.stats.finish_reason == "cancelled":
            self.notice("Stopped; the partial answer is kept.")
        elif event.stats.finish_reason == "context":
            self.notice(f"The answer stopped where the context of "
                        f"{self.app.settings.max_kv_size} tokens is full; clear the "
                        "conversation (ctrl+p) or raise the context size (max_kv_size in "
                        "settings.json) to go on.")
        self.query_one(StatsPanel).set_finished(event.stats)
        self._after_answer()

    @on(EngineFailed)
    @_shielded
    def _failed(self, message: EngineFailed) -> None:
        change = self._ended(message)
        if change is not None and change.load_failed:
            self.status("not loaded · r retries, 1-5 pick a model")

    @on(EngineGone)
    @_shielded
    def _gone(self, message: EngineGone) -> None:
        if self._ended(message) is not None:
            self.status(f"engine exited (code {message.event.code}) · r reloads")

    def _ended(self, message: EngineFailed | EngineGone) -> Change | None:
        """A failure or the engine's exit: what came stays, the user is told why."""
        self._drain()
        change = self.controller.handle(message.event, message.generation)
        if change is None:
            return None
        self.flush()
        self._show_ended(change)
        self.notice(say(message.event))
        self._after_answer()
        return change

    def _show_ended(self, change: Change) -> None:
        """An answer cut short, or a load that failed: the chat and input follow."""
        if change.dropped:  # nothing came: the question leaves the chat
            if self._answer is not None:
                self.chat.remove_block(self._answer)
                self._answer = None
            blocks = self.chat.blocks
            if blocks and blocks[-1].kind == "user":
                self.chat.remove_block(len(blocks) - 1)
            self.rebuild_views()
        prompt = self.query_one("#prompt", Input)
        if change.restore is not None and not prompt.value:
            prompt.value = change.restore  # nothing the user typed is lost

    def _after_answer(self) -> None:
        """A switch asked for during the answer happens once it has ended, however it ended."""
        if self._pending_switch is not None and not self.controller.generating:
            key, self._pending_switch = self._pending_switch, None
            self.load_model(key)

    # -- chat --------------------------------------------------------------------------------
    @on(Input.Submitted, "#prompt")
    def _submit(self, event: Input.Submitted) -> None:
        text = event.value
        chat = self.controller
        if not text.strip():
            return
        if chat.generating:
            self.notice("Still answering; press Esc to stop it first.")
            return
        if self.writing:
            self.notice("A file is still being written; send again in a moment.")
            return
        if chat.loading:  # still loading: send it when ready
            if not chat.wait_for_load(text):
                self.notice("The model is still loading and your first prompt is waiting; "
                            "send this one after it.")
                return
            event.input.value = ""
            self.notice("The model is still loading; your prompt goes out when it is ready.")
            return
        if chat.state is not State.IDLE:
            self.notice("No model is running; press r to start it again, or pick one (1-5).")
            return
        event.input.value = ""
        self.send(text)

    def send(self, text: str) -> None:
        chat = self.controller
        self._turn = len(chat.conversation.stats)  # the answer about to arrive
        request = chat.ask(text, self.app.settings.sampling,
                           completion=self.spec is not None and self.spec.kind == "base")
        self.engine_state = chat.state
        self.chat.add("user", request.messages[-1][1].strip())
        self._answer = self.chat.add("answer")
        self._answer_shown = 0
        self.query_one(TokenStrip).cursor = None

    def _take(self, event: Tokens) -> None:
        """Logged tokens: the widgets catch up at the next tick (`flush`)."""
        r = event.routing
        top1 = None
        if r is not None and self._routed():
            top1 = top1_experts(r.experts, r.weights)
            self._last_token = (r.experts[-1], r.weights[-1], r.probs[-1], event.texts[-1],
                                len(self.controller.conversation) - 1)
        self._strip_buffer.append((list(event.texts), [event.phase] * len(event.ids), top1))
        self._dirty = True

    def _routed(self) -> bool:
        info = self.controller.info or self.controller.conversation.info
        return info is not None and info.is_moe

    def _shares(self) -> tuple[np.ndarray, np.ndarray]:
        """Expert counts (layers, experts) of the answer in view and of the conversation."""
        conversation = self.controller.conversation
        whole = conversation.counts()
        turn = (conversation.counts(request=self._turn) if self._turn is not None
                else np.zeros_like(whole))
        return turn, whole

    def flush(self) -> None:
        """Bring the widgets up to date with what arrived since the last tick (~10 Hz)."""
        if not self._dirty:
            return
        self._dirty = False
        chat = self.controller
        strip = self.query_one(TokenStrip)
        timeline = self.query_one(RoutingTimeline)
        for texts, phases, top1 in self._strip_buffer:  # one batch per engine event
            strip.append(texts, phases, top1)
            timeline.append(texts, phases, top1)
        self._strip_buffer.clear()
        text = chat.answer_text
        if self._answer is not None and len(text) > self._answer_shown:
            self.chat.append(text[self._answer_shown:], self._answer)
            self._answer_shown = len(text)
        info = chat.info
        if info is not None and info.is_moe and len(chat.conversation):
            heatmap = self.query_one(RoutingHeatmap)
            if strip.cursor is None and self._last_token is not None:
                heatmap.show_token(info.moe_layers, *self._last_token)
            heatmap.show_shares(info.moe_layers, *self._shares())
        if chat.generating and chat.generated:
            self.query_one(StatsPanel).set_live(chat.generated, chat.live_tps)

    @on(TokenStrip.CursorMoved)
    def _show_cursor_token(self, message: TokenStrip.CursorMoved) -> None:
        conversation = self.controller.conversation
        info = self.controller.info or conversation.info
        index = message.index
        if info is None or not info.is_moe or index is None \
                or not 0 <= index < len(conversation):
            return
        token = conversation.token(index)
        if token.routing is not None:
            self.query_one(RoutingHeatmap).show_token(info.moe_layers, *token.routing,
                                                      token.text, index)

    @on(ModelBar.Selected)
    def _bar_clicked(self, message: ModelBar.Selected) -> None:
        self.switch_model(message.key)

    # -- the views of the conversation -------------------------------------------------------
    def show_conversation(self, conversation: Conversation | None = None) -> None:
        """Show `conversation` (continued from now on), or the controller's, from scratch."""
        if conversation is not None:
            self.controller.replace_conversation(conversation)
        self.chat.clear()
        for role, content in self.controller.conversation.turns:
            self.chat.add("user" if role == "user" else "answer", content.strip())
        self._answer = None
        self.rebuild_views()

    def rebuild_views(self) -> None:
        """Token strip and heatmaps from the conversation, the one source of truth."""
        self._strip_buffer.clear()
        self._last_token = None
        self._turn = None
        conversation = self.controller.conversation
        strip = self.query_one(TokenStrip)
        timeline = self.query_one(RoutingTimeline)
        heatmap = self.query_one(RoutingHeatmap)
        strip.clear()
        timeline.clear()
        info = self.controller.info or conversation.info
        texts, phases = list(conversation.texts), list(conversation.phases)
        if info is None:  # no model yet (loading, or it failed): nothing of another's stays
            strip.append(texts, phases, None)
            timeline.show_message("Send a prompt: each token's top-1 experts appear here.")
            timeline.append(texts, phases, None)
            heatmap.show_message("Send a prompt: each token's experts appear here.")
            return
        if not info.is_moe:
            strip.show_dense()
            name = self.spec.name if self.spec is not None else info.name
            timeline.show_dense(name)
            timeline.append(texts, phases, None)
            heatmap.show_dense(name)
            return
        strip.set_layers(info.moe_layers, num_experts=info.num_experts)
        timeline.set_layers(info.moe_layers, num_experts=info.num_experts)
        heatmap.set_geometry(info.num_layers, info.shared_experts)
        routing = conversation.routing()
        top1 = (top1_experts(routing.experts, routing.weights) if routing is not None
                else None)
        strip.append(texts, phases, top1)
        timeline.append(texts, phases, top1)
        n = len(conversation)
        last = conversation.token(-1) if n else None
        if last is not None and last.routing is not None:
            heatmap.show_token(info.moe_layers, *last.routing, last.text, n - 1)
            turn, whole = self._shares()
            heatmap.show_shares(info.moe_layers, turn, whole)
        else:
            heatmap.show_message("Send a prompt: each token's experts appear here.")

    def clear_conversation(self) -> None:
        if self.controller.generating:
            self.notice("Still answering; press Esc to stop it first.")
            return
        self.controller.new_conversation(self.app.settings.system_prompt or None)
        self.show_conversation()
        self.notice("A new conversation.")
