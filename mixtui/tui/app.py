"""The mixtui app: chat with a model while its expert routing and speed are shown live."""

from __future__ import annotations

import numpy as np
from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, Input, Static

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
    Sampling,
    Tokens,
)
from mixtui.errors import MixtuiError
from mixtui.paths import log_dir
from mixtui.registry import ModelSpec, require_local, resolve
from mixtui.tui.messages import EngineEvent
from mixtui.tui.widgets.heatmap import RoutingHeatmap


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


class MixtuiApp(App[int]):
    """Chat pane, routing heatmap and speed/memory figures for one model."""

    CSS_PATH = "app.tcss"
    TITLE = "mixtui"
    BINDINGS = [
        Binding("escape", "stop", "Stop / leave input", priority=True),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(self, model: str = "nano", sampling: Sampling | None = None) -> None:
        super().__init__()
        self.model_name = model
        self.sampling = sampling or Sampling()
        self.spec: ModelSpec | None = None
        self.engine: EngineProcess | None = None
        self.engine_generation = 0
        self.info: ModelInfo | None = None
        self.turns: list[tuple[str, str]] = []  # (role, content)
        self.generating = False
        self.request_id = 0
        self._answer: Static | None = None
        self._answer_text = ""
        self._counts: np.ndarray | None = None  # (moe_layers, E) assignments this conversation
        self.last_finish_reason: str | None = None

    # -- layout ------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(id="model-bar")
        with Horizontal(id="main"):
            yield VerticalScroll(id="chat")
            with VerticalScroll(id="side"):
                yield RoutingHeatmap(id="heatmap")
                yield Static(id="stats")
        yield Input(placeholder="Type a prompt and press Enter", id="prompt")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#chat").border_title = "chat"
        self.query_one("#side").border_title = "routing"
        self.query_one(Input).focus()
        self.load_model(self.model_name)

    # -- engine ------------------------------------------------------------------------------
    def load_model(self, name: str) -> None:
        try:
            spec = resolve(name)
            where = require_local(spec)
        except MixtuiError as exc:
            self.notice(str(exc))
            self._set_bar(f"[b]{name}[/b]: not available")
            return
        if self.engine is not None:
            self.engine.close()
        self.spec = spec
        self.info = None
        self._counts = None
        self.engine_generation += 1
        self.engine = EngineProcess(log_path=log_dir() / "engine.log")
        self.engine.send(Load(str(where), spec.key))
        self._set_bar(f"[b]{spec.name}[/b]: starting the engine…")
        self._pump_events(self.engine, self.engine_generation)

    @work(thread=True, exclusive=True, group="engine", exit_on_error=False,
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
            self._set_bar(f"[b]{self.model_name}[/b]: {event.stage} {event.done}/{event.total}")
        elif isinstance(event, Ready):
            self._show_ready(event.info)
        elif isinstance(event, Tokens):
            self._show_tokens(event)
        elif isinstance(event, Finished):
            self._show_finished(event)
        elif isinstance(event, Failed):
            if self.generating and self.turns and self.turns[-1][0] == "user":
                self.turns.pop()  # unanswered: keep the turns alternating for the next prompt
            self.generating = False
            self.notice(event.reason)
        elif isinstance(event, EngineExited):
            self.generating = False
            self.info = None
            self.notice(event.reason)
            self._set_bar(f"[b]{self.model_name}[/b]: engine exited (code {event.code})")

    def _show_ready(self, info: ModelInfo) -> None:
        self.info = info
        experts = (f"{info.num_experts} experts, {info.top_k} per token, "
                   f"{len(info.moe_layers)} MoE layers" if info.is_moe else "dense")
        self._set_bar(f"[b]{info.name}[/b] · {experts} · "
                      f"{info.active_params / 1e6:,.1f} M of {info.total_params / 1e6:,.1f} M "
                      "parameters active")
        heatmap = self.query_one(RoutingHeatmap)
        if info.is_moe:
            self._counts = np.zeros((len(info.moe_layers), info.num_experts))
            heatmap.update("Send a prompt: each token's experts appear here.")
        else:
            heatmap.show_dense(info.name)
        self._show_stats()

    # -- chat --------------------------------------------------------------------------------
    @on(Input.Submitted, "#prompt")
    def _submit(self, event: Input.Submitted) -> None:
        text = event.value
        if not text.strip():
            return
        if self.info is None or self.engine is None:
            self.notice("The model is not loaded yet; wait for it, then send again.")
            return
        if self.generating:
            self.notice("Still answering; press Esc to stop it first.")
            return
        event.input.value = ""
        completion = self.spec is not None and self.spec.kind == "base"
        if completion and self.turns:
            text = " " + text.lstrip() if not text.startswith((" ", "\n")) else text
        self.turns.append(("user", text))
        chat = self.query_one("#chat", VerticalScroll)
        chat.mount(Static(Text(text.strip()), classes="turn-user"))
        self._answer = Static("", classes="turn-model")
        self._answer_text = ""
        chat.mount(self._answer)
        chat.scroll_end(animate=False)
        self.request_id += 1
        self.generating = True
        self.engine.send(Generate(self.request_id, tuple(self.turns),
                                  sampling=self.sampling, completion=completion))

    def _show_tokens(self, event: Tokens) -> None:
        if event.phase == "generate" and self._answer is not None:
            self._answer_text += "".join(event.texts)
            self._answer.update(Text(self._answer_text))
            self.query_one("#chat", VerticalScroll).scroll_end(animate=False)
        if event.routing is None or self.info is None or self._counts is None:
            return
        r = event.routing
        one_hot = np.zeros((len(r), *self._counts.shape))
        np.put_along_axis(one_hot, r.experts.astype(np.int64), 1.0, axis=-1)
        self._counts += one_hot.sum(axis=0)
        last = np.zeros(self._counts.shape)
        np.put_along_axis(last, r.experts[-1].astype(np.int64), r.weights[-1], axis=-1)
        shares = self._counts / np.maximum(self._counts.sum(axis=1, keepdims=True), 1)
        self.query_one(RoutingHeatmap).show(self.info.moe_layers, last, shares, event.texts[-1])

    def _show_finished(self, event: Finished) -> None:
        self.generating = False
        self.last_finish_reason = event.stats.finish_reason
        self.turns.append(("assistant", event.text))
        self._show_stats(event)

    def _show_stats(self, done: Finished | None = None) -> None:
        info = self.info
        if info is None:
            return
        lines = [f"weights      {_gib(info.weight_bytes)}",
                 f"KV / token   {info.kv_bytes_per_token / 1024:.1f} KiB"]
        if done is not None:
            s = done.stats
            lines += [f"TTFT         {s.ttft_s * 1000:.0f} ms",
                      f"prompt       {s.prompt_tps:.1f} tok/s ({s.prompt_tokens} tokens)",
                      f"decode       {s.generation_tps:.1f} tok/s ({s.generation_tokens} tokens)",
                      f"KV cache     {_gib(s.kv_cache_bytes)}",
                      f"MLX peak     {_gib(s.peak_memory_bytes)}"]
        self.query_one("#stats", Static).update("\n".join(lines))

    # -- actions -----------------------------------------------------------------------------
    def action_stop(self) -> None:
        if self.generating and self.engine is not None:
            self.engine.cancel()
        elif self.focused is self.query_one(Input):
            self.set_focus(None)

    def notice(self, text: str) -> None:
        chat = self.query_one("#chat", VerticalScroll)
        chat.mount(Static(Text(text), classes="notice"))
        chat.scroll_end(animate=False)

    def _set_bar(self, markup: str) -> None:
        self.query_one("#model-bar", Static).update(markup)

    def on_unmount(self) -> None:
        if self.engine is not None:
            self.engine.close()


def run_app(model: str | None) -> int:
    MixtuiApp(model or "nano").run()
    return 0
