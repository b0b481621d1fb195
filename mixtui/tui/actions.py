"""The palette's actions: the dialogs (system prompt, sampling, experts per token), the files
(save / load a conversation, export a trace, a screenshot) and the palette's list of them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import SystemCommand

from mixtui.app.conversation import Conversation
from mixtui.app.settings import parse_experts_per_token, parse_sampling
from mixtui.core.errors import MixtuiError
from mixtui.core.paths import config_dir
from mixtui.core.types import Sampling
from mixtui.tui.screens.dialogs import AskScreen, SamplingScreen
from mixtui.tui.wording import say

if TYPE_CHECKING:
    from mixtui.tui.app import MixtuiApp


def default_path(kind: str, model: str, suffix: str) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return str(Path.home() / f"mixtui-{kind}-{model.replace('/', '_')}-{stamp}{suffix}")


def screenshot_dir() -> Path:
    """Where a screenshot goes: the current directory, or, where that cannot be written,
    mixtui's config folder (created if need be)."""
    here = Path.cwd()
    if os.access(here, os.W_OK):
        return here
    folder = config_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Actions:
    """What the palette (ctrl+p) offers beyond the keys, for one app."""

    def __init__(self, app: MixtuiApp) -> None:
        self.app = app

    def commands(self) -> Iterator[SystemCommand]:
        app = self.app
        yield SystemCommand("Pick a model…", "every model: search, switch, pin to keys 1–5 "
                            "(key m)", app.action_pick_model)
        yield SystemCommand("Compare models…", "decode speed, memory and the 300-token wait "
                            "of several models side by side (key c)", app.action_compare)
        yield SystemCommand("Analyze routing…", "the conversation's expert load, the Mixtral "
                            "paper's Table 5, expert-cache hit rates and offloading speed, "
                            "live (key a)", app.action_analyze)
        for n, spec in enumerate(app.main.entries, start=1):
            yield SystemCommand(f"Switch model: {spec.name}", f"key {n}",
                                lambda key=spec.key: app.switch_model(key))
        yield SystemCommand("Clear conversation", "start a new conversation",
                            app.action_clear)
        yield SystemCommand("System prompt…", "set or clear the system prompt",
                            self.system_prompt)
        yield SystemCommand("Sampling settings…", "temperature, top-p, top-k, min-p, seed, "
                            "max tokens", self.sampling)
        yield SystemCommand("Experts per token…", "route each token to k experts",
                            self.experts_per_token)
        yield SystemCommand("Save conversation…", "JSON with its routing",
                            self.save_conversation)
        yield SystemCommand("Load conversation…", "a file saved by mixtui",
                            self.load_conversation)
        yield SystemCommand("Export trace…", "the conversation in the trace format",
                            self.export_trace)
        yield SystemCommand("Toggle expert colouring", "key e", app.action_toggle_colouring)
        yield SystemCommand("Toggle routing over time", "each token's top-1 expert per layer; "
                            "narrow: in place of the token strip (key o)",
                            app.action_toggle_over_time)
        yield SystemCommand("Reload engine", "start the engine again (key r)",
                            app.action_reload)
        yield SystemCommand("Keys", "the help screen (key ?)", app.action_help)

    # -- dialogs -----------------------------------------------------------------------------
    def system_prompt(self) -> None:
        app = self.app

        def done(text: str | None) -> None:
            if text is None:
                return
            app.settings.system_prompt = text.strip()
            app.conversation.system = app.settings.system_prompt or None  # next answer on
            app.save_settings()
            app.notice("System prompt set." if text.strip() else "System prompt cleared.")

        app.push_screen(AskScreen("system prompt", "Used from the next answer on (empty: none)",
                                  app.settings.system_prompt), done)

    def sampling(self) -> None:
        app = self.app

        def done(sampling: Sampling | None) -> None:
            if sampling is not None:
                app.settings.sampling = sampling
                app.save_settings()
                app.notice("Sampling settings saved.")

        app.push_screen(SamplingScreen(app.settings.sampling, parse_sampling), done)

    def experts_per_token(self) -> None:
        app = self.app
        controller = app.controller
        info = controller.info
        if info is None or not info.is_moe:
            app.notice("Experts per token applies to a loaded MoE model; this one has none."
                       if info else "Wait for the model to load first.")
            return
        most = info.max_top_k or info.num_experts  # group-limited routing chooses fewer

        def check(text: str) -> str | None:
            try:
                parse_experts_per_token(text, most, info.top_k_note)
            except MixtuiError as exc:
                return say(exc)
            return None

        def done(text: str | None) -> None:
            if text is None:
                return
            spec = app.spec
            if controller.engine is None or spec is None or controller.info is None:
                app.notice("No model is running; press r to start it, then set this again.")
                return
            if controller.generating:
                app.notice("Still answering; press Esc to stop it first, then set this again.")
                return
            k = parse_experts_per_token(text, most, info.top_k_note)
            controller.set_experts_per_token(k)
            if k is None:
                app.settings.experts_per_token.pop(spec.key, None)
            else:
                app.settings.experts_per_token[spec.key] = k
            app.save_settings()
            app.notice(f"Experts per token: {k or info.default_top_k} (the KV cache starts "
                       "afresh).")

        app.push_screen(AskScreen("experts per token",
                                  f"1 to {most}; empty for the model's own "
                                  f"{info.default_top_k}"
                                  + (f". {info.top_k_note}" if info.top_k_note else ""),
                                  str(info.top_k), check), done)

    # -- files -------------------------------------------------------------------------------
    def save_conversation(self) -> None:
        app = self.app
        if app.generating:
            app.notice("Still answering; press Esc to stop it (or wait), then save.")
            return
        conversation = app.conversation

        def done(path: str | None) -> None:
            if path:
                self._write(conversation.save, path, f"Conversation saved to {path}.",
                            "Not saved")

        app.push_screen(AskScreen("save conversation", "File (JSON, with its routing)",
                                  default_path("conversation", app.model_name, ".json")), done)

    def load_conversation(self) -> None:
        app = self.app

        def done(path: str | None) -> None:
            if not path:
                return
            if app.generating:
                app.notice("Still answering; press Esc to stop it first.")
                return
            try:
                loaded = Conversation.load(Path(path).expanduser())
            except (MixtuiError, OSError) as exc:
                app.notice(f"Not loaded: {say(exc) if isinstance(exc, MixtuiError) else exc}")
                return
            problem = self._cannot_continue(loaded)
            if problem:
                app.notice(f"Not loaded: {problem}")
                return
            loaded.drop_unanswered()  # a question saved without its answer is asked again
            loaded.info = app.info
            app.main.show_conversation(loaded)
            note = "" if loaded.model == app.model_name else (
                f" It was held with {loaded.model}; the next answer comes from "
                f"{app.model_name}.")
            app.notice(f"Conversation loaded from {path}.{note}")

        app.push_screen(AskScreen("load conversation", "File saved by mixtui", ""), done)

    def _cannot_continue(self, loaded: Conversation) -> str | None:
        """Why the active model cannot carry on `loaded` (its routing has another shape)."""
        info = self.app.info
        if info is None:
            return "wait until the model has loaded, then load the conversation."
        if self.app.generating:
            return "the model is still answering; press Esc, then load it."
        mine = (len(info.moe_layers), info.num_experts)
        theirs = (loaded.layers, loaded.num_experts)
        if len(loaded) and loaded.routing() is not None and theirs != mine:
            return (f"it was held with {loaded.model} ({theirs[0]} MoE layers x {theirs[1]} "
                    f"experts) and {info.name} has {mine[0]} x {mine[1]}; switch to "
                    f"{loaded.model} first.")
        return None

    def export_trace(self) -> None:
        app = self.app
        conversation = app.conversation
        info = app.info or conversation.info
        if info is None or not len(conversation):
            app.notice("Nothing to export yet: send a prompt first.")
            return
        if app.generating:
            app.notice("Still answering; press Esc to stop it (or wait), then export.")
            return

        def done(path: str | None) -> None:
            if path:
                self._write(lambda p: conversation.export_trace(p, info), path,
                            f"Trace written to {path} (docs/trace-format.md).", "Not exported")

        app.push_screen(AskScreen("export trace", "File (JSON Lines, docs/trace-format.md)",
                                  default_path("trace", app.model_name, ".jsonl")), done)

    def _write(self, write: Callable[[Path], None], path: str, done: str, failed: str) -> None:
        """Write a conversation or trace file off the UI thread; prompts wait for it."""
        app = self.app
        app.main.writing = True

        def work() -> None:
            try:
                write(Path(path).expanduser())
                message = done
            except MixtuiError as exc:
                message = f"{failed}: {say(exc)}"
            except OSError as exc:
                message = f"{failed}: {exc}"
            except Exception as exc:  # a bug: say it, and let prompts go on
                message = f"{failed}: internal error {exc!r}; please report it."
            app.call_from_thread(written, message)

        def written(message: str) -> None:
            app.main.writing = False
            app.notice(message)

        app.run_worker(work, thread=True, group="files", exit_on_error=False)

    def screenshot(self, filename: str | None = None, path: str | None = None) -> None:
        """An SVG of the screen, into the current directory (else the config folder)."""
        app = self.app
        try:
            where = Path(path) if path else screenshot_dir()
            saved = app.save_screenshot(filename, str(where))
        except OSError as exc:
            app.notice(f"Screenshot not saved: {exc}; run mixtui from a folder you can "
                       "write to.")
            return
        app.notice(f"Screenshot saved to {saved}.")
