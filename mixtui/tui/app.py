"""The mixtui app: chat with a model while its expert routing, speed and memory are shown live.

The App holds the settings, the key bindings, the palette and the bridge to the engine: a
thread worker ends the previous engine process (its memory goes back), starts the next one
from a spawner thread and posts its events as typed messages (`tui/messages.py`) to the
main screen (`tui/screens/main.py`), which shows the chat controller's conversation. The UI
process never imports MLX.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from textual import events, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import ModalScreen, Screen

from mixtui.app.chat import ChatController
from mixtui.app.conversation import Conversation
from mixtui.app.loader import launch
from mixtui.app.settings import Settings, load_settings, save_settings
from mixtui.core.errors import MixtuiError
from mixtui.core.paths import log_dir
from mixtui.core.types import ModelInfo, Sampling
from mixtui.engine.messages import EngineExited, Event, Failed, Load
from mixtui.registry.spec import ModelSpec
from mixtui.tui.actions import Actions
from mixtui.tui.download_screen import DownloadScreen
from mixtui.tui.messages import TokenInbox, engine_message
from mixtui.tui.screens.analysis import AnalysisScreen
from mixtui.tui.screens.compare import CompareScreen
from mixtui.tui.screens.dialogs import HelpScreen
from mixtui.tui.screens.main import BAR_SLOTS, MainScreen
from mixtui.tui.screens.picker import ModelPicker
from mixtui.tui.widgets.chat import ChatLog
from mixtui.tui.widgets.token_strip import TokenStrip
from mixtui.tui.wording import say

if TYPE_CHECKING:
    from mixtui.engine.client import EngineProcess  # loads with the first engine

UI_NICE = 19  # the UI thread's priority on Linux: the lowest (see _lower_ui_thread_priority)
# The main screen's keys, and the palette of its actions, wait while the compare screen is up
# (it has its own Esc; a model switch during its run would fight it for the memory), and
# while the analysis screen is (its Esc closes it, not the answer it watches).
_MAIN_SCREEN_ACTIONS = frozenset({
    "stop", "help", "focus_input", "switch", "layer", "focus_strip", "toggle_colouring",
    "reload", "pick_model", "compare", "analyze", "command_palette", "toggle_over_time"})
T = TypeVar("T")

__all__ = ["MixtuiApp", "run_app"]


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
        Binding("o", "toggle_over_time", "Over time", show=False),
        Binding("r", "reload", "Reload engine", show=False),
        Binding("m", "pick_model", "Models", show=False),
        Binding("c", "compare", "Compare", show=False),
        Binding("a", "analyze", "Analyze", show=False),
    ]

    def __init__(self, model: str | None = None, sampling: Sampling | None = None,
                 settings: Settings | None = None, persist: bool = True,
                 mask_live_figures: bool = False, force: bool = False,
                 without_routing: bool = False) -> None:
        """`persist`: read and write settings.json (tests pass their own `settings`);
        `mask_live_figures`: hide timing- and machine-dependent figures (snapshot tests);
        `force`: load models that do not fit the memory budget (`mixtui --force`);
        `without_routing`: run MoE models of no known family (`mixtui --no-routing`)."""
        super().__init__()
        self.persist = persist
        self.force = force
        self.without_routing = without_routing
        self.mask_live_figures = mask_live_figures
        warning = None
        if settings is None:
            settings, warning = load_settings() if persist else (Settings(), None)
        self.settings = settings
        if sampling is not None:
            self.settings.sampling = sampling
        self.startup_warning = warning  # settings.json could not be used: said at start
        name = model or self.settings.last_model or "nano"
        self._first_model = name
        self._model_from_settings = model is None and name != "nano"
        self.controller = ChatController(name, system=self.settings.system_prompt or None)
        self.actions = Actions(self)
        self.token_inbox = TokenInbox()
        self._closing = False
        self._measuring_only = False
        # Engines are spawned from this one thread, created now at the caller's priority,
        # so that they do not inherit the lower priority the UI thread takes on Linux.
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mixtui-spawn")
        self._spawner.submit(lambda: None).result()

    def get_default_screen(self) -> Screen:
        return MainScreen(self.controller)

    @property
    def main(self) -> MainScreen:
        screen = self.screen_stack[0]
        assert isinstance(screen, MainScreen)
        return screen

    def on_mount(self) -> None:
        _lower_ui_thread_priority()
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

    def _start(self) -> None:
        if not self._measuring_only:
            self.main.start(self._first_model, self._model_from_settings)

    def on_resize(self, event: events.Resize) -> None:
        self.main.apply_width(event.size.width)

    # -- what the views and tests read -------------------------------------------------------
    @property
    def conversation(self) -> Conversation:
        return self.controller.conversation

    @property
    def info(self) -> ModelInfo | None:
        return self.controller.info

    @property
    def engine(self) -> EngineProcess | None:
        return self.controller.engine

    @property
    def generating(self) -> bool:
        return self.controller.generating

    @property
    def last_finish_reason(self) -> str | None:
        return self.controller.last_finish_reason

    @property
    def model_name(self) -> str:
        return self.controller.model

    @property
    def spec(self) -> ModelSpec | None:
        return self.main.spec

    @property
    def chat(self) -> ChatLog:
        return self.main.chat

    def notice(self, text: str) -> None:
        self.main.notice(text)

    def save_settings(self) -> None:
        if not self.persist:
            return
        try:
            save_settings(self.settings)
        except MixtuiError as exc:
            self.notice(f"Settings not saved: {say(exc)}")

    # -- the engine bridge -------------------------------------------------------------------
    def start_engine(self, old: EngineProcess | None, load: Load, generation: int) -> None:
        """End `old`, start an engine for `load` and forward its events (a thread worker)."""
        self._run_engine(old, load, generation)

    @work(thread=True, group="engine", exit_on_error=False,
          description="end the old engine, start a new one, forward its events")
    def _run_engine(self, old: EngineProcess | None, load: Load, generation: int) -> None:
        if old is not None:
            old.close()  # all its memory goes back before the new model comes in
        if self._closing:
            return
        try:
            # Started from the spawner thread, which keeps the normal priority (see on_mount).
            engine = self._spawner.submit(launch, load, log_dir() / "engine.log").result()
        except RuntimeError:  # the app is quitting: the spawner is shut down
            return
        except OSError as exc:
            self._post(Failed(None, f"The engine could not start ({exc}); check free memory "
                                    "and disk, then press r."), generation)
            return
        self.call_from_thread(self._engine_started, engine, generation)
        try:
            for event in engine.events():
                self._post(event, generation)
        except Exception as exc:  # a message that cannot be read: end it, do not hang
            # (also how a read ends when a failed load's engine is closed under it)
            self.log.error(f"reading from the engine failed: {exc!r}")
            engine.close()
            self._post(EngineExited(engine.process.exitcode), generation)

    def _post(self, event: Event, generation: int) -> None:
        self.main.post_message(engine_message(event, generation, self.token_inbox))

    def _engine_started(self, engine: EngineProcess, generation: int) -> None:
        if self._closing or not self.controller.attach(engine, generation):
            engine.close(timeout=1.0)  # a newer request replaced it meanwhile
            return
        self.main.engine_started(engine.pid)

    # -- actions -----------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if isinstance(self.screen, CompareScreen | AnalysisScreen):
            return action not in _MAIN_SCREEN_ACTIONS
        # Single-key actions belong to the main screen, not to a dialog over it.
        return not (isinstance(self.screen, ModalScreen) and action not in ("quit", "stop"))

    def action_stop(self) -> None:
        if isinstance(self.screen, DownloadScreen):
            self.screen.action_cancel()  # ends the download first; finished files stay
        elif isinstance(self.screen, ModalScreen):
            self.screen.dismiss(None)
        elif self.controller.generating:
            self.main.stop_answer()
        elif self.focused is self.main.query_one("#prompt"):
            self.set_focus(None)
        else:
            self.main.query_one(TokenStrip).cursor = None

    def action_focus_input(self) -> None:
        self.main.query_one("#prompt").focus()

    def action_focus_strip(self) -> None:
        self.main.focus_tokens()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_switch(self, number: int) -> None:
        main = self.main
        if not main.entries:
            main.refresh_bar()
        if not 1 <= number <= len(main.entries):
            self.notice(f"There is no model {number}; the bar lists {len(main.entries)}.")
            return
        main.switch_model(main.entries[number - 1].key)

    def switch_model(self, key: str) -> None:
        self.main.switch_model(key)

    def action_pick_model(self) -> None:
        """The model picker over the main screen; Enter switches as the number keys do."""
        main = self.main
        rows = main.catalogue()
        main.refresh_bar()  # the pins as they are now (unknown ones dropped)

        def chosen(key: str | None) -> None:
            if key is not None:
                self.switch_model(key)

        self.push_screen(ModelPicker(rows, [spec.key for spec in main.entries],
                                     self.toggle_pin, list(self.settings.favourites),
                                     active=main.spec.key if main.spec else None), chosen)

    def action_compare(self) -> None:
        """The compare screen: models timed side by side (the chat's engine waits)."""
        main = self.main
        spec = main.spec
        self.push_screen(CompareScreen(main.catalogue(), spec.key if spec else "nano"))

    def action_analyze(self) -> None:
        """The analysis screen: the conversation's routing statistics, live."""
        self.push_screen(AnalysisScreen())

    def at_normal_priority(self, fn: Callable[[], T]) -> T:
        """`fn()` on the spawner thread, so that the engines it starts keep the normal
        priority (see on_mount); blocks: for thread workers. RuntimeError when quitting."""
        return self._spawner.submit(fn).result()

    def toggle_pin(self, key: str) -> list[str]:
        """Pin `key` (or unpin it), save the settings; the keys' models after the change."""
        favourites = self.settings.favourites
        if key in favourites:
            favourites.remove(key)
        else:
            favourites.append(key)
        self.save_settings()
        self.main.refresh_bar()
        return [spec.key for spec in self.main.entries]

    def action_layer(self, step: int) -> None:
        strip = self.main.query_one(TokenStrip)
        strip.next_layer() if step > 0 else strip.previous_layer()

    def action_toggle_colouring(self) -> None:
        strip = self.main.query_one(TokenStrip)
        strip.colouring = not strip.colouring
        self.settings.expert_colouring = strip.colouring
        self.save_settings()

    def action_toggle_over_time(self) -> None:
        self.main.toggle_over_time()

    def action_reload(self) -> None:
        self.main.reload()

    def action_clear(self) -> None:
        self.main.clear_conversation()

    def action_system_prompt(self) -> None:
        self.actions.system_prompt()

    def action_sampling(self) -> None:
        self.actions.sampling()

    def action_experts_per_token(self) -> None:
        self.actions.experts_per_token()

    def action_save_conversation(self) -> None:
        self.actions.save_conversation()

    def action_load_conversation(self) -> None:
        self.actions.load_conversation()

    def action_export_trace(self) -> None:
        self.actions.export_trace()

    def action_screenshot(self, filename: str | None = None, path: str | None = None) -> None:
        self.actions.screenshot(filename, path)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for command in super().get_system_commands(screen):
            if command.title == "Screenshot":  # Textual's saves to ~/Downloads, often absent
                command = command._replace(callback=lambda: self.set_timer(
                    0.1, self.action_screenshot))
            yield command
        yield from self.actions.commands()

    # -- quitting ----------------------------------------------------------------------------
    def on_unmount(self) -> None:
        self._end_engine()

    def _end_engine(self) -> None:
        """Quitting: stop the engine within about a second, whatever it is doing."""
        self._closing = True
        downloads = [s for s in self.screen_stack if isinstance(s, DownloadScreen)]
        for screen in downloads:  # both processes are told to end first, then waited for
            screen.stop_soon()
        for compare in [s for s in self.screen_stack if isinstance(s, CompareScreen)]:
            compare.stop_run()
        self.controller.close(timeout=1.0)
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


def run_app(model: str | None, force: bool = False, without_routing: bool = False) -> int:
    """`mixtui [--model KEY] [--force] [--no-routing]`: run the app; the exit code is the
    app's return code."""
    app = MixtuiApp(model, force=force, without_routing=without_routing)
    code = app.run()
    return code or 0
