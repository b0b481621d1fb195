"""The mixtui app: chat with a model while its expert routing, speed and memory are shown live.

The UI process never imports MLX: an `EngineProcess` owns the model, and its events reach
the app through a thread worker as `EngineEvent` messages (at most about 20 per second: the
engine batches tokens). Switching models ends that process, which gives all its memory back.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from textual import events, on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Container, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Input

from mixtui.app.conversation import Conversation
from mixtui.app.settings import (
    Settings,
    load_settings,
    parse_experts_per_token,
    parse_sampling,
    save_settings,
)
from mixtui.core.errors import MixtuiError, ModelNotLocal
from mixtui.core.paths import log_dir
from mixtui.core.types import ModelInfo, Sampling, Stats
from mixtui.engine.client import EngineProcess
from mixtui.engine.messages import (
    EngineExited,
    Failed,
    Finished,
    Generate,
    Load,
    Loading,
    Ready,
    ResetConversation,
    SetExpertsPerToken,
    Tokens,
)
from mixtui.registry.local import require_local, resolve
from mixtui.registry.spec import ModelSpec
from mixtui.tui.download_screen import DownloadScreen
from mixtui.tui.messages import EngineEvent
from mixtui.tui.screens import AskScreen, HelpScreen, SamplingScreen
from mixtui.tui.widgets.chat import ChatLog
from mixtui.tui.widgets.heatmap import RoutingHeatmap
from mixtui.tui.widgets.model_bar import BarEntry, ModelBar
from mixtui.tui.widgets.stats import StatsPanel
from mixtui.tui.widgets.token_strip import TokenStrip, top1_experts
from mixtui.tui.wording import fit_text, say

if TYPE_CHECKING:
    from mixtui.planner import Fit

BAR_SLOTS = 5  # models on the number keys
UI_NICE = 19  # the UI thread's priority on Linux: the lowest (see _lower_ui_thread_priority)
UI_TICK_S = 0.1  # how often streaming tokens reach the widgets
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
                 mask_live_figures: bool = False, force: bool = False) -> None:
        """`persist`: read and write settings.json (tests pass their own `settings`);
        `mask_live_figures`: hide timing- and machine-dependent figures (snapshot tests);
        `force`: load models that do not fit the memory budget (`mixtui --force`)."""
        super().__init__()
        self.persist = persist
        self.force = force
        self.mask_live_figures = mask_live_figures
        warning = None
        if settings is None:
            settings, warning = load_settings() if persist else (Settings(), None)
        self.settings = settings
        if sampling is not None:
            self.settings.sampling = sampling
        self._startup_warning = warning
        self.model_name = model or self.settings.last_model or "nano"
        self._model_from_settings = model is None and self.model_name != "nano"
        self.spec: ModelSpec | None = None
        self.engine: EngineProcess | None = None
        self.engine_generation = 0
        self.info: ModelInfo | None = None
        self.conversation = Conversation(self.model_name)
        self.generating = False
        self.request_id = 0
        self.last_finish_reason: str | None = None
        self._answer: int | None = None  # the streaming answer's block in the chat
        self._answer_shown = 0  # characters of it on screen
        self._answer_text = ""
        self._pending_switch: str | None = None
        self._entries: list[ModelSpec] = []
        self._turn_counts: np.ndarray | None = None  # (moe_layers, E) this answer
        self._conv_counts: np.ndarray | None = None  # (moe_layers, E) this conversation
        self._first_generated_at: float | None = None
        self._generated = 0
        self._live_tps: float | None = None
        self.starting = False  # an engine is being started and has not answered Ready yet
        self._pending_prompt: str | None = None
        self._registry_error: str | None = None
        self._merge_noted = False
        self._closing = False
        self.writing = False  # a conversation or trace file is being written
        # Tokens arrive at ~20 Hz; the widgets are brought up to date at UI_TICK_S.
        self._dirty = False
        # Engines are spawned from this one thread, created now at the caller's priority,
        # so that they do not inherit the lower priority the UI thread takes on Linux.
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mixtui-spawn")
        self._spawner.submit(lambda: None).result()
        self._strip_buffer: list[tuple[list[str], list[str], np.ndarray | None]] = []
        self._last_token: tuple[np.ndarray, np.ndarray, np.ndarray, str, int] | None = None

    # -- layout ------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield ModelBar(id="model-bar")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield ChatLog(id="chat")
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
        _lower_ui_thread_priority()
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
        self.set_interval(UI_TICK_S, self._flush_ui)

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
        if self._model_from_settings and not self._is_here(self.model_name):
            # the last session's model is gone from disk: open nano rather than a download
            self.notice(f"{self.model_name}, the model of the last session, is not on disk "
                        "any more; opened nano instead (pick it on the model bar to download "
                        "it again).")
            self.model_name = "nano"
        self.load_model(self.model_name)

    def _is_here(self, name: str) -> bool:
        try:
            require_local(resolve(name, self.registry()))
        except ModelNotLocal:
            return False
        except MixtuiError:
            return True  # not a download matter: load_model says what is wrong
        return True

    def on_resize(self, event: events.Resize) -> None:
        self._apply_width(event.size.width)

    def _apply_width(self, width: int) -> None:
        self.screen_stack[0].set_class(width < NARROW, "narrow")  # the main screen

    # -- the model bar -----------------------------------------------------------------------
    def registry(self) -> dict[str, ModelSpec]:
        """The models: the user's models.toml over the built-in one. A broken user file is
        reported once and set aside (the built-in models still work) until it is fixed."""
        from mixtui.core.errors import RegistryError
        from mixtui.registry.loader import load_registry

        try:
            registry = load_registry()
        except RegistryError as exc:
            text = f"{str(exc)[:-1]}; until then mixtui uses its built-in models."
            if text != self._registry_error:
                self._registry_error = text
                self.notice(text)
            return load_registry(include_user=False)
        self._registry_error = None
        return registry

    def _refresh_bar(self) -> None:
        from mixtui.planner import memory_budget, plan
        from mixtui.registry.local import local_state

        try:
            registry = self.registry()
            budget = memory_budget()
        except MixtuiError as exc:
            self.notice(str(exc))
            return
        self._entries = list(registry.values())[:BAR_SLOTS]
        entries = []
        for n, spec in enumerate(self._entries, start=1):
            state = {"bundled": "bundled", "complete": "downloaded", "partial": "partial"}.get(
                local_state(spec), "not downloaded")
            fit = plan(spec, context=self.settings.max_kv_size, budget=budget,
                       registry=registry)
            if fit.verdict == "does-not-fit":
                state = "does not fit"
            elif fit.verdict == "tight" and state not in ("not downloaded", "partial"):
                state = "tight"
            entries.append(BarEntry(n, spec.key, spec.name, state,
                                    f"{fit.weight_bytes / 1e9:.1f} GB",
                                    self._fit_text(fit)))
        self.query_one(ModelBar).set_entries(entries)

    def _fit_text(self, fit: Fit) -> str:
        """The Fit's explanation as the TUI says it (the bar's tooltip and the refusal)."""
        return fit_text(fit, forced=self.force)

    def _status(self, text: str) -> None:
        key = self.spec.key if self.spec else None
        self.query_one(ModelBar).set_active(key, text)

    # -- engine ------------------------------------------------------------------------------
    def load_model(self, name: str, keep_conversation: bool = False,
                   offer_download: bool = True) -> None:
        """End the current engine (its memory goes back), then start `name` in a new one."""
        from mixtui.planner import memory_budget, plan

        try:
            spec = resolve(name, self.registry())
        except MixtuiError as exc:
            self._not_available(name, exc)
            return
        try:
            where = require_local(spec)
        except ModelNotLocal as exc:
            if offer_download and self._can_download(spec):
                self._offer_download(spec, keep_conversation)
            else:
                self._not_available(name, exc)
            return
        except MixtuiError as exc:
            self._not_available(name, exc)
            return
        budget = memory_budget()
        held = self._engine_memory()  # what the engine we are about to end gives back
        if held:
            budget = replace(budget, bytes=budget.bytes + held)
        fit = plan(spec, context=self.settings.max_kv_size, budget=budget, model_dir=where)
        if fit.verdict == "does-not-fit" and not self.force:
            self.notice(self._fit_text(fit))
            if self.spec is None:
                self._status(f"{name}: does not fit")
            return
        if fit.verdict != "fits":  # tight, or forced: say so once, then load
            text = (say(fit.error(hint=False), forced=True) if fit.verdict == "does-not-fit"
                    else fit.sentence(hint=False))
            self.notice(text if fit.verdict == "tight"
                        else f"{text[:-1]}; loading it anyway (--force).")
        old, self.engine = self.engine, None
        self.spec = spec
        self.model_name = spec.key
        self.info = None
        self.generating = False
        self._pending_prompt = None
        if not keep_conversation:
            self._new_conversation()
        self.engine_generation += 1
        self.starting = True
        self._status("starting the engine…")
        self.query_one(StatsPanel).set_engine_pid(None)
        self._run_engine(old, Load(str(where), spec.key, self.settings.max_kv_size,
                                   self.settings.experts_per_token.get(spec.key)),
                         self.engine_generation)

    def _not_available(self, name: str, exc: MixtuiError) -> None:
        self.notice(str(exc))
        if self.spec is None:
            self._status(f"{name}: not available")

    def _can_download(self, spec: ModelSpec) -> bool:
        """Whether picking this model should offer the download screen."""
        from huggingface_hub import constants

        if spec.repo is None or constants.HF_HUB_OFFLINE:
            return False
        from mixtui.planner import plan

        fit = plan(spec, context=self.settings.max_kv_size)  # before fetching gigabytes
        if fit.verdict == "does-not-fit" and not self.force:
            self.notice(self._fit_text(fit))
            return False
        return True

    def _offer_download(self, spec: ModelSpec, keep_conversation: bool) -> None:
        """The download screen; when every file is here, the model loads."""
        def done(ok: bool | None) -> None:
            self._refresh_bar()  # on disk, or partly
            if ok:
                self.load_model(spec.key, keep_conversation, offer_download=False)

        self.push_screen(DownloadScreen(spec), done)

    def _engine_memory(self) -> int:
        if self.engine is None or self.engine.pid is None or self.engine.exited is not None:
            return 0
        try:
            import psutil

            return int(psutil.Process(self.engine.pid).memory_info().rss)
        except Exception:  # gone already: nothing to give back
            return 0

    @work(thread=True, group="engine", exit_on_error=False,
          description="end the old engine, start a new one, forward its events")
    def _run_engine(self, old: EngineProcess | None, load: Load, generation: int) -> None:
        if old is not None:
            old.close()  # all its memory goes back before the new model comes in
        if self._closing:
            return
        try:
            # Started from the spawner thread, which keeps the normal priority (see on_mount).
            engine = self._spawner.submit(EngineProcess, log_dir() / "engine.log").result()
        except RuntimeError:  # the app is quitting: the spawner is shut down
            return
        except OSError as exc:
            self.post_message(EngineEvent(Failed(None, f"The engine could not start ({exc}); "
                                                 "check free memory and disk, then press r."),
                                          generation))
            return
        self.call_from_thread(self._engine_started, engine, generation)
        engine.send(load)
        try:
            for event in engine.events():
                self.post_message(EngineEvent(event, generation))
        except Exception as exc:  # a message that cannot be read: say so, do not hang
            self.post_message(EngineEvent(Failed(None, f"internal error reading from the "
                                                 f"engine: {exc!r}; please report it."),
                                          generation))
            engine.close()

    def _engine_started(self, engine: EngineProcess, generation: int) -> None:
        if generation != self.engine_generation or self._closing:
            engine.close(timeout=1.0)  # a newer request replaced it meanwhile
            return
        self.engine = engine
        self.query_one(StatsPanel).set_engine_pid(engine.pid)

    @on(EngineEvent)
    def _on_engine_event(self, message: EngineEvent) -> None:
        if message.generation != self.engine_generation:
            return  # from an engine that was replaced
        event = message.event
        try:
            if isinstance(event, Loading):
                self._status(f"{event.stage} {event.done}/{event.total}")
            elif isinstance(event, Ready):
                self._show_ready(event.info)
            elif isinstance(event, Tokens):
                self._take_tokens(event)
            elif isinstance(event, Finished):
                self._show_finished(event)
            elif isinstance(event, Failed):
                self._show_failed(event)
            elif isinstance(event, EngineExited):
                self._show_exited(event)
        except Exception as exc:  # a bug: keep the app and the conversation alive
            self.log.error(f"handling {type(event).__name__}: {exc!r}")
            self.notice(f"internal error while showing {type(event).__name__}: {exc!r}; "
                        "please report it (the conversation is kept).")

    def _show_ready(self, info: ModelInfo) -> None:
        first = self.info is None
        self.starting = False
        self.info = info
        self.conversation.info = info
        experts = (f"{info.num_experts} experts, {info.top_k} per token, "
                   f"{len(info.moe_layers)} MoE layers" if info.is_moe else "dense")
        self._status(f"ready · {experts}")
        shown = info if self.spec is None else replace(info, name=self.spec.name)
        self.query_one(StatsPanel).set_model(shown)
        self._rebuild_views()
        if first and self.spec is not None and self.settings.last_model != self.spec.key:
            self.settings.last_model = self.spec.key
            self._save_settings()
        if first and self._pending_prompt is not None:
            text, self._pending_prompt = self._pending_prompt, None
            self._send(text)

    def _show_failed(self, event: Failed) -> None:
        self._flush_ui()
        if self.info is None and (self.starting or self.engine is not None):
            # The model did not load: end that engine, so that r or a model key can retry.
            self.starting = False
            engine, self.engine = self.engine, None
            if engine is not None:
                threading.Thread(target=engine.close, daemon=True).start()
            self.query_one(StatsPanel).set_engine_pid(None)
            self._restore_pending_prompt()
            self._status("not loaded · r retries, 1-5 pick a model")
        elif self.generating and event.request_id in (None, self.request_id):
            self._end_answer("failed")
        self.notice(event.reason)
        self._after_answer()

    def _show_exited(self, event: EngineExited) -> None:
        self._flush_ui()
        if self.generating:
            self._end_answer("engine exited")
        self.starting = False
        self.info = None
        self.engine = None
        self._restore_pending_prompt()
        self.query_one(StatsPanel).set_engine_pid(None)
        self.notice(f"{event.description}; press r (or 'Reload engine' in ctrl+p) to start "
                    f"it again, the conversation is kept (engine log: {log_dir()}).")
        self._status(f"engine exited (code {event.code}) · r reloads")
        self._after_answer()

    def _end_answer(self, reason: str) -> None:
        """The answer ended without a Finished: what had arrived stays, cut short."""
        self.generating = False
        self.last_finish_reason = reason
        if not self._answer_text:  # nothing came: the question goes back into the input
            turns = self.conversation.turns
            question = turns[-1][1] if turns and turns[-1][0] == "user" else None
            self.conversation.drop_unanswered()
            if self._answer is not None:
                self.chat.remove_block(self._answer)
                self._answer = None
            blocks = self.chat.blocks
            if question is not None and blocks and blocks[-1].kind == "user":
                self.chat.remove_block(len(blocks) - 1)
                prompt = self.query_one("#prompt", Input)
                if not prompt.value:
                    prompt.value = question.strip()
            self._rebuild_views()
            return
        self.conversation.finish(Finished(self.request_id, self._answer_text, Stats(
            prompt_tokens=0, cached_tokens=0, generation_tokens=self._generated, ttft_s=0.0,
            prompt_tps=0.0, generation_tps=0.0, peak_memory_bytes=0, kv_cache_bytes=0,
            finish_reason=reason)))

    def _restore_pending_prompt(self) -> None:
        text, self._pending_prompt = self._pending_prompt, None
        prompt = self.query_one("#prompt", Input)
        if text is not None and not prompt.value:
            prompt.value = text  # nothing the user typed is lost

    def _after_answer(self) -> None:
        """A switch asked for during the answer happens once it has ended, however it ended."""
        if self._pending_switch is not None and not self.generating:
            key, self._pending_switch = self._pending_switch, None
            self.load_model(key)

    # -- chat --------------------------------------------------------------------------------
    @on(Input.Submitted, "#prompt")
    def _submit(self, event: Input.Submitted) -> None:
        text = event.value
        if not text.strip():
            return
        if self.generating:
            self.notice("Still answering; press Esc to stop it first.")
            return
        if self.writing:
            self.notice("A file is still being written; send again in a moment.")
            return
        if self.info is None and self.starting:  # still loading: send it when ready
            if self._pending_prompt is not None:
                self.notice("The model is still loading and your first prompt is waiting; "
                            "send this one after it.")
                return
            event.input.value = ""
            self._pending_prompt = text
            self.notice("The model is still loading; your prompt goes out when it is ready.")
            return
        if self.engine is None or self.info is None:
            self.notice("No model is running; press r to start it again, or pick one (1-5).")
            return
        event.input.value = ""
        self._send(text)

    def _send(self, text: str) -> None:
        assert self.engine is not None
        completion = self.spec is not None and self.spec.kind == "base"
        if completion and self.conversation.turns and not text.startswith((" ", "\n")):
            text = " " + text.lstrip()
        self.conversation.add_user(text)
        self.chat.add("user", text.strip())
        self._answer = self.chat.add("answer")
        self._answer_text = ""
        self._answer_shown = 0
        self.request_id += 1
        self.generating = True
        self.last_finish_reason = None
        self._first_generated_at = None
        self._generated = 0
        if self._turn_counts is not None:
            self._turn_counts[:] = 0
        self.query_one(TokenStrip).cursor = None
        self.engine.send(Generate(self.request_id, self.conversation.messages(),
                                  system=self.conversation.system,
                                  sampling=self.settings.sampling, completion=completion))

    def _take_tokens(self, event: Tokens) -> None:
        """Record the tokens now; the widgets catch up at the next UI tick (`_flush_ui`)."""
        if event.request_id != self.request_id or not self.generating:
            return
        self.conversation.add_tokens(event)
        r = event.routing
        top1 = None
        if r is not None and self._conv_counts is not None and self._turn_counts is not None:
            counts = np.zeros_like(self._conv_counts)
            np.add.at(counts, (np.arange(len(counts))[None, :, None], r.experts), 1.0)
            self._conv_counts += counts
            self._turn_counts += counts
            top1 = top1_experts(r.experts, r.weights)
            self._last_token = (r.experts[-1], r.weights[-1], r.probs[-1], event.texts[-1],
                                len(self.conversation) - 1)
        self._strip_buffer.append((list(event.texts), [event.phase] * len(event.ids), top1))
        if event.phase == "generate":
            now = time.perf_counter()
            if self._first_generated_at is None:
                self._first_generated_at = now
            self._generated += len(event.ids)
            self._answer_text += "".join(event.texts)
            elapsed = now - self._first_generated_at
            self._live_tps = (self._generated - len(event.ids)) / elapsed if elapsed > 0.2 \
                else None
        self._dirty = True

    def _flush_ui(self) -> None:
        """Bring the widgets up to date with what arrived since the last tick (~10 Hz)."""
        if not self._dirty:
            return
        self._dirty = False
        strip = self.query_one(TokenStrip)
        for texts, phases, top1 in self._strip_buffer:
            strip.append(texts, phases, top1)
        self._strip_buffer.clear()
        if self._answer is not None and len(self._answer_text) > self._answer_shown:
            self.chat.append(self._answer_text[self._answer_shown:], self._answer)
            self._answer_shown = len(self._answer_text)
        info = self.info
        if info is not None and info.is_moe and self._conv_counts is not None:
            heatmap = self.query_one(RoutingHeatmap)
            if strip.cursor is None and self._last_token is not None:
                heatmap.show_token(info.moe_layers, *self._last_token)
            assert self._turn_counts is not None
            heatmap.show_shares(info.moe_layers, self._turn_counts, self._conv_counts)
        if self.generating and self._generated:
            self.query_one(StatsPanel).set_live(self._generated, self._live_tps)

    def _show_finished(self, event: Finished) -> None:
        if event.request_id != self.request_id or not self.generating:
            return
        self._flush_ui()
        self.generating = False
        self.last_finish_reason = event.stats.finish_reason
        self.conversation.finish(event)
        if self._answer is not None and event.text != self._answer_text:
            self._answer_text = event.text
            self.chat.set_text(self._answer, event.text)
            self._answer_shown = len(event.text)
        if event.stats.system_merged and not self._merge_noted:
            self._merge_noted = True  # said once a session
            self.notice("This model's chat template has no system role, so the system prompt "
                        "goes before your message in the first user turn.")
        if event.stats.finish_reason == "cancelled":
            self.notice("Stopped; the partial answer is kept.")
        elif event.stats.finish_reason == "context":
            self.notice(f"The answer stopped where the context of {self.settings.max_kv_size} "
                        "tokens is full; clear the conversation (ctrl+p) or raise the context "
                        "size (max_kv_size in settings.json) to go on.")
        self.query_one(StatsPanel).set_finished(event.stats)
        self._after_answer()

    @on(TokenStrip.CursorMoved)
    def _show_cursor_token(self, message: TokenStrip.CursorMoved) -> None:
        info = self.info or self.conversation.info
        if info is None or not info.is_moe:
            return
        index = message.index
        if index is None or not 0 <= index < len(self.conversation):
            return
        token = self.conversation.token(index)
        if token.routing is not None:
            self.query_one(RoutingHeatmap).show_token(info.moe_layers, *token.routing,
                                                      token.text, index)

    @on(ModelBar.Selected)
    def _bar_clicked(self, message: ModelBar.Selected) -> None:
        self.switch_model(message.key)

    # -- conversation ------------------------------------------------------------------------
    def _new_conversation(self) -> None:
        self.conversation = Conversation(self.model_name, info=self.info,
                                         system=self.settings.system_prompt or None)
        self._rebuild_views()

    def _rebuild_views(self) -> None:
        """Token strip, counts and heatmaps from `self.conversation`, the one source of truth."""
        self._strip_buffer.clear()
        self._last_token = None
        strip = self.query_one(TokenStrip)
        heatmap = self.query_one(RoutingHeatmap)
        strip.clear()
        info = self.info or self.conversation.info
        n = len(self.conversation)
        texts = list(self.conversation.texts)
        phases = list(self.conversation.phases)
        if info is None:
            self._conv_counts = self._turn_counts = None
            strip.append(texts, phases, None)
            return
        if not info.is_moe:
            self._conv_counts = self._turn_counts = None
            strip.show_dense()
            heatmap.show_dense(self.spec.name if self.spec is not None else info.name)
            return
        strip.set_layers(info.moe_layers, num_experts=info.num_experts)
        routing = self.conversation.routing()
        shape = (len(info.moe_layers), info.num_experts)
        self._conv_counts = (self.conversation.counts().astype(float) if n and routing is not None
                             else np.zeros(shape))
        self._turn_counts = np.zeros(shape)
        strip.append(texts, phases,
                     top1_experts(routing.experts, routing.weights) if routing is not None
                     else None)
        last = self.conversation.token(-1) if n else None
        if last is not None and last.routing is not None:
            heatmap.show_token(info.moe_layers, *last.routing, last.text, n - 1)
            heatmap.show_shares(info.moe_layers, self._turn_counts, self._conv_counts)
        else:
            heatmap.show_message("Send a prompt: each token's experts appear here.")

    def _show_conversation(self) -> None:
        """Redraw the chat, strip and heatmaps from `self.conversation` (after a load)."""
        self.chat.clear()
        for role, content in self.conversation.turns:
            self.chat.add("user" if role == "user" else "answer", content.strip())
        self._answer = None
        self._rebuild_views()

    # -- actions -----------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Single-key actions belong to the main screen, not to a dialog over it.
        return not (isinstance(self.screen, ModalScreen) and action not in ("quit", "stop"))

    def action_stop(self) -> None:
        if isinstance(self.screen, DownloadScreen):
            self.screen.action_cancel()  # ends the download first; finished files stay
        elif isinstance(self.screen, ModalScreen):
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
        same = self.spec is not None and key == self.spec.key
        if same and (self.engine is not None or self.starting):
            assert self.spec is not None
            self.notice(f"{self.spec.name} is already the active model.")
            return
        if same:  # its engine is gone: start it again, keeping the conversation
            self.action_reload()
            return
        if self.generating and self.engine is not None:
            self._pending_switch = key  # once the answer has stopped
            self.engine.cancel()
            self.notice(f"Stopping the answer, then switching to {key}.")
            return
        self.load_model(key)
        if self.spec is not None and self.spec.key == key:
            self.notice(f"Switching to {self.spec.name}: a new conversation.")

    def action_layer(self, step: int) -> None:
        strip = self.query_one(TokenStrip)
        strip.next_layer() if step > 0 else strip.previous_layer()

    def action_toggle_colouring(self) -> None:
        strip = self.query_one(TokenStrip)
        strip.colouring = not strip.colouring
        self.settings.expert_colouring = strip.colouring
        self._save_settings()

    def action_reload(self) -> None:
        if self.starting or (self.engine is not None and self.engine.exited is None):
            self.notice("The engine is running; nothing to reload.")
            return
        self.load_model(self.model_name, keep_conversation=True)

    def action_clear(self) -> None:
        if self.generating:
            self.notice("Still answering; press Esc to stop it first.")
            return
        self._new_conversation()
        self.chat.clear()
        self._answer = None
        if self.engine is not None:
            self.engine.send(ResetConversation())
        self.notice("A new conversation.")

    def action_system_prompt(self) -> None:
        def done(text: str | None) -> None:
            if text is None:
                return
            self.settings.system_prompt = text.strip()
            self.conversation.system = self.settings.system_prompt or None  # next answer on
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
            try:
                parse_experts_per_token(text, info.num_experts)
            except MixtuiError as exc:
                return str(exc)
            return None

        def done(text: str | None) -> None:
            if text is None:
                return
            if self.engine is None or self.spec is None or self.info is None:
                self.notice("No model is running; press r to start it, then set this again.")
                return
            if self.generating:
                self.notice("Still answering; press Esc to stop it first, then set this again.")
                return
            k = parse_experts_per_token(text, info.num_experts)
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
        if self.generating:
            self.notice("Still answering; press Esc to stop it (or wait), then save.")
            return

        def done(path: str | None) -> None:
            if path:
                self._write_file(lambda p: self.conversation.save(p), path,
                                 f"Conversation saved to {path}.", "Not saved")

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
            problem = self._cannot_continue(loaded)
            if problem:
                self.notice(f"Not loaded: {problem}")
                return
            loaded.drop_unanswered()  # a question saved without its answer is asked again
            loaded.info = self.info
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

        if self.generating:
            self.notice("Still answering; press Esc to stop it (or wait), then export.")
            return

        def done(path: str | None) -> None:
            if path:
                self._write_file(lambda p: self.conversation.export_trace(p, info), path,
                                 f"Trace written to {path} (docs/trace-format.md).",
                                 "Not exported")

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

    def _cannot_continue(self, loaded: Conversation) -> str | None:
        """Why the active model cannot carry on `loaded` (its routing has another shape)."""
        if self.info is None:
            return "wait until the model has loaded, then load the conversation."
        if self.generating:
            return "the model is still answering; press Esc, then load it."
        mine = (len(self.info.moe_layers), self.info.num_experts)
        theirs = (loaded.layers, loaded.num_experts)
        if len(loaded) and loaded.routing() is not None and theirs != mine:
            return (f"it was held with {loaded.model} ({theirs[0]} MoE layers x {theirs[1]} "
                    f"experts) and {self.info.name} has {mine[0]} x {mine[1]}; switch to "
                    f"{loaded.model} first.")
        return None

    def _write_file(self, write: Callable[[Path], None], path: str, done: str,
                    failed: str) -> None:
        """Write a conversation or trace file off the UI thread; prompts wait for it."""
        self.writing = True

        def work() -> None:
            try:
                write(Path(path).expanduser())
                message = done
            except (MixtuiError, OSError) as exc:
                message = f"{failed}: {exc}"
            self.call_from_thread(self._written, message)

        self.run_worker(work, thread=True, group="files", exit_on_error=False)

    def _written(self, message: str) -> None:
        self.writing = False
        self.notice(message)

    # -- helpers -----------------------------------------------------------------------------
    def notice(self, text: str) -> None:
        self.chat.add("notice", text)

    @property
    def chat(self) -> ChatLog:
        return self.query_one("#chat", ChatLog)

    def _save_settings(self) -> None:
        if not self.persist:
            return
        try:
            save_settings(self.settings)
        except MixtuiError as exc:
            self.notice(f"Settings not saved: {exc}")

    def on_unmount(self) -> None:
        self._end_engine()

    def _end_engine(self) -> None:
        """Quitting: stop the engine within about a second, whatever it is doing."""
        self._closing = True
        downloads = [s for s in self.screen_stack if isinstance(s, DownloadScreen)]
        for screen in downloads:  # both processes are told to end first, then waited for
            screen.stop_soon()
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.close(timeout=1.0)
        for screen in downloads:
            screen.stop_now()
        self._spawner.shutdown(wait=False)


def _lower_ui_thread_priority() -> None:
    """Linux: the UI thread yields the CPU to the engine when both want it.

    On a machine with few cores the engine (which keeps more than one core busy while it
    decodes) and the UI's repainting compete; the model's speed is what the user came to
    see, so the UI thread runs at nice 19. Linux applies a thread id's priority to that
    thread alone; threads it creates later inherit it, hence the spawner thread above.
    """
    if sys.platform != "linux":
        return
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, max(current, UI_NICE))
    except OSError:  # not allowed here: no matter
        pass


def run_app(model: str | None, force: bool = False) -> int:
    """`mixtui [--model KEY] [--force]`: run the app; the exit code is the app's return code."""
    app = MixtuiApp(model, force=force)
    code = app.run()
    return code or 0

