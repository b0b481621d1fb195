"""The mixtui app: chat with a model while its expert routing, speed and memory are shown live.

The UI process never imports MLX: an `EngineProcess` owns the model, and its events reach
the app through a thread worker as `EngineEvent` messages (at most about 20 per second: the
engine batches tokens). Switching models ends that process, which gives all its memory back.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import numpy as np
from rich.text import Text
from textual import events, on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Container, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Input, Static

from mixtui.conversation import Conversation
from mixtui.engine.client import EngineProcess
from mixtui.engine.messages import (
    EngineExited,
    Failed,
    Finished,
    Generate,
    Load,
    Loading,
    ModelInfo,
    Ready,
    ResetConversation,
    Sampling,
    SetExpertsPerToken,
    Stats,
    Tokens,
)
from mixtui.errors import MixtuiError
from mixtui.paths import log_dir
from mixtui.registry import ModelSpec, require_local, resolve
from mixtui.settings import Settings, load_settings, parse_sampling, save_settings
from mixtui.tui.messages import EngineEvent
from mixtui.tui.screens import AskScreen, HelpScreen, SamplingScreen
from mixtui.tui.widgets.heatmap import RoutingHeatmap
from mixtui.tui.widgets.model_bar import BarEntry, ModelBar
from mixtui.tui.widgets.stats import StatsPanel
from mixtui.tui.widgets.token_strip import TokenStrip, top1_experts

BAR_SLOTS = 5  # models on the number keys
NARROW = 130  # below this many columns routing and stats share one narrower column


def _default_path(kind: str, model: str, suffix: str) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return str(Path.home() / f"mixtui-{kind}-{model.replace('/', '_')}-{stamp}{suffix}")


class MixtuiApp(App[int]):
    """Model bar, chat, token strip, routing heatmaps and speed/memory figures."""

    CSS_PATH = "app.tcss"
    TITLE = "mixtui"
    BINDINGS = [
        Binding("escape", "stop", "Stop / leave input", priority=True),
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("question_mark", "help", "Help"),
        Binding("i", "focus_input", "Input", show=False),
        Binding("enter", "focus_input", "Input", show=False),
        *(Binding(str(n), f"switch({n})", f"model {n}", show=False)
          for n in range(1, BAR_SLOTS + 1)),
        Binding("left_square_bracket", "layer(-1)", "Layer −"),
        Binding("right_square_bracket", "layer(1)", "Layer +"),
        Binding("t", "focus_strip", "Tokens", show=False),
        Binding("e", "toggle_colouring", "Colours"),
        Binding("r", "reload", "Reload engine", show=False),
    ]

    def __init__(self, model: str | None = None, sampling: Sampling | None = None,
                 settings: Settings | None = None, persist: bool = True,
                 mask_live_figures: bool = False) -> None:
        """`persist`: read and write settings.json (tests pass their own `settings`);
        `mask_live_figures`: hide timing- and machine-dependent figures (snapshot tests)."""
        super().__init__()
        self.persist = persist
        self.mask_live_figures = mask_live_figures
        warning = None
        if settings is None:
            settings, warning = load_settings() if persist else (Settings(), None)
        self.settings = settings
        if sampling is not None:
            self.settings.sampling = sampling
        self._startup_warning = warning
        self.model_name = model or self.settings.last_model or "nano"
        self.spec: ModelSpec | None = None
        self.engine: EngineProcess | None = None
        self.engine_generation = 0
        self.info: ModelInfo | None = None
        self.conversation = Conversation(self.model_name)
        self.generating = False
        self.request_id = 0
        self.last_finish_reason: str | None = None
        self._answer: Static | None = None
        self._answer_text = ""
        self._pending_switch: str | None = None
        self._entries: list[ModelSpec] = []
        self._turn_counts: np.ndarray | None = None  # (moe_layers, E) this answer
        self._conv_counts: np.ndarray | None = None  # (moe_layers, E) this conversation
        self._first_generated_at: float | None = None
        self._generated = 0
        self._request_base = 0  # conversation token index where the current request starts

    # -- layout ------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield ModelBar(id="model-bar")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield VerticalScroll(id="chat")
                yield TokenStrip(id="strip")
            with Container(id="side"):  # wide: two columns; narrow: one, scrolling
                with VerticalScroll(id="routing"):
                    yield RoutingHeatmap(id="heatmap")
                yield StatsPanel(id="stats", masked=self.mask_live_figures,
                                 system_interval=None if self.mask_live_figures else 1.0)
        yield Input(placeholder="Type a prompt and press Enter · Esc then ? for help",
                    id="prompt")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#chat").border_title = "chat"
        self.query_one("#strip").border_title = "tokens"
        self.query_one("#routing").border_title = "routing"
        self.query_one("#stats").border_title = "speed · memory"
        self.query_one(TokenStrip).colouring = self.settings.expert_colouring
        self.query_one(Input).focus()
        self._apply_width(self.size.width)
        if self._startup_warning:
            self.notice(self._startup_warning)
        report = os.environ.get("MIXTUI_FIRST_FRAME_FILE")  # benchmarks/startup.py
        if report:
            self.call_after_refresh(self._report_first_frame, report)
        # The registry scan and the engine start come after the first frame is on screen.
        self.call_after_refresh(self._start)

    def _report_first_frame(self, path: str) -> None:
        Path(path).write_text(f"{time.time():.6f}\n")
        if os.environ.get("MIXTUI_EXIT_AFTER_FIRST_FRAME"):
            self._measuring_only = True
            self.exit(0)

    _measuring_only = False

    def _start(self) -> None:
        if self._measuring_only:
            return
        self._refresh_bar()
        self.load_model(self.model_name)

    def on_resize(self, event: events.Resize) -> None:
        self._apply_width(event.size.width)

    def _apply_width(self, width: int) -> None:
        self.screen.set_class(width < NARROW, "narrow")

    # -- the model bar -----------------------------------------------------------------------
    def _refresh_bar(self) -> None:
        from mixtui.planner import plan
        from mixtui.registry import load_registry, local_state

        try:
            registry = load_registry()
        except MixtuiError as exc:
            self.notice(str(exc))
            return
        self._entries = list(registry.values())[:BAR_SLOTS]
        entries = []
        for n, spec in enumerate(self._entries, start=1):
            state = {"bundled": "bundled", "complete": "downloaded"}.get(local_state(spec),
                                                                         "not downloaded")
            if plan(spec, context=self.settings.max_kv_size).verdict == "does-not-fit":
                state = "does not fit"
            entries.append(BarEntry(n, spec.key, spec.name, state,
                                    f"{spec.weight_bytes() / 1e9:.1f} GB"))
        self.query_one(ModelBar).set_entries(entries)

    def _status(self, text: str) -> None:
        key = self.spec.key if self.spec else None
        self.query_one(ModelBar).set_active(key, text)

    # -- engine ------------------------------------------------------------------------------
    def load_model(self, name: str, keep_conversation: bool = False) -> None:
        """End the current engine (its memory goes back) and start `name` in a new one."""
        from mixtui.planner import plan

        try:
            spec = resolve(name)
            where = require_local(spec)
        except MixtuiError as exc:
            self.notice(str(exc))
            if self.spec is None:
                self._status(f"{name}: not available")
            return
        fit = plan(spec, context=self.settings.max_kv_size)
        if fit.verdict == "does-not-fit":
            self.notice(
                f"{spec.name} needs {fit.need_bytes / 1e9:.1f} GB (weights "
                f"{fit.weight_bytes / 1e9:.1f} GB + KV cache {fit.kv_bytes / 1e9:.1f} GB at "
                f"{self.settings.max_kv_size} tokens + margin) but this machine has "
                f"{fit.budget.bytes / 1e9:.1f} GB ({fit.budget.source}); pick a smaller model.")
            return
        self._close_engine()
        self.spec = spec
        self.model_name = spec.key
        self.info = None
        if not keep_conversation:
            self._new_conversation()
        self.engine_generation += 1
        self.engine = EngineProcess(log_path=log_dir() / "engine.log")
        self.engine.send(Load(str(where), spec.key, self.settings.max_kv_size,
                              self.settings.experts_per_token.get(spec.key)))
        self._status("starting the engine…")
        self.query_one(StatsPanel).set_engine_pid(self.engine.pid)
        self._pump_events(self.engine, self.engine_generation)
        if self.settings.last_model != spec.key:
            self.settings.last_model = spec.key
            self._save_settings()

    def _close_engine(self) -> None:
        engine, self.engine = self.engine, None
        self.generating = False
        if engine is not None:  # off the UI thread: a busy engine may take a moment
            threading.Thread(target=engine.close, name="mixtui-close-engine",
                             daemon=True).start()

    @work(thread=True, group="engine", exit_on_error=False,
          description="forward engine events to the UI")
    def _pump_events(self, engine: EngineProcess, generation: int) -> None:
        for event in engine.events():
            self.post_message(EngineEvent(event, generation))

    @on(EngineEvent)
    def _on_engine_event(self, message: EngineEvent) -> None:
        if message.generation != self.engine_generation:
            return  # from an engine that was replaced
        event = message.event
        if isinstance(event, Loading):
            self._status(f"{event.stage} {event.done}/{event.total}")
        elif isinstance(event, Ready):
            self._show_ready(event.info)
        elif isinstance(event, Tokens):
            self._show_tokens(event)
        elif isinstance(event, Finished):
            self._show_finished(event)
        elif isinstance(event, Failed):
            self._show_failed(event)
        elif isinstance(event, EngineExited):
            self._show_exited(event)

    def _show_ready(self, info: ModelInfo) -> None:
        first = self.info is None
        self.info = info
        self.conversation.info = info
        experts = (f"{info.num_experts} experts, {info.top_k} per token, "
                   f"{len(info.moe_layers)} MoE layers" if info.is_moe else "dense")
        self._status(f"ready · {experts}")
        self.query_one(StatsPanel).set_model(info)
        strip = self.query_one(TokenStrip)
        heatmap = self.query_one(RoutingHeatmap)
        if info.is_moe:
            strip.set_layers(info.moe_layers, num_experts=info.num_experts)
            shape = (len(info.moe_layers), info.num_experts)
            if self._conv_counts is None or self._conv_counts.shape != shape:
                self._conv_counts = np.zeros(shape)
                self._turn_counts = np.zeros(shape)
            if first and not len(self.conversation):
                heatmap.show_message("Send a prompt: each token's experts appear here.")
        else:
            strip.show_dense()
            heatmap.show_dense(info.name)
        if first and self._pending_prompt is not None:
            text, self._pending_prompt = self._pending_prompt, None
            self._send(text)

    _pending_prompt: str | None = None

    def _show_failed(self, event: Failed) -> None:
        if self.generating and event.request_id == self.request_id:
            self.generating = False
            self.conversation.drop_unanswered()  # keep the turns alternating
            if self._answer is not None and not self._answer_text:
                self._answer.remove()
                self._answer = None
        self.notice(event.reason)
        if self.info is None and self.spec is not None:
            self._status("failed to load")

    def _show_exited(self, event: EngineExited) -> None:
        if self.generating:
            self._keep_partial_answer()
        self.generating = False
        self.info = None
        self.engine = None
        self.query_one(StatsPanel).set_engine_pid(None)
        self.notice(f"{event.description}. Press r (or 'Reload engine' in ctrl+p) to start "
                    "it again; the conversation is kept.")
        self._status(f"engine exited (code {event.code}) · r reloads")

    def _keep_partial_answer(self) -> None:
        """The engine died mid-answer: what had arrived stays, as an answer cut short."""
        if not self._answer_text:
            self.conversation.drop_unanswered()
            return
        self.conversation.finish(Finished(self.request_id, self._answer_text, Stats(
            prompt_tokens=0, cached_tokens=0, generation_tokens=self._generated, ttft_s=0.0,
            prompt_tps=0.0, generation_tps=0.0, peak_memory_bytes=0, kv_cache_bytes=0,
            finish_reason="engine exited")))

    # -- chat --------------------------------------------------------------------------------
    @on(Input.Submitted, "#prompt")
    def _submit(self, event: Input.Submitted) -> None:
        text = event.value
        if not text.strip():
            return
        if self.engine is None:
            self.notice("No engine is running; press r to start it, or pick a model (1-5).")
            return
        if self.generating:
            self.notice("Still answering; press Esc to stop it first.")
            return
        event.input.value = ""
        if self.info is None:  # still loading: send as soon as it is ready
            self._pending_prompt = text
            self.notice("The model is still loading; your prompt goes out when it is ready.")
            return
        self._send(text)

    def _send(self, text: str) -> None:
        assert self.engine is not None
        completion = self.spec is not None and self.spec.kind == "base"
        if completion and self.conversation.turns and not text.startswith((" ", "\n")):
            text = " " + text.lstrip()
        self.conversation.add_user(text)
        chat = self.query_one("#chat", VerticalScroll)
        chat.mount(Static(Text(text.strip()), classes="turn-user"))
        self._answer = Static("", classes="turn-model")
        self._answer_text = ""
        chat.mount(self._answer)
        chat.scroll_end(animate=False)
        self.request_id += 1
        self.generating = True
        self.last_finish_reason = None
        self._first_generated_at = None
        self._generated = 0
        self._request_base = len(self.conversation)
        if self._turn_counts is not None:
            self._turn_counts[:] = 0
        self.query_one(TokenStrip).cursor = None
        self.engine.send(Generate(self.request_id, tuple(self.conversation.turns),
                                  system=self.settings.system_prompt or None,
                                  sampling=self.settings.sampling, completion=completion))

    def _show_tokens(self, event: Tokens) -> None:
        if event.request_id != self.request_id:
            return
        self.conversation.add_tokens(event)
        if event.phase == "generate":
            now = time.perf_counter()
            if self._first_generated_at is None:
                self._first_generated_at = now
            self._generated += len(event.ids)
            if self._answer is not None:
                self._answer_text += "".join(event.texts)
                self._answer.update(Text(self._answer_text))
                self.query_one("#chat", VerticalScroll).scroll_end(animate=False)
            elapsed = now - self._first_generated_at
            tps = (self._generated - len(event.ids)) / elapsed if elapsed > 0.2 else None
            self.query_one(StatsPanel).set_live(self._generated, tps)
        strip = self.query_one(TokenStrip)
        r = event.routing
        if r is None or self.info is None or self._conv_counts is None:
            strip.append(list(event.texts), [event.phase] * len(event.ids), None)
            return
        strip.append(list(event.texts), [event.phase] * len(event.ids),
                     top1_experts(r.experts, r.weights))
        counts = np.zeros_like(self._conv_counts)
        np.add.at(counts, (np.arange(len(counts))[None, :, None], r.experts), 1.0)
        self._conv_counts += counts
        assert self._turn_counts is not None
        self._turn_counts += counts
        heatmap = self.query_one(RoutingHeatmap)
        if strip.cursor is None:  # a token picked with the cursor stays on show
            heatmap.show_token(self.info.moe_layers, r.experts[-1], r.weights[-1],
                               r.probs[-1], event.texts[-1], len(self.conversation) - 1)
        heatmap.show_shares(self.info.moe_layers, self._turn_counts, self._conv_counts)

    def _show_finished(self, event: Finished) -> None:
        if event.request_id != self.request_id:
            return
        self.generating = False
        self.last_finish_reason = event.stats.finish_reason
        self.conversation.finish(event)
        if self._answer is not None and event.text != self._answer_text:
            self._answer_text = event.text
            self._answer.update(Text(event.text))
        if event.stats.finish_reason == "cancelled":
            self.notice("Stopped; the partial answer is kept.")
        self.query_one(StatsPanel).set_finished(event.stats)
        if self._pending_switch is not None:
            key, self._pending_switch = self._pending_switch, None
            self.load_model(key)

    @on(TokenStrip.CursorMoved)
    def _show_cursor_token(self, message: TokenStrip.CursorMoved) -> None:
        if self.info is None or not self.info.is_moe:
            return
        index = message.index
        if index is None or not 0 <= index < len(self.conversation):
            return
        token = self.conversation.token(index)
        if token.routing is None:
            return
        experts, weights, probs = token.routing
        self.query_one(RoutingHeatmap).show_token(self.info.moe_layers, experts, weights,
                                                  probs, token.text, index)

    # -- conversation ------------------------------------------------------------------------
    def _new_conversation(self) -> None:
        self.conversation = Conversation(self.model_name, system=self.settings.system_prompt
                                         or None)
        self._conv_counts = self._turn_counts = None
        for strip in self.query(TokenStrip):
            strip.clear()

    def _show_conversation(self) -> None:
        """Redraw chat, strip and heatmaps from `self.conversation` (after a load)."""
        chat = self.query_one("#chat", VerticalScroll)
        chat.remove_children()
        for role, content in self.conversation.turns:
            chat.mount(Static(Text(content.strip()),
                              classes="turn-user" if role == "user" else "turn-model"))
        strip = self.query_one(TokenStrip)
        strip.clear()
        routing = self.conversation.routing()
        texts = [self.conversation.token(i).text for i in range(len(self.conversation))]
        phases = [self.conversation.token(i).phase for i in range(len(self.conversation))]
        info = self.conversation.info
        if routing is not None and info is not None and info.is_moe:
            strip.set_layers(info.moe_layers, num_experts=info.num_experts)
            strip.append(texts, phases, top1_experts(routing.experts, routing.weights))
            self._conv_counts = self.conversation.counts().astype(float)
            self._turn_counts = np.zeros_like(self._conv_counts)
            heatmap = self.query_one(RoutingHeatmap)
            last = self.conversation.token(-1)
            if last.routing is not None:
                heatmap.show_token(info.moe_layers, *last.routing, last.text,
                                   len(self.conversation) - 1)
            heatmap.show_shares(info.moe_layers, self._turn_counts, self._conv_counts)
        else:
            strip.append(texts, phases, None)
        chat.scroll_end(animate=False)

    # -- actions -----------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Single-key actions belong to the main screen, not to a dialog over it.
        return not (isinstance(self.screen, ModalScreen) and action not in ("quit", "stop"))

    def action_stop(self) -> None:
        if isinstance(self.screen, ModalScreen):
            self.screen.dismiss(None)
        elif self.generating and self.engine is not None:
            self.engine.cancel()
        elif self.focused is self.query_one(Input):
            self.set_focus(None)
        else:
            self.query_one(TokenStrip).cursor = None

    def action_focus_input(self) -> None:
        self.query_one(Input).focus()

    def action_focus_strip(self) -> None:
        self.query_one(TokenStrip).focus()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_switch(self, number: int) -> None:
        if not self._entries:
            self._refresh_bar()
        if not 1 <= number <= len(self._entries):
            self.notice(f"There is no model {number}; the bar lists {len(self._entries)}.")
            return
        self.switch_model(self._entries[number - 1].key)

    def switch_model(self, key: str) -> None:
        if self.spec is not None and key == self.spec.key and self.engine is not None:
            self.notice(f"{self.spec.name} is already the active model.")
            return
        if self.generating and self.engine is not None:
            self._pending_switch = key  # after the answer stops (Finished)
            self.engine.cancel()
            return
        self.load_model(key)
        if self.spec is not None and self.spec.key == key:
            self.notice(f"Switched to {self.spec.name}: a new conversation.")

    def action_layer(self, step: int) -> None:
        strip = self.query_one(TokenStrip)
        strip.next_layer() if step > 0 else strip.previous_layer()

    def action_toggle_colouring(self) -> None:
        strip = self.query_one(TokenStrip)
        strip.colouring = not strip.colouring
        self.settings.expert_colouring = strip.colouring
        self._save_settings()

    def action_reload(self) -> None:
        if self.engine is not None and self.engine.exited is None:
            self.notice("The engine is running; nothing to reload.")
            return
        self.load_model(self.model_name, keep_conversation=True)

    def action_clear(self) -> None:
        if self.generating:
            self.notice("Still answering; press Esc to stop it first.")
            return
        self._new_conversation()
        if self.info is not None:
            self.conversation.info = self.info
            self._show_ready(self.info)
        self.query_one("#chat", VerticalScroll).remove_children()
        if self.engine is not None:
            self.engine.send(ResetConversation())
        self.notice("A new conversation.")

    def action_system_prompt(self) -> None:
        def done(text: str | None) -> None:
            if text is None:
                return
            self.settings.system_prompt = text.strip()
            self.conversation.system = self.settings.system_prompt or None
            self._save_settings()
            self.notice("System prompt set." if text.strip() else "System prompt cleared.")

        self.push_screen(AskScreen("system prompt", "Used from the next answer on (empty: none)",
                                   self.settings.system_prompt), done)

    def action_sampling(self) -> None:
        def done(sampling: Sampling | None) -> None:
            if sampling is not None:
                self.settings.sampling = sampling
                self._save_settings()
                self.notice("Sampling settings saved.")

        self.push_screen(SamplingScreen(self.settings.sampling, parse_sampling), done)

    def action_experts_per_token(self) -> None:
        info = self.info
        if info is None or not info.is_moe:
            self.notice("Experts per token applies to a loaded MoE model; this one has none."
                        if info else "Wait for the model to load first.")
            return

        def check(text: str) -> str | None:
            if text.strip() == "":
                return None
            if not text.strip().isdigit() or not 1 <= int(text) <= info.num_experts:
                return f"Give a whole number from 1 to {info.num_experts}, or nothing for the " \
                       f"model's own {info.default_top_k}."
            return None

        def done(text: str | None) -> None:
            if text is None or self.engine is None or self.spec is None:
                return
            if self.generating:
                self.notice("Still answering; press Esc to stop it first.")
                return
            k = int(text) if text.strip() else None
            self.engine.send(SetExpertsPerToken(k))
            if k is None:
                self.settings.experts_per_token.pop(self.spec.key, None)
            else:
                self.settings.experts_per_token[self.spec.key] = k
            self._save_settings()
            self.notice(f"Experts per token: {k or info.default_top_k} (the KV cache starts "
                        "afresh).")

        self.push_screen(AskScreen("experts per token",
                                   f"1 to {info.num_experts}; empty for the model's own "
                                   f"{info.default_top_k}", str(info.top_k), check), done)

    def action_save_conversation(self) -> None:
        def done(path: str | None) -> None:
            if not path:
                return
            try:
                self.conversation.save(Path(path).expanduser())
            except (MixtuiError, OSError) as exc:
                self.notice(f"Not saved: {exc}")
                return
            self.notice(f"Conversation saved to {path}.")

        self.push_screen(AskScreen("save conversation", "File (JSON, with its routing)",
                                   _default_path("conversation", self.model_name, ".json")),
                         done)

    def action_load_conversation(self) -> None:
        def done(path: str | None) -> None:
            if not path:
                return
            if self.generating:
                self.notice("Still answering; press Esc to stop it first.")
                return
            try:
                loaded = Conversation.load(Path(path).expanduser())
            except (MixtuiError, OSError) as exc:
                self.notice(f"Not loaded: {exc}")
                return
            self.conversation = loaded
            self._show_conversation()
            if self.engine is not None:
                self.engine.send(ResetConversation())
            note = "" if loaded.model == self.model_name else (
                f" It was held with {loaded.model}; the next answer comes from "
                f"{self.model_name}.")
            self.notice(f"Conversation loaded from {path}.{note}")

        self.push_screen(AskScreen("load conversation", "File saved by mixtui", ""), done)

    def action_export_trace(self) -> None:
        info = self.info or self.conversation.info
        if info is None or not len(self.conversation):
            self.notice("Nothing to export yet: send a prompt first.")
            return

        def done(path: str | None) -> None:
            if not path:
                return
            try:
                self.conversation.export_trace(Path(path).expanduser(), info)
            except (MixtuiError, OSError) as exc:
                self.notice(f"Not exported: {exc}")
                return
            self.notice(f"Trace written to {path} (docs/trace-format.md).")

        self.push_screen(AskScreen("export trace", "File (JSON Lines, mixtui-trace v1)",
                                   _default_path("trace", self.model_name, ".jsonl")), done)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for n, spec in enumerate(self._entries, start=1):
            yield SystemCommand(f"Switch model: {spec.name}", f"key {n}",
                                lambda key=spec.key: self.switch_model(key))
        yield SystemCommand("Clear conversation", "start a new conversation",
                            self.action_clear)
        yield SystemCommand("System prompt…", "set or clear the system prompt",
                            self.action_system_prompt)
        yield SystemCommand("Sampling settings…", "temperature, top-p, top-k, min-p, seed, "
                            "max tokens", self.action_sampling)
        yield SystemCommand("Experts per token…", "route each token to k experts",
                            self.action_experts_per_token)
        yield SystemCommand("Save conversation…", "JSON with its routing",
                            self.action_save_conversation)
        yield SystemCommand("Load conversation…", "a file saved by mixtui",
                            self.action_load_conversation)
        yield SystemCommand("Export trace…", "the conversation in the trace format",
                            self.action_export_trace)
        yield SystemCommand("Toggle expert colouring", "key e", self.action_toggle_colouring)
        yield SystemCommand("Reload engine", "start the engine again (key r)",
                            self.action_reload)
        yield SystemCommand("Keys", "the help screen (key ?)", self.action_help)

    # -- helpers -----------------------------------------------------------------------------
    def notice(self, text: str) -> None:
        chat = self.query_one("#chat", VerticalScroll)
        chat.mount(Static(Text(text), classes="notice"))
        chat.scroll_end(animate=False)

    def _save_settings(self) -> None:
        if not self.persist:
            return
        try:
            save_settings(self.settings)
        except MixtuiError as exc:
            self.notice(f"Settings not saved: {exc}")

    def on_unmount(self) -> None:
        if self.engine is not None:
            self.engine.close()


def run_app(model: str | None) -> int:
    """`mixtui [--model KEY]`: run the app; the exit code is the app's return code."""
    app = MixtuiApp(model)
    code = app.run()
    return code or 0

