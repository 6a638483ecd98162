"""An order: its header and its activities with their engineers and assignments.

Saving a header change says how many appointments it touched (R12)."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from app.db import repositories as repo
from app.db.engine import read_connection
from app.sync import commands as c
from app.tui.format import KIND_LABEL, plain, status, until, when
from app.tui.messages import DataChanged, DetailLoaded
from app.tui.screens.forms import Field, FormScreen, FormSpec, when_field
from app.tui.widgets.panes import TopBar


class OrderScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="back"),
        Binding("e", "edit_order", "Edit header", id="edit-order",
                tooltip="Sold-to, ship-to, contact, address, planned dates"),
        Binding("g", "generate", "Generate", id="generate-order",
                tooltip="Generate the missing assignments"),
    ]

    def __init__(self, number: str) -> None:
        super().__init__()
        self.number = number
        self.order: dict[str, Any] | None = None

    @property
    def dapp(self) -> Any:
        return self.app

    def compose(self) -> ComposeResult:
        yield TopBar(f"Order {self.number}")
        with VerticalScroll(id="order-body"):
            yield Static(id="order-header", classes="pane", markup=False)
            yield Static(id="order-activities", classes="pane", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#order-header").border_title = "Header"
        self.query_one("#order-activities").border_title = "Activities"
        self.dapp.changes.subscribe(self, self.on_data_changed)
        self.load()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("edit_order", "generate"):
            return self.dapp.can_edit
        return True

    @work(thread=True, exclusive=True, group="order")
    def load(self) -> None:
        with read_connection(self.dapp.engine) as conn:
            detail = repo.order_detail(conn, self.number)
        self.post_message(DetailLoaded(self.number, detail))

    def on_detail_loaded(self, msg: DetailLoaded) -> None:
        self.order = msg.detail
        self.render_order()

    def on_data_changed(self, change: DataChanged) -> None:
        if change.touches_order(self.number):
            self.load()

    def render_order(self) -> None:
        o, tz = self.order, self.dapp.tz
        head = Text()
        if o is None:
            head.append(f"Order {self.number} does not exist.", style="bold")
            self.query_one("#order-header", Static).update(head)
            return
        rows = [
            ("Order", Text(f"{o['number']}  {KIND_LABEL.get(o['kind'], o['kind'])}")),
            ("Status", status(o["status"])),
            ("Sold-to", plain(f"{o['sold_to']} {o['sold_to_name'] or ''}")),
            ("Ship-to", plain(f"{o['ship_to']} {o['ship_to_name'] or ''}")),
            ("Contact", plain(f"{o['contact'] or '-'} {o['contact_name'] or ''}")),
            ("Address", plain(o["address"])),
            ("Planned", plain(f"{when(o['planned_start'], tz)} - {when(o['planned_end'], tz)}")),
            ("CRM", plain(f"{o['appointments']} appointment(s) of this order; version "
                          f"{o['version']}")),
        ]
        for label, value in rows:
            head.append(f"{label:<9}", style="bold")
            head.append_text(value)
            head.append("\n")
        head.rstrip()
        self.query_one("#order-header", Static).update(head)
        table = Table(box=None, expand=True, show_edge=False, pad_edge=False)
        for col in ("Line", "Description", "Planned", "Engineers", "Assignments"):
            table.add_column(col, no_wrap=col != "Assignments", style="bold" if col == "Line"
                             else None)
        for a in o["activities"]:
            asg = Text()
            for i, x in enumerate(a["assignments"]):
                if i:
                    asg.append("\n")
                asg.append(f"{x['number']} {x['employee_code']} ")
                asg.append_text(status(x["status"]))
                asg.append(f" {when(x['planned_start'], tz)[5:]}-"
                           f"{until(x['planned_start'], x['planned_end'], tz)}", style="dim")
            table.add_row(plain(a["line"]), plain(a["description"]), plain(
                f"{when(a['planned_start'], tz)} - "
                f"{until(a['planned_start'], a['planned_end'], tz)}"),
                plain(", ".join(a["engineers"])), asg or Text("none", style="dim"))
        self.query_one("#order-activities", Static).update(table)

    def action_edit_order(self) -> None:
        o = self.order
        if o is None:
            return
        tz = self.dapp.tz

        def build(v: dict[str, str]) -> c.Command:
            changed: dict[str, Any] = {}
            for name in ("sold_to", "ship_to", "contact", "address"):
                if v[name] != (o[name] or ""):
                    changed[name] = v[name]
            start = when_field(v, "planned_start", tz)
            end = when_field(v, "planned_end", tz)
            if start != o["planned_start"]:
                changed["planned_start"] = start
            if end != o["planned_end"]:
                changed["planned_end"] = end
            return c.UpdateOrder(self.number, version=o["version"], **changed)

        self.app.push_screen(FormScreen(FormSpec(f"Order {self.number}: header", [
            Field("sold_to", "Sold-to business partner", o["sold_to"]),
            Field("ship_to", "Ship-to business partner", o["ship_to"]),
            Field("contact", "Contact", o["contact"] or ""),
            Field("address", "Service address", o["address"]),
            Field("planned_start", "Planned start", when(o["planned_start"], tz)),
            Field("planned_end", "Planned end", when(o["planned_end"], tz)),
        ], note="Every appointment of the order follows (R12); you are told how many."),
            build))

    def action_generate(self) -> None:
        self.app.execute(c.GenerateAssignments(self.number))  # type: ignore[attr-defined]
