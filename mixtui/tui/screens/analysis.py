"""The analysis screen: what the current conversation's routing means, live.

What `mixtui analyze` computes from a trace (`app/analysis/`), on the chat in front of you:
per MoE layer, each expert's share of the top-1 and top-k assignments against the uniform
share, with entropy and imbalance, for the prompt and the answer apart; the Mixtral paper's
Table 5 rates (a token keeps the previous token's top-1 expert; its top-k set shares one with
the previous token's) against their random baselines and the paper's own figures; the
expert-cache hit rate against the cache size (LRU, LFU and the offline optimum) as a chart,
and the decode speed an offloading engine could reach at a bandwidth for the misses, for
this model's expert size or another registry model's with as many experts and as many per
token. A trace file compares with the conversation token by token; ctrl+e exports the report.

The statistics come from `app/analysis/stats.py` on a thread worker (2,000 tokens take a few
hundred ms): the routing arrays are taken on the UI thread (the conversation's store hands
out rows that never change), analysed off it and posted back. While an answer streams the
screen analyses again at most once a second (`REFRESH_S`), one run at a time. The bars, the
chart and the tables are drawn by `widgets/analysis.py`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.events import Resize
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, Label, Select, Static

from mixtui.core.errors import MixtuiError
from mixtui.core.units import gb
from mixtui.tui.screens.dialogs import AskScreen
from mixtui.tui.widgets.analysis import (
    PHASE_NAMES,
    POLICIES,
    SSD_GBPS,
    LoadView,
    agreement_text,
    export_format,
    fmt_tps,
    hit_chart,
    load_text,
    paper_text,
    parse_gbps,
    percent,
    same_experts,
)
from mixtui.tui.wording import say

if TYPE_CHECKING:
    from mixtui.app.analysis.report import Format, Report
    from mixtui.app.analysis.sizes import ExpertSize
    from mixtui.app.analysis.stats import Agreement, Analysis, OffloadPoint, Routing
    from mixtui.app.conversation import Conversation
    from mixtui.core.routing import RoutingBatch
    from mixtui.core.types import ModelInfo
    from mixtui.registry.spec import ModelSpec
    from mixtui.tui.app import MixtuiApp

REFRESH_S = 1.0  # while an answer streams: at most one analysis a second
TICK_S = 0.25  # how often the screen looks for new tokens
NARROW = 110  # below this many columns the panels stand one above the other
PHASES = ("all", "prompt", "generate")
MEAN = "mean"  # the cache layer choice "mean over layers"
DEFAULT_EXPORT = "mixtui-analysis.md"  # in the current folder


# -- the screen --------------------------------------------------------------------------------
class AnalysisScreen(Screen[None]):
    """The routing statistics of the current conversation, updated as tokens arrive."""

    app: MixtuiApp
    BINDINGS = [
        Binding("escape", "leave", "Close"),
        Binding("left_square_bracket", "layer(-1)", "Layer −"),
        Binding("right_square_bracket", "layer(1)", "Layer +"),
        Binding("p", "phase", "Prompt / answer"),
        Binding("ctrl+t", "compare", "Compare trace", priority=True),
        Binding("ctrl+e", "export", "Export", priority=True),
    ]
    DEFAULT_CSS = """
    AnalysisScreen #analysis-body { height: 1fr; }
    AnalysisScreen #analysis-head { height: auto; padding: 0 1; }
    AnalysisScreen #analysis-message { height: auto; padding: 0 1; }
    AnalysisScreen #analysis-message.error { color: $error; }
    AnalysisScreen .row { height: auto; }
    AnalysisScreen #analysis-load { width: 1fr; height: auto; border: round $accent;
                                    padding: 0 1; }
    AnalysisScreen #analysis-load:focus { border: round $primary; }
    AnalysisScreen #analysis-table5 { width: 1fr; height: auto; border: round $secondary;
                                      padding: 0 1; }
    AnalysisScreen #analysis-fields { height: auto; padding: 0 1; margin-top: 1; }
    AnalysisScreen .field { height: 1; }
    AnalysisScreen .field .name { width: 24; }
    AnalysisScreen .field Input { width: 12; }
    AnalysisScreen .field Select { width: 1fr; }
    AnalysisScreen .field .hint { width: 1fr; color: $text-muted; padding-left: 1; }
    AnalysisScreen #analysis-chart { width: 1fr; height: auto; }
    AnalysisScreen #analysis-speed { width: 1fr; height: auto; padding: 0 1; }
    AnalysisScreen #analysis-compare { height: auto; border: round $secondary; padding: 0 1; }
    AnalysisScreen.narrow .row { layout: vertical; }
    AnalysisScreen.narrow .field .name { width: 20; }
    """

    class Analysed(Message):
        """An analysis of the conversation up to `tokens` tokens, or why there is none."""

        def __init__(self, stamp: tuple[int, int], info: ModelInfo, routing: Routing | None,
                     analysis: Analysis | None, error: str | None = None) -> None:
            super().__init__()
            self.stamp = stamp
            self.info = info  # the model the routing is of (another may have loaded since)
            self.routing = routing
            self.analysis = analysis
            self.error = error

    class Compared(Message):
        """The conversation against a trace file: the agreement, or the sentence why not."""

        def __init__(self, path: str, agreement: Agreement | None, error: str | None) -> None:
            super().__init__()
            self.path = path
            self.agreement = agreement
            self.error = error

    def __init__(self) -> None:
        super().__init__()
        self.analysis: Analysis | None = None
        self.routing: Routing | None = None
        self.info: ModelInfo | None = None  # the model of the analysed routing
        self.layer_index = 0  # MoE layer ordinal of the load bars
        self.phase = "all"
        self.cache_layer: int | None = None  # None: the mean over layers
        self.projection: tuple[OffloadPoint, ...] = ()  # LRU, at the bandwidth set
        self.sizes: ExpertSize | None = None  # the expert size it is for
        self.memory_source = ""  # where the prefilled memory bandwidth came from
        self.agreement: Agreement | None = None
        self.compared_with: str | None = None
        self.message_text = ""  # what the message line says (tests read it)
        self.runs = 0  # analyses finished (tests read it)
        self.started_at: list[float] = []  # monotonic start of each analysis (tests read it)
        self._stamp: tuple[int, int] | None = None  # (conversation id, tokens) last analysed
        self._busy = False
        self._started = 0.0  # monotonic time the last analysis started
        self._sizes: dict[str, ModelSpec] = {}  # the models with this one's experts and k
        self._sizes_filled = False  # the model had loaded when they were looked up
        self._expert_sizes: dict[tuple[str, int], ExpertSize | None] = {}
        self._live_shown = False  # whether the head says the answer is streaming

    # -- layout ------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with VerticalScroll(id="analysis-body"):
            yield Static("", id="analysis-head")
            yield Static("", id="analysis-message")
            with Horizontal(classes="row"):
                yield LoadView("", id="analysis-load")
                yield Static("", id="analysis-table5")
            with Vertical(id="analysis-fields"):
                with Horizontal(classes="field"):
                    yield Label("miss bandwidth GB/s", classes="name")
                    yield Input(str(SSD_GBPS), id="analysis-gbps", compact=True)
                    yield Label("a typical NVMe SSD read; set yours", classes="hint")
                with Horizontal(classes="field"):
                    yield Label("memory GB/s", classes="name")
                    yield Input("", id="analysis-memory", compact=True)
                    yield Label("", classes="hint", id="analysis-memory-hint")
                with Horizontal(classes="field"):
                    yield Label("expert size of", classes="name")
                    yield Select[str]([], id="analysis-size", compact=True, allow_blank=True,
                                      prompt="this model")
                with Horizontal(classes="field"):
                    yield Label("cache curve of", classes="name")
                    yield Select[str]([("mean over layers", MEAN)], id="analysis-cache-layer",
                                      value=MEAN, compact=True, allow_blank=False)
            with Horizontal(classes="row"):
                yield Static("", id="analysis-chart")
                yield Static("", id="analysis-speed")
            yield Static("", id="analysis-compare")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#analysis-load").border_title = "load"
        self.query_one("#analysis-table5").border_title = "Table 5: consecutive tokens"
        self.query_one("#analysis-compare").border_title = "compare with a trace"
        self._layout(self.app.size.width)
        self._fill_sizes()
        self._fill_memory()
        self._show_compare()
        self.refresh_analysis()
        self.set_interval(TICK_S, self.refresh_analysis)
        # the bars take ↑ ↓; the head (tokens, live or not) stays in view above them
        self.query_one("#analysis-load").focus(scroll_visible=False)

    def on_resize(self, event: Resize) -> None:
        self._layout(event.size.width)

    def _layout(self, width: int) -> None:
        self.set_class(width < NARROW, "narrow")
        self.call_after_refresh(self._show_cache)  # at the chart's new width

    def say(self, text: str, error: bool = False) -> None:
        """One sentence on the message line (an error in the error colour)."""
        self.message_text = text
        line = self.query_one("#analysis-message", Static)
        line.update(text)
        line.set_class(error, "error")

    # -- what is analysed --------------------------------------------------------------------
    @property
    def conversation(self) -> Conversation:
        return self.app.controller.conversation

    def _model_info(self) -> ModelInfo | None:
        return self.app.controller.info or self.conversation.info

    def refresh_analysis(self) -> None:
        """Analyse again if tokens came since the last analysis (at most once a second, one
        run at a time, off the UI thread)."""
        conversation = self.conversation
        stamp = (id(conversation), len(conversation))
        if self._live_shown != self.app.controller.generating:
            self._show_head()  # the answer has ended (or begun) since the head was drawn
        if stamp == self._stamp or self._busy:
            return
        if time.monotonic() - self._started < REFRESH_S:
            return
        info = self._model_info()
        why = self._nothing_to_analyse(info, conversation)
        if why is not None:
            self._stamp = stamp
            self.analysis = self.routing = None
            self.info = info
            self._show_empty(why)
            return
        batch = conversation.routing()
        assert batch is not None and info is not None  # _nothing_to_analyse said otherwise
        self._busy = True
        self._started = time.monotonic()
        self.started_at.append(self._started)
        self._analyse(stamp, batch, list(conversation.phases), list(conversation.ids), info)

    def _nothing_to_analyse(self, info: ModelInfo | None, conversation: Conversation
                            ) -> str | None:
        if info is None:
            return "The model has not loaded yet; its routing is analysed once it answers."
        if not info.is_moe:
            return (f"{info.name} is a dense model: every token goes through all of its "
                    "parameters, so there is no routing to analyse.")
        if not len(conversation):
            return "No tokens yet: send a prompt, and its routing is analysed as it streams."
        if conversation.routing() is None:
            return ("This conversation has no routing (mixtui --no-routing, or a model of no "
                    "known family): there is nothing to analyse.")
        return None

    @work(thread=True, exit_on_error=False, group="analysis",
          description="analyse the conversation's routing")
    def _analyse(self, stamp: tuple[int, int], batch: RoutingBatch, phases: list[str],
                 ids: list[int], info: ModelInfo) -> None:
        # deferred: the statistics need numpy, which the first frame does without
        import numpy as np

        from mixtui.app.analysis.stats import Routing, analyze  # numpy at its top: as above

        try:
            routing = Routing.from_batch(batch, phases, info.moe_layers, info.num_experts,
                                         scoring=info.scoring, ids=np.asarray(ids))
            analysis = analyze(routing)
        except Exception as exc:  # a bug: said on the screen, the chat goes on
            self.post_message(self.Analysed(stamp, info, None, None, f"The analysis failed: "
                                            f"internal error {exc!r}; please report it."))
        else:
            self.post_message(self.Analysed(stamp, info, routing, analysis))

    @on(Analysed)
    def _analysed(self, message: Analysed) -> None:
        self._busy = False
        self._stamp = message.stamp
        self.runs += 1
        if message.analysis is None:
            self.say(message.error or "The analysis failed.", error=True)
            return
        first = self.analysis is None
        self.analysis, self.routing, self.info = message.analysis, message.routing, message.info
        self.layer_index = min(self.layer_index, len(message.analysis.layers) - 1)
        if first:
            self._fill_cache_layers()
            if not self._sizes_filled:  # opened before the model had loaded
                self._fill_sizes()
        self._show_all()

    # -- the views ---------------------------------------------------------------------------
    def _show_empty(self, why: str) -> None:
        self.query_one("#analysis-head", Static).update(Text(why, style="bold"))
        for ident in ("analysis-load", "analysis-table5", "analysis-chart", "analysis-speed"):
            self.query_one(f"#{ident}", Static).update("")
        self.projection = ()

    def _show_all(self) -> None:
        self._show_head()
        self._show_load()
        self._show_table5()
        self._show_cache()
        self._show_projection()

    def _show_head(self) -> None:
        self._live_shown = self.app.controller.generating
        a, info = self.analysis, self.info
        if a is None or info is None:
            return
        live = " · live: the answer is streaming" if self._live_shown else ""
        text = Text()
        text.append(f"{info.name}", style="bold")
        text.append(f" · {a.tokens} tokens ({a.prompt_tokens} prompt, {a.generated_tokens} "
                    f"generated) · {len(a.layers)} MoE layers · {a.num_experts} experts, "
                    f"{a.top_k} per token{live}\n")
        text.append("[ ] or ↑ ↓ layer · p prompt / answers · ctrl+t compare with a trace · "
                    "ctrl+e export · Esc closes", style="dim")
        self.query_one("#analysis-head", Static).update(text)

    def _show_load(self) -> None:
        a = self.analysis
        if a is None:
            return
        layer = a.layers[self.layer_index]
        view = self.query_one("#analysis-load", LoadView)
        view.border_title = (f"load · layer L{layer.layer} ({self.layer_index + 1} of "
                             f"{len(a.layers)}) · {PHASE_NAMES[self.phase]}")
        load = layer.load.get(self.phase)
        width = (view.size.width or self.app.size.width // 2) - 2
        if load is None or load.tokens == 0:
            view.update(Text(f"No {PHASE_NAMES[self.phase]} tokens yet; p shows another "
                             "phase.", style="dim"))
            return
        text = load_text(load, a.num_experts, width)
        others = [p for p in PHASES if p != self.phase and p != "all"]
        for phase in others:
            other = layer.load.get(phase)
            if other is not None and other.tokens:
                text.append(f"{PHASE_NAMES[phase]}: top-1 entropy "
                            f"{other.top1_entropy_bits:.2f} bits, imbalance "
                            f"{other.top1_imbalance:.2f}× ({other.tokens} tokens)\n",
                            style="dim")
        text.append(f"router entropy {layer.router_entropy_bits:.2f} bits · top-1 weight "
                    f"share {percent(layer.top1_weight_share)}", style="dim")
        view.update(text)

    def _show_table5(self) -> None:
        a = self.analysis
        if a is None:
            return
        text = Text()
        text.append(f"{'layer':<7}{'top-1 repeat':>13}{'top-k share one':>17}\n", style="bold")
        text.append(f"{'random':<7}{percent(a.top1_baseline):>13}"
                    f"{percent(a.topk_baseline):>17}\n", style="dim")
        for i, layer in enumerate(a.layers):
            style = "reverse" if i == self.layer_index else ""
            text.append(f"L{layer.layer:<6}{percent(layer.top1_repeat_rate):>13}"
                        f"{percent(layer.topk_repeat_rate):>17}\n", style=style)
        if len(a.layers) > 1:
            text.append(f"{'mean':<7}{percent(a.top1_repeat_rate):>13}"
                        f"{percent(a.topk_repeat_rate):>17}\n", style="bold")
        chosen = a.layers[self.layer_index]
        phases = [f"{PHASE_NAMES[p]} {percent(chosen.repeat_by_phase[p][0])} / "
                  f"{percent(chosen.repeat_by_phase[p][1])}"
                  for p in ("prompt", "generate") if p in chosen.repeat_by_phase]
        if phases:
            text.append(f"L{chosen.layer} within one phase: " + ", ".join(phases) + "\n",
                        style="dim")
        text.append("\n")
        text.append_text(paper_text(a))
        self.query_one("#analysis-table5", Static).update(text)

    def _show_cache(self) -> None:
        a = self.analysis
        chart = self.query_one("#analysis-chart", Static)
        if a is None:
            return
        width = (chart.size.width or (self.app.size.width
                                      if self.has_class("narrow") else self.app.size.width // 2))
        layer = self.cache_layer
        # plotext's lines come out a little wider than asked: a margin, and never wrapped
        text = Text.from_ansi(hit_chart(a, layer, width - 4), no_wrap=True, overflow="crop")
        text.append("\n")
        for _, marker, name in POLICIES:
            text.append(f" {marker} {name} ")
        text.append("· c: experts cached per layer", style="dim")
        chart.update(text)

    def _show_projection(self) -> None:
        a = self.analysis
        speed = self.query_one("#analysis-speed", Static)
        if a is None:
            return
        try:
            cache_gbps = parse_gbps(self.query_one("#analysis-gbps", Input).value,
                                    "miss bandwidth", blank_ok=False)
            memory_gbps = parse_gbps(self.query_one("#analysis-memory", Input).value,
                                     "memory GB/s", blank_ok=True)
        except ValueError as exc:
            self.projection = ()
            speed.update(Text(str(exc), style="red"))
            return
        spec = self._size_spec()
        if spec is None:
            self.projection = ()
            speed.update(Text("This model is not in the registry, so its expert size is not "
                              "known; pick a model with the same experts under “expert size "
                              "of”.", style="dim"))
            return
        # deferred with the statistics: numpy
        from mixtui.app.analysis.stats import offload

        sizes = self._expert_size(spec, a.top_k)
        if sizes is None:
            self.sizes, self.projection = None, ()
            speed.update(Text(f"{spec.name} is not a mixture-of-experts model of a family "
                              "mixtui knows, so its expert size is not known; pick a model "
                              "under “expert size of”.", style="red"))
            return
        size, layers = sizes.expert_bytes, sizes.moe_layers
        resident = sizes.resident_bytes_per_token
        points = offload(a, size, layers, resident, memory_gbps, cache_gbps, policy="lru")
        best = offload(a, size, layers, resident, memory_gbps, cache_gbps, policy="optimal")
        self.sizes, self.projection = sizes, points
        text = Text()
        text.append(f"offloading {sizes.name}: {gb(size)} per expert, {layers} MoE "
                    f"layers, misses at {cache_gbps:g} GB/s"
                    + (f", the rest at {memory_gbps:g} GB/s" if memory_gbps else "") + "\n",
                    style="bold")
        text.append(f"{'c':>4}{'LRU hit':>9}{'MB/token':>10}{'tok/s':>8}{'optimal':>9}\n",
                    style="bold")
        for p, q in zip(points, best, strict=True):
            text.append(f"{p.capacity:>4}{percent(p.hit_rate):>9}"
                        f"{p.miss_bytes_per_token / 1e6:>10.1f}{fmt_tps(p.tokens_per_s):>8}"
                        f"{fmt_tps(q.tokens_per_s):>9}\n")
        text.append("tok/s: decode speed an offloading engine could reach on this "
                    "conversation, c experts per layer kept in memory", style="dim")
        speed.update(text)

    def _expert_size(self, spec: ModelSpec, k: int) -> ExpertSize | None:
        """The model's expert size at k (None: it has none), worked out once: the
        projection is drawn again with every keystroke in the bandwidth fields."""
        key = (spec.key, k)
        if key not in self._expert_sizes:
            # deferred with the statistics: the inventory's arithmetic comes with them
            from mixtui.app.analysis.sizes import expert_size

            try:
                self._expert_sizes[key] = expert_size(spec, k=k)
            except MixtuiError:  # its sentence names the command line's option: said here
                self._expert_sizes[key] = None
        return self._expert_sizes[key]

    def _size_spec(self) -> ModelSpec | None:
        choice = self.query_one("#analysis-size", Select).value
        if isinstance(choice, str) and choice in self._sizes:
            return self._sizes[choice]
        return self.app.main.spec

    def _fill_sizes(self) -> None:
        info = self._model_info()
        select = self.query_one("#analysis-size", Select)
        if info is None or not info.is_moe:
            return
        spec = self.app.main.spec
        try:
            registry = self.app.main.registry()
        except MixtuiError as exc:
            self.say(say(exc), error=True)
            return
        self._sizes = {s.key: s for s in same_experts(registry, info)
                       if spec is None or s.key != spec.key}
        self._sizes_filled = True
        select.set_options([(s.name, s.key) for s in self._sizes.values()])
        select.prompt = spec.name if spec is not None else "this model"

    @work(thread=True, exit_on_error=False, group="analysis-memory",
          description="look up this machine's memory bandwidth")
    def _fill_memory(self) -> None:
        """The memory bandwidth, where one is known: `mixtui bench`'s kept probe, or the
        chip's published figure (nothing is measured; reading the machine's facts takes a
        tenth of a second, off the UI thread)."""
        from mixtui.app.analysis.sizes import default_memory_gbps  # deferred with the stats

        try:
            gbps, source = default_memory_gbps()
        except Exception as exc:  # a bug: the field stays blank, and says why
            gbps, source = None, f"not known (internal error {exc!r})"
        self.post_message(self.MemoryKnown(gbps, source))

    class MemoryKnown(Message):
        """This machine's memory bandwidth (None: not known) and where the figure is from."""

        def __init__(self, gbps: float | None, source: str) -> None:
            super().__init__()
            self.gbps = gbps
            self.source = source

    @on(MemoryKnown)
    def _memory_known(self, message: MemoryKnown) -> None:
        hint = self.query_one("#analysis-memory-hint", Label)
        field = self.query_one("#analysis-memory", Input)
        if message.gbps is None or field.value.strip():  # what the user typed stays
            hint.update("blank: the misses' time alone")
            return
        self.memory_source = message.source
        field.value = f"{message.gbps:.0f}"
        hint.update(message.source)

    def _fill_cache_layers(self) -> None:
        a = self.analysis
        if a is None:
            return
        select = self.query_one("#analysis-cache-layer", Select)
        select.set_options([("mean over layers", MEAN)]
                           + [(f"layer L{layer.layer}", str(i))
                              for i, layer in enumerate(a.layers)])
        select.value = MEAN

    # -- keys and fields ---------------------------------------------------------------------
    def action_layer(self, step: int) -> None:
        a = self.analysis
        if a is None:
            return
        self.layer_index = (self.layer_index + step) % len(a.layers)
        self._show_load()
        self._show_table5()

    def action_phase(self) -> None:
        self.phase = PHASES[(PHASES.index(self.phase) + 1) % len(PHASES)]
        self._show_load()

    def action_leave(self) -> None:
        self.dismiss(None)

    @on(Input.Changed, "#analysis-gbps, #analysis-memory")
    def _bandwidth_changed(self) -> None:
        self._show_projection()

    @on(Select.Changed, "#analysis-size")
    def _size_changed(self) -> None:
        self._show_projection()

    @on(Select.Changed, "#analysis-cache-layer")
    def _cache_layer_changed(self, event: Select.Changed) -> None:
        value = event.value
        self.cache_layer = int(value) if isinstance(value, str) and value != MEAN else None
        self._show_cache()

    # -- compare with a trace ----------------------------------------------------------------
    def action_compare(self) -> None:
        if self.routing is None:
            self.say("Nothing to compare yet: the conversation needs routing first.")
            return

        def done(path: str | None) -> None:
            if path and path.strip():
                self.compare(path.strip())

        self.app.push_screen(AskScreen("compare with a trace",
                                       "A trace file written by mixtui (JSON Lines): the "
                                       "same text, another k or model of the same experts",
                                       self.compared_with or "", None), done)

    def compare(self, path: str) -> None:
        """Read the trace at `path` off the UI thread and compare it with the conversation."""
        routing = self.routing
        if routing is None:
            return
        self.say(f"Reading {path}…")
        self._compare(path, routing)

    @work(thread=True, exit_on_error=False, group="analysis-compare",
          description="read a trace file and compare its routing with the conversation's")
    def _compare(self, path: str, routing: Routing) -> None:
        # deferred: the statistics need numpy
        from mixtui.app.analysis.stats import agreement
        from mixtui.app.analysis.tracefile import read_routing

        try:
            other = read_routing(Path(path).expanduser())
            result = agreement(routing, other.routing)
        except MixtuiError as exc:
            self.post_message(self.Compared(path, None, say(exc)))
        except ValueError as exc:  # agreement's refusal: one sentence
            self.post_message(self.Compared(path, None, str(exc)))
        except OSError as exc:
            self.post_message(self.Compared(path, None, f"{path} cannot be read "
                                            f"({exc.strerror or exc}); give the path of a "
                                            "trace file."))
        except Exception as exc:  # a bug: said, the screen goes on
            self.post_message(self.Compared(path, None, f"The compare failed: internal error "
                                            f"{exc!r}; please report it."))
        else:
            self.post_message(self.Compared(path, result, None))

    @on(Compared)
    def _compared(self, message: Compared) -> None:
        if message.agreement is None:
            self.say(f"Not compared: {message.error}", error=True)
            return
        self.agreement, self.compared_with = message.agreement, message.path
        self.say(f"Compared with {message.path}.")
        self._show_compare()

    def _show_compare(self) -> None:
        box = self.query_one("#analysis-compare", Static)
        agree = self.agreement
        if agree is None:
            box.update(Text("ctrl+t: a trace of the same text (another experts-per-token "
                            "setting, or base against instruct) — the share of tokens whose "
                            "top-1 and top-k experts agree, per layer.", style="dim"))
            return
        box.update(agreement_text(agree, self.compared_with or ""))

    # -- export ------------------------------------------------------------------------------
    def action_export(self) -> None:
        if self.analysis is None:
            self.say("Nothing to export yet: the conversation needs routing first.")
            return

        def check(text: str) -> str | None:
            if export_format(text) is None:
                return "End the file name in .md (Markdown) or .json (.txt: the text table)."
            return None

        def done(path: str | None) -> None:
            if path and path.strip():
                self.export(path.strip())

        self.app.push_screen(AskScreen("export the analysis", "File: .md (Markdown) or .json",
                                       DEFAULT_EXPORT, check), done)

    def export(self, path: str) -> None:
        """Write the report to `path` in the format its suffix names, off the UI thread."""
        fmt = export_format(path)
        assert fmt is not None
        report = self.report()
        where = Path(path).expanduser().absolute()
        self.say(f"Writing {where}…")
        self._export(report, fmt, where)

    def report(self) -> Report:
        """What the export writes: the analysis of every layer, the projection at the
        screen's bandwidths onto the expert size chosen, and the compare."""
        from mixtui.app.analysis.report import build_report  # deferred with the statistics

        assert self.analysis is not None
        try:
            cache_gbps = parse_gbps(self.query_one("#analysis-gbps", Input).value,
                                    "miss bandwidth", blank_ok=False)
            memory_gbps = parse_gbps(self.query_one("#analysis-memory", Input).value,
                                     "memory GB/s", blank_ok=True)
        except ValueError:  # said beside the fields; the report goes without the speeds
            cache_gbps = memory_gbps = None
        info = self.info
        return build_report(self.analysis, info.name if info else "", "the conversation in "
                            "the mixtui TUI", scoring=info.scoring if info else "softmax",
                            sizes=self.sizes, memory_gbps=memory_gbps,
                            memory_source=self.memory_source if memory_gbps else "",
                            cache_gbps=cache_gbps, agreement=self.agreement,
                            compare_source=self.compared_with or "")

    @work(thread=True, exit_on_error=False, group="analysis-export",
          description="write the analysis report")
    def _export(self, report: Report, fmt: Format, where: Path) -> None:
        from mixtui.app.analysis.report import render  # deferred with the statistics
        from mixtui.core.files import atomic_write_text

        try:
            atomic_write_text(where, render(report, fmt))
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            self.post_message(self.Exported(None, f"Not exported: {where} cannot be written "
                                                  f"({why}); give a path in a folder you can "
                                                  "write to."))
        except Exception as exc:  # a bug: said, the screen goes on
            self.post_message(self.Exported(None, f"Not exported: internal error {exc!r}; "
                                                  "please report it."))
        else:
            self.post_message(self.Exported(where, None))

    class Exported(Message):
        """The report is written (its path), or the sentence why not."""

        def __init__(self, path: Path | None, error: str | None) -> None:
            super().__init__()
            self.path = path
            self.error = error

    @on(Exported)
    def _exported(self, message: Exported) -> None:
        if message.path is None:
            self.say(message.error or "Not exported.", error=True)
        else:
            self.say(f"Exported the analysis to {message.path}.")


__all__ = ["AnalysisScreen"]
