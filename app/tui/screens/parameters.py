"""The resource management parameters P1-P4: shown to all, changed by dispatchers."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Label, Select, Static, Switch

from app.db import repositories as repo
from app.db.engine import read_connection
from app.sync import commands as c
from app.tui.messages import DataChanged, DetailLoaded
from app.tui.widgets.panes import TopBar

SWITCHES = [
    ("create_crm_appointments", "P1", "Create CRM appointments for service assignments"),
    ("include_sold_to_contact", "P3", "Include the sold-to contact as appointment participant"),
    ("update_assignments_from_appointment_dates", "P4",
     "Update service assignments with CRM appointment dates (needs P1)"),
]


class ParametersScreen(Screen[None]):
    BINDINGS = [Binding("ctrl+s", "save", "Save", id="save-parameters",
                        tooltip="Save the parameters")]

    def __init__(self) -> None:
        super().__init__()
        self.params: dict[str, Any] | None = None
        self.people: list[dict[str, Any]] = []

    @property
    def dapp(self) -> Any:
        return self.app

    def compose(self) -> ComposeResult:
        yield TopBar("Parameters")
        with Vertical(id="params", classes="pane"):
            for name, code, text in SWITCHES[:1]:
                yield from self._switch(name, code, text)
            with Horizontal(classes="param-row"):
                yield Label(Text("P2", style="bold"), classes="param-code")
                yield Select([], id="param-organizer", prompt="(no organizer)")
                yield Label(Text("CRM appointment organizer (an employee with an e-mail)"),
                            classes="param-text")
            for name, code, text in SWITCHES[1:]:
                yield from self._switch(name, code, text)
            yield Static("", id="param-error", classes="form-error", markup=False)
            yield Static("", id="param-version", markup=False)
            yield Button("Save", id="param-save", variant="primary")
        yield Footer()

    def _switch(self, name: str, code: str, text: str) -> ComposeResult:
        with Horizontal(classes="param-row"):
            yield Label(Text(code, style="bold"), classes="param-code")
            yield Switch(id=f"param-{name}")
            yield Label(Text(text), classes="param-text")

    def on_mount(self) -> None:
        self.query_one("#params").border_title = "Resource management parameters"
        self.dapp.changes.subscribe(self, self.on_data_changed)
        editable = self.dapp.can_edit
        for w in self.query("Switch, Select"):
            w.disabled = not editable
        self.query_one("#param-save").display = editable
        self.load()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "save":
            return self.dapp.can_edit
        return True

    @work(thread=True, exclusive=True, group="params")
    def load(self) -> None:
        with read_connection(self.dapp.engine) as conn:
            params = repo.parameters(conn)
            people = repo.employees(conn)
        self.post_message(DetailLoaded("params", {"params": params, "people": people}))

    def on_detail_loaded(self, msg: DetailLoaded) -> None:
        assert msg.detail is not None
        self.params, self.people = msg.detail["params"], msg.detail["people"]
        p = self.params
        for name, _, _ in SWITCHES:
            self.query_one(f"#param-{name}", Switch).value = bool(p[name])
        sel = self.query_one("#param-organizer", Select)
        sel.set_options([(Text(f"{e['code']} {e['name']}" + ("" if e["email"] else
                                                               "  (no e-mail)")), e["code"])
                         for e in self.people])
        sel.value = p["organizer_code"] if p["organizer_code"] else Select.NULL
        self.query_one("#param-version", Static).update(
            Text(f"version {p['version']}", style="dim"))

    def on_data_changed(self, change: DataChanged) -> None:
        if change.everything or "set_parameters" in change.ops:
            self.load()

    def action_save(self) -> None:
        if self.params is None:
            return
        self.query_one("#param-error", Static).update("")
        org = self.query_one("#param-organizer", Select).value
        values = {name: self.query_one(f"#param-{name}", Switch).value
                  for name, _, _ in SWITCHES}
        self.dapp.execute(c.SetParameters(
            organizer="" if org is Select.NULL else str(org), version=self.params["version"],
            **values), form=self)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_save()

    def show_error(self, field: str | None, message: str) -> None:
        """The app puts a refused save here (this screen is its own form)."""
        self.query_one("#param-error", Static).update(Text(message))
