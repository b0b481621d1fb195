"""The model picker: every registry model in a table, filtered as one types; Enter switches.

The rows are the catalogue's (`app/catalog.describe`, as `mixtui models` prints them):
key, family, parameters (total / active), size, local state and memory fit. Computing them
for the whole registry takes a few milliseconds (the specs are parsed already), so it is
done on the UI thread when the picker opens. The picker only chooses: the app switches
(the same path as the number keys) and keeps the pins in the settings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label

from mixtui.core.units import gb
from mixtui.tui.widgets.stats import human_count

STATES = {"bundled": "bundled", "complete": "on disk", "partial": "partial", "absent": "absent"}
FITS = {"fits": "fits", "tight": "tight", "does-not-fit": "too big"}
COLUMNS = ("key", "family", "total / active", "size", "state", "fit")
GAP = " "  # after every cell: the table has no padding of its own (80 columns fit it)
PIN = "★"
# the widest the other columns get (family, total / active, size, state, fit, with gaps),
# the number-key mark, the box's borders and the scrollbar: what a key may take of a
# narrow terminal
_OTHER_COLUMNS = 12 + 17 + 8 + 8 + 8 + 3 + 2 + 2  # and the scrollbar


class FilterInput(Input):
    """The picker's filter: every key but "*", which pins (no model key holds a "*")."""

    def check_consume_key(self, key: str, character: str | None) -> bool:
        return character != "*" and super().check_consume_key(key, character)


def matches(row: dict[str, Any], query: str) -> bool:
    """Case-insensitive substring of the row's key, name or family."""
    query = query.strip().lower()
    return not query or any(query in str(row.get(field) or "").lower()
                            for field in ("key", "name", "family"))


class ModelPicker(ModalScreen[str | None]):
    """Pick a model: type to filter, Up/Down to move, Enter to switch, * to pin, Esc to close.

    `rows`: catalogue rows in registry order; `slots`: the model keys on the number keys, in
    order; `toggle_pin(key)` pins or unpins a model and returns the new slots. Dismissed
    with the chosen key, or None.
    """

    BINDINGS = [
        Binding("up", "move(-1)", "Up", show=False, priority=True),
        Binding("down", "move(1)", "Down", show=False, priority=True),
        Binding("pageup", "move(-10)", "Page up", show=False, priority=True),
        Binding("pagedown", "move(10)", "Page down", show=False, priority=True),
        Binding("asterisk", "pin", "Pin / unpin", priority=True),  # FilterInput leaves it
    ]
    DEFAULT_CSS = """
    ModelPicker { align: center middle; }
    ModelPicker > Vertical {
        width: 100%; max-width: 110; height: 90%; max-height: 30;
        border: round $accent; background: $surface; padding: 0 0;
    }
    ModelPicker DataTable { height: 1fr; }
    ModelPicker #picker-keys { color: $text-muted; }
    """

    def __init__(self, rows: list[dict[str, Any]], slots: list[str],
                 toggle_pin: Callable[[str], list[str]], pinned: list[str],
                 active: str | None = None) -> None:
        super().__init__()
        self.rows = rows
        self.slots = list(slots)
        self.pinned = list(pinned)
        self.toggle_pin = toggle_pin
        self.active = active
        self.shown: list[dict[str, Any]] = []
        self.key_room = 40

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "pick a model"
            box.border_subtitle = "Enter switches · * pins / unpins (keys 1–5) · Esc closes"
            yield FilterInput(placeholder="type to filter by key, name or family",
                              id="picker-filter")
            yield DataTable(id="picker-table", cursor_type="row", zebra_stripes=True,
                            cell_padding=0)
            yield Label("", id="picker-keys")

    def on_mount(self) -> None:
        # long keys (granite-3.1-3b-a800m-instruct) end in "…" where the fit would not show
        self.key_room = max(12, min(self.app.size.width, 110) - _OTHER_COLUMNS)
        table = self.query_one(DataTable)
        # the keys come after their number key and pin mark: "1★ nano"
        table.add_columns(*(f"   {c}{GAP}" if i == 0 else c + GAP for i, c in enumerate(COLUMNS)))
        table.can_focus = False  # keys go to the filter; the screen moves the cursor
        self._fill("")
        if self.active is not None:
            self._highlight(self.active)
        self.query_one(Input).focus()

    # -- the table ---------------------------------------------------------------------------
    def _cells(self, row: dict[str, Any]) -> tuple[Text | str, ...]:
        """The row's cells: the key after its number key (if any) and a ★ if pinned."""
        key = row["key"]
        slot = self.slots.index(key) + 1 if key in self.slots else None
        mark = f"{slot if slot else ' '}{PIN if key in self.pinned else ' '} "
        total, active = row.get("total_params"), row.get("active_params")
        params = (f"{human_count(total)} / {human_count(active)}" if total and active else "?")
        size = gb(row["weight_bytes"]) if row.get("weight_bytes") else "?"
        fit = row.get("fit", "")
        fit_text = Text(FITS.get(fit, fit), style={"tight": "yellow",
                                                  "does-not-fit": "bold red"}.get(fit, "green"))
        shown = key if len(key) <= self.key_room else key[:self.key_room - 1] + "…"
        name = Text(f"{mark}{shown}{GAP}", style="bold" if key == self.active else "")
        fit_text.append(GAP)
        family = row.get("family") or ("no family" if row.get("experts") else "dense")
        return (name, family + GAP, params + GAP, size + GAP,
                STATES.get(row.get("state", ""), row.get("state", "")) + GAP, fit_text)

    def _fill(self, query: str) -> None:
        table = self.query_one(DataTable)
        current = self.highlighted
        table.clear()
        self.shown = [row for row in self.rows if matches(row, query)]
        for row in self.shown:
            table.add_row(*self._cells(row), key=row["key"])
        if current is not None:
            self._highlight(current)
        self._say_keys()

    def _highlight(self, key: str) -> None:
        index = next((i for i, row in enumerate(self.shown) if row["key"] == key), None)
        if index is not None:
            self.query_one(DataTable).move_cursor(row=index)

    def _say_keys(self) -> None:
        n = len(self.shown)
        what = f"{n} of {len(self.rows)} models" if n else "no model matches; Esc closes"
        keys = "  ".join(f"{i}: {key}" for i, key in enumerate(self.slots, start=1))
        self.query_one("#picker-keys", Label).update(f"{what} · keys {keys}")

    @property
    def highlighted(self) -> str | None:
        """The key of the highlighted row, or None when no row is shown."""
        table = self.query_one(DataTable)
        if not self.shown or not 0 <= table.cursor_row < len(self.shown):
            return None
        return str(self.shown[table.cursor_row]["key"])

    # -- keys --------------------------------------------------------------------------------
    @on(Input.Changed, "#picker-filter")
    def _filter(self, event: Input.Changed) -> None:
        self._fill(event.value)

    @on(Input.Submitted, "#picker-filter")
    def _choose(self, event: Input.Submitted) -> None:
        event.stop()
        key = self.highlighted
        if key is not None:
            self.dismiss(key)

    @on(DataTable.RowSelected)
    def _clicked(self, event: DataTable.RowSelected) -> None:
        self.dismiss(str(event.row_key.value))

    def action_move(self, step: int) -> None:
        table = self.query_one(DataTable)
        if self.shown:
            table.move_cursor(row=min(max(table.cursor_row + step, 0), len(self.shown) - 1))

    def action_pin(self) -> None:
        key = self.highlighted
        if key is None:
            return
        self.slots = self.toggle_pin(key)
        if key in self.pinned:
            self.pinned.remove(key)
        else:
            self.pinned.append(key)
        table = self.query_one(DataTable)
        for row in self.rows:  # the slot numbers of every row may have moved
            if row["key"] in {r["key"] for r in self.shown}:
                for column, value in zip(table.columns, self._cells(row), strict=True):
                    table.update_cell(row["key"], column, value)
        self._say_keys()
