"""Speed and memory: the loaded model, the last answer (live while it runs), the system.

Every figure has a fixed row and starts at the same column, whether it is known yet or not
("—"), so that the panel does not jump as figures arrive and snapshot tests can mask the
ones that change by position. The system figures (the engine process's memory, the
machine's memory and swap) are read with psutil once a second; a process that is gone, or
that may not be read, shows "—".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Static

from mixtui.core.types import ModelInfo, Stats

if TYPE_CHECKING:
    import psutil
else:  # psutil loads when a figure is first read (core/lazy.py)
    from mixtui.core.lazy import psutil

LABEL_WIDTH = 10  # values start at this column
UNKNOWN = "—"
SPARK = "▁▂▃▄▅▆▇█"
MAX_SAMPLES = 4096  # decode-speed samples kept for the sparkline (about 3 min at 20 Hz)

LABEL = Style(dim=True)
HEADING = Style(bold=True)
VALUE = Style()
SPEED = Style(color="#5fd75f")


def human_bytes(n: int | float | None) -> str:
    """1023 B, 1.5 KiB, 12.3 MiB, 1.25 GiB; "—" for None."""
    if n is None:
        return UNKNOWN
    value = float(n)
    if abs(value) < 1024:
        return f"{int(value)} B"
    for unit, decimals in (("KiB", 1), ("MiB", 1), ("GiB", 2)):
        value /= 1024
        if abs(value) < 1024:
            return f"{value:.{decimals}f} {unit}"
    return f"{value / 1024:.2f} TiB"


def human_count(n: int) -> str:
    """Parameter counts: 950, 1.5 K, 3.9 M, 46.7 B."""
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return str(n)


def human_speed(tokens_per_second: float | None) -> str:
    return UNKNOWN if tokens_per_second is None else f"{tokens_per_second:,.1f} tok/s"


def sparkline(values: list[float], width: int) -> str:
    """Block characters, one per cell, scaled from 0 to the largest value; binned to fit."""
    if not values or width <= 0:
        return ""
    if len(values) > width:  # means of `width` equal runs, so the whole answer fits
        step = len(values) / width
        values = [sum(run) / len(run) for run in
                  (values[int(i * step):max(int((i + 1) * step), int(i * step) + 1)]
                   for i in range(width))]
    top = max(values)
    if top <= 0:
        return SPARK[0] * len(values)
    last = len(SPARK) - 1
    return "".join(SPARK[min(max(round(v / top * last), 0), last)] for v in values)


def _rows(title: str, rows: list[tuple[str, str]], value_style: Style = VALUE) -> Text:
    text = Text()
    text.append(title, HEADING)
    for label, value in rows:
        text.append("\n")
        text.append(label.ljust(LABEL_WIDTH), LABEL)
        text.append(value, value_style)
    return text


MASK = "▒▒▒▒"  # stands for a figure hidden from snapshot tests


class StatsPanel(Widget):
    """The model's size, the last answer's speed and memory, and the system's memory.

    `set_model` when a model is ready, `set_live` while it answers (about 20 Hz; also feeds
    the decode-speed sparkline), `set_finished` with the answer's statistics,
    `set_engine_pid` when the engine process starts or ends. Pass `system_interval=None`
    to read the system figures only on `refresh_system()` (tests, snapshots).
    """

    DEFAULT_CSS = """
    StatsPanel {
        height: auto;
    }
    StatsPanel > Static {
        height: auto;
        text-wrap: nowrap;  /* one line per figure, always: a long value is cut, not wrapped */
        text-overflow: ellipsis;
    }
    StatsPanel > .stats-answer, StatsPanel > .stats-system {
        margin-top: 1;
    }
    """

    def __init__(self, *, system_interval: float | None = 1.0, masked: bool = False,
                 name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        """`masked`: show MASK instead of every figure that depends on the machine or on
        timing (device, speeds, memory), for snapshot tests."""
        super().__init__(name=name, id=id, classes=classes)
        self.system_interval = system_interval
        self.masked = masked
        self._info: ModelInfo | None = None
        self._stats: Stats | None = None
        self._running = False
        self._generated: int | None = None
        self._decode_tps: float | None = None
        self._speeds: list[float] = []
        self._pid: int | None = None
        self._process: psutil.Process | None = None
        self._model = Static(classes="stats-model")
        self._answer = Static(classes="stats-answer")
        self._system = Static(classes="stats-system")

    def compose(self) -> ComposeResult:
        yield self._model
        yield self._answer
        yield self._system

    def on_mount(self) -> None:
        self._show_model()
        self._show_answer()
        # Read first by `set_engine_pid` or the interval, after the first frame: that frame
        # does not wait for psutil.
        self._system.update(_rows("system", [(label, MASK if self.masked else UNKNOWN)
                                             for label in ("engine", "memory", "swap")]))
        if self.system_interval:
            self.set_interval(self.system_interval, self.refresh_system)

    def on_resize(self) -> None:
        self._show_answer()  # the sparkline fits the width

    # -- public API -------------------------------------------------------------------------
    def set_model(self, info: ModelInfo | None) -> None:
        """The loaded model (None: none loaded); forgets the last answer's figures."""
        self._info = info
        self._stats, self._running, self._generated, self._decode_tps = None, False, None, None
        self._speeds = []
        self._show_model()
        self._show_answer()

    def set_live(self, generated_tokens: int, decode_tps: float | None) -> None:
        """While answering: tokens generated so far and the decode speed now (None: not yet)."""
        if not self._running:  # a new answer: the last one's figures no longer apply
            self._running, self._stats, self._speeds = True, None, []
        self._generated, self._decode_tps = generated_tokens, decode_tps
        if decode_tps is not None:
            self._speeds.append(decode_tps)
            del self._speeds[:-MAX_SAMPLES]
        # The same lines every time: a repaint without a new layout (this runs at ~20 Hz).
        self._show_answer(layout=False)

    def set_finished(self, stats: Stats) -> None:
        """The answer's statistics, from the engine's Finished event."""
        self._running, self._stats = False, stats
        self._generated, self._decode_tps = stats.generation_tokens, stats.generation_tps
        self._show_answer()

    def set_engine_pid(self, pid: int | None) -> None:
        """The engine process whose memory is shown (None: no engine)."""
        if pid != self._pid:
            self._pid, self._process = pid, None
        self.refresh_system()

    def refresh_system(self) -> None:
        """Read the system figures now (also done every `system_interval` seconds)."""
        self._show_system(layout=False)

    def _show_system(self, layout: bool) -> None:
        rows = [("engine", self._engine_memory()), *self._machine_memory()]
        if self.masked:
            rows = [(label, MASK) for label, _ in rows]
        self._system.update(_rows("system", rows), layout=layout)

    # -- sections ---------------------------------------------------------------------------
    def _show_model(self) -> None:
        info = self._info
        if info is None:
            rows = [(label, UNKNOWN) for label in
                    ("name", "device", "params", "experts", "weights", "context")]
        else:
            extra: list[tuple[str, str]] = []
            if info.is_moe:
                params = (f"{human_count(info.active_params)} active of "
                          f"{human_count(info.total_params)}")
                dense = info.num_layers - len(info.moe_layers)
                if dense or info.shared_experts or info.scoring == "sigmoid":
                    # today's families: the layout gets a row of its own
                    experts = (f"{info.top_k} of {info.num_experts}/token, "
                               f"{info.shared_experts} shared" if info.shared_experts
                               else f"{info.top_k} of {info.num_experts} per token")
                    layers = f"{len(info.moe_layers)} MoE" + (f", {dense} dense" if dense else "")
                    extra.append(("layers", layers + (", sigmoid" if info.scoring == "sigmoid"
                                                      else "")))
                else:
                    experts = (f"{info.top_k} of {info.num_experts} per token, "
                               f"{len(info.moe_layers)} layers")
            else:
                params, experts = f"{human_count(info.total_params)} (all active)", "none (dense)"
            context = (f"{info.max_kv_size:,} tokens" if info.max_kv_size
                       else "unbounded")
            device = MASK if self.masked else info.device or UNKNOWN
            rows = [("name", info.name), ("device", device),
                    ("params", params), ("experts", experts), *extra,
                    ("weights", human_bytes(info.weight_bytes)),
                    ("context", f"{context}, {human_bytes(info.kv_bytes_per_token)}/token")]
        self._model.update(_rows("model", rows))

    def _show_answer(self, layout: bool = True) -> None:
        s = self._stats
        if self._running:
            status = "generating"
        elif s is not None:
            status = f"done ({s.finish_reason})"
        else:
            status = UNKNOWN
        if s is not None:
            tokens = (f"{s.prompt_tokens:,} in ({s.cached_tokens:,} cached), "
                      f"{s.generation_tokens:,} out")
        elif self._generated is not None:
            tokens = f"{self._generated:,} out"
        else:
            tokens = UNKNOWN
        width = max((self.size.width or 44) - LABEL_WIDTH, 1)
        figures = [
            ("TTFT", UNKNOWN if s is None else f"{s.ttft_s * 1000:,.0f} ms"),
            ("prompt", human_speed(None if s is None else s.prompt_tps)),
            ("decode", human_speed(self._decode_tps)),
            ("KV cache", human_bytes(None if s is None else s.kv_cache_bytes)),
            ("MLX peak", human_bytes(None if s is None else s.peak_memory_bytes)),
        ]
        if self.masked:
            figures = [(label, MASK) for label, _ in figures]
        text = _rows("last answer", [("status", status), ("tokens", tokens), *figures])
        text.append("\n")
        text.append("speed".ljust(LABEL_WIDTH), LABEL)
        text.append(MASK if self.masked else sparkline(self._speeds, width) or UNKNOWN, SPEED)
        self._answer.update(text, layout=layout)

    def _engine_memory(self) -> str:
        if self._pid is None:
            return UNKNOWN
        try:
            if self._process is None:
                self._process = psutil.Process(self._pid)
            return f"{human_bytes(self._process.memory_info().rss)} RSS"
        except (psutil.Error, OSError):  # gone, a zombie, or not ours to read
            self._process = None
            return UNKNOWN

    def _machine_memory(self) -> list[tuple[str, str]]:
        try:
            memory = psutil.virtual_memory()
            used = (f"{human_bytes(memory.used)} / {human_bytes(memory.total)} "
                    f"({memory.percent:.0f} %)")
        except (psutil.Error, OSError):
            used = UNKNOWN
        try:
            swap = psutil.swap_memory()
            swapped = f"{human_bytes(swap.used)} / {human_bytes(swap.total)}"
        except (psutil.Error, OSError):
            swapped = UNKNOWN
        return [("memory", used), ("swap", swapped)]
