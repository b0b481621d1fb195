"""Modal screens: the key help, a one-line question, and the sampling settings."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from mixtui.core.errors import MixtuiError
from mixtui.core.types import Sampling

# Every key of the main screen, as the help screen lists them (the bindings live in app.py).
KEYS: tuple[tuple[str, str], ...] = (
    ("Enter", "send the prompt; outside the input: back to the input"),
    ("Esc", "stop the answer (the partial answer is kept); when idle: leave the input "
            "so that the single keys below act"),
    ("i", "back to the prompt input"),
    ("1 … 5", "switch model (as in the model bar: pinned models first, then registry "
              "order; a click on it too)"),
    ("m", "pick a model: every model with its size, state and fit; type to filter, Enter "
          "switches, * pins it to the number keys"),
    ("c", "compare models: decode speed, memory and the 300-token wait side by side, on "
          "disk or synthetic (the chat's engine stops for the run and comes back after it)"),
    ("a", "analyze the routing: each layer's expert load, the Mixtral paper's Table 5 "
          "rates, expert-cache hit rates and offloading speed, updated as the answer "
          "streams; compare with a trace (ctrl+t), export (ctrl+e)"),
    ("[  ]", "previous / next MoE layer for the token colours"),
    ("t", "focus the token strip: ← → Home End move the cursor over tokens, and the "
          "heatmap shows that token's routing (a click does the same); ↑ ↓ change the layer"),
    ("e", "expert colouring of the tokens on / off"),
    ("o", "routing over time (each token's top-1 expert at every layer): shows and focuses "
          "it, and hides it when focused; narrow screen: in place of the token strip. "
          "Focused: ← → Home End move the token cursor (shared with the strip), ↑ ↓ PgUp "
          "PgDn the layer; a click picks a cell; colour = id mod 16, character = id ÷ 16, "
          "the id at the cursor below"),
    ("r", "restart the engine after it exited (the conversation stays)"),
    ("?", "this help"),
    ("ctrl+p", "command palette: every action (system prompt, sampling, experts per token, "
               "clear, save / load conversation, export trace, …)"),
    ("ctrl+q", "quit"),
)


class HelpScreen(ModalScreen[None]):
    """Every key of the main screen."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 90%; max-width: 100; height: auto; max-height: 90%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    """

    def compose(self) -> ComposeResult:
        width = max(len(key) for key, _ in KEYS) + 2
        text = Text()
        for key, what in KEYS:
            text.append(key.ljust(width), style="bold")
            text.append(what + "\n")
        with VerticalScroll() as scroll:
            scroll.border_title = "keys"
            scroll.border_subtitle = "Esc closes"
            yield Static(text, id="help-keys")

    def action_dismiss(self, result: None = None) -> None:  # type: ignore[override]
        self.dismiss(None)


class AskScreen(ModalScreen[str | None]):
    """One question, one line of answer. `check` turns the text into an error or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    AskScreen { align: center middle; }
    AskScreen > Vertical {
        width: 90%; max-width: 90; height: auto; border: round $accent;
        background: $surface; padding: 0 1;
    }
    AskScreen .error { color: $error; height: auto; }
    """

    def __init__(self, title: str, prompt: str, value: str = "",
                 check: Callable[[str], str | None] | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.prompt = prompt
        self.value = value
        self.check = check

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self.title_text
            box.border_subtitle = "Enter accepts · Esc cancels"
            yield Label(self.prompt)
            yield Input(value=self.value, id="answer")
            yield Label("", classes="error", id="error")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted, "#answer")
    def _accept(self, event: Input.Submitted) -> None:
        event.stop()
        problem = self.check(event.value) if self.check else None
        if problem:
            self.query_one("#error", Label).update(problem)
            return
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


SAMPLING_FIELDS = (
    ("temperature", "temperature (0 = greedy)"),
    ("top_p", "top-p (0 < p ≤ 1)"),
    ("top_k", "top-k (0 = off)"),
    ("min_p", "min-p (0 = off)"),
    ("seed", "seed (empty = random)"),
    ("max_tokens", "max tokens per answer"),
)


class SamplingScreen(ModalScreen[Sampling | None]):
    """Edit the sampling settings; every field is checked before anything changes."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    SamplingScreen { align: center middle; }
    SamplingScreen > Vertical {
        width: 64; height: auto; border: round $accent; background: $surface; padding: 0 1;
    }
    SamplingScreen Grid { grid-size: 2; grid-columns: 28 1fr; height: auto; grid-rows: 3; }
    SamplingScreen Label { padding: 1 0 0 0; }
    SamplingScreen .error { color: $error; height: auto; padding: 0; }
    SamplingScreen #buttons { height: auto; align-horizontal: right; }
    """

    def __init__(self, current: Sampling,
                 parse: Callable[[dict[str, str], Sampling], Sampling]) -> None:
        super().__init__()
        self.current = current
        self.parse = parse

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "sampling"
            box.border_subtitle = "Enter accepts · Esc cancels"
            with Grid():
                for name, label in SAMPLING_FIELDS:
                    value = getattr(self.current, name)
                    yield Label(label)
                    yield Input("" if value is None else str(value), id=f"f-{name}")
            yield Label("", classes="error", id="error")
            with Grid(id="buttons"):
                yield Button("OK", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#f-temperature", Input).focus()

    def _fields(self) -> dict[str, str]:
        return {name: self.query_one(f"#f-{name}", Input).value for name, _ in SAMPLING_FIELDS}

    def _accept(self) -> None:
        try:
            sampling = self.parse(self._fields(), self.current)
        except MixtuiError as exc:
            self.query_one("#error", Label).update(str(exc))
            return
        self.dismiss(sampling)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._accept()

    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        self._accept()

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
