"""Help (`?`): every key of the screen below and of the app, as allowed for this user."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from app.tui.widgets.grid import PagedGrid

GENERAL = [
    ("ctrl+p", "Command palette: every action by name"),
    ("tab / shift+tab", "Next / previous pane"),
    ("enter", "On a related order: jump to the linked assignment or appointment"),
    ("mouse", "Click a row to select it, scroll with the wheel, click buttons"),
]


def key_label(app: Any, key: str) -> str:
    return ", ".join(app.get_key_display(Binding(k, "")) for k in key.split(","))


def all_bindings(cls: type) -> list[Any]:
    """A class's own bindings first, then those it inherits (as Textual merges them)."""
    out: list[Any] = []
    for klass in cls.__mro__:
        if klass.__module__.startswith("app."):
            out += list(klass.__dict__.get("BINDINGS", []))
    return out


def bindings_of(screen: Screen[Any]) -> list[tuple[str, str, str]]:
    """(keys, description, tooltip) of every binding the user may use on this screen."""
    app: Any = screen.app
    out: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    sources: list[tuple[Any, list[Any]]] = [(screen, all_bindings(type(screen)))]
    grids = list(screen.query(PagedGrid))
    if grids:
        sources.append((grids[0], all_bindings(PagedGrid)))
    sources.append((app, all_bindings(type(app))))
    for owner, bindings in sources:
        for b in bindings:
            if not isinstance(b, Binding) or not b.description:
                continue
            action, _, rest = b.action.partition("(")
            params: tuple[object, ...] = ()
            if rest:
                params = tuple(p.strip().strip("'\"") for p in rest.rstrip(")").split(","))
            name = action.split(".")[-1]
            if owner.check_action(name, params) is False:
                continue
            if (b.key, b.description) in seen:
                continue
            seen.add((b.key, b.description))  # type: ignore[arg-type]
            out.append((key_label(app, b.key), b.description, b.tooltip or ""))
    return out


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close", id="help-close")]

    def __init__(self, below: Screen[Any]) -> None:
        super().__init__(classes="form")
        self.below = below
        self.rows = bindings_of(below) + [(k, w, "") for k, w in GENERAL]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog", classes="-help"):
            yield Static(self._table(), markup=False)

    def on_mount(self) -> None:
        self.query_one("#dialog").border_title = "Keys"

    def _table(self) -> Table:
        table = Table(box=None, expand=True, show_header=False, pad_edge=False)
        table.add_column("key", style="bold", no_wrap=True, width=18)
        table.add_column("what")
        for keys, what, tip in self.rows[:-len(GENERAL)]:
            table.add_row(Text(keys), Text.assemble(Text(what), Text(
                f"  {tip}" if tip and tip != what else "", style="dim")))
        table.add_row(Text(""), Text(""))
        for keys, what in GENERAL:
            table.add_row(Text(keys), Text(what, style="dim"))
        return table
