"""The dispatch board: every assignment, its appointment beside it, every edit a key away."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.binding import Binding

from app.db.models import OrderStatus
from app.sync import commands as c
from app.sync.coordinator import ASSIGNMENT_FLOW, FINAL_ORDER
from app.tui.format import when
from app.tui.screens.base import GridScreen
from app.tui.screens.forms import (
    Field,
    FieldError,
    FormScreen,
    FormSpec,
    int_field,
    required,
    when_field,
)
from app.tui.widgets.grid import GridSource
from app.tui.widgets.panes import DetailPanes
from app.tui.widgets.sources import AssignmentSource


class BoardScreen(GridScreen):
    NAME = "Board"

    BINDINGS = [
        Binding("n", "new", "New", id="new", tooltip="New assignment"),
        Binding("m", "move", "Move", id="move", tooltip="Move (planned dates)"),
        Binding("r", "reassign", "Reassign", id="reassign", tooltip="Another engineer"),
        Binding("s", "status", "Status", id="status", tooltip="Change the status"),
        Binding("delete,x", "delete", "Delete", id="delete", tooltip="Delete the assignment"),
        Binding("g", "generate", "Generate", id="generate",
                tooltip="Generate the assignments of the order"),
        Binding("o", "order", "Order", id="order", tooltip="Open the order"),
    ]

    def make_source(self) -> GridSource:
        return AssignmentSource(self.dapp.tz)

    # ---- helpers ------------------------------------------------------------------------

    def _need_row(self) -> dict[str, Any] | None:
        row = self.current
        if row is None:
            self.notify("No assignment selected.", severity="warning")
        return row

    def engineer_options(self) -> list[tuple[str, str]]:
        return [(f"{e['code']} {e['name']}", e["code"]) for e in self.dapp.engineers]

    def form(self, spec: FormSpec, build: Any) -> None:
        self.app.push_screen(FormScreen(spec, build))

    # ---- actions ------------------------------------------------------------------------

    def action_new(self) -> None:
        row = self.current
        tz = self.dapp.tz

        def build(v: dict[str, str]) -> c.Command:
            return c.CreateAssignment(
                required(v, "order"), int_field(v, "line"), required(v, "engineer"),
                when_field(v, "planned_start", tz, optional=True),
                when_field(v, "planned_end", tz, optional=True))

        self.form(FormSpec("New assignment", [
            Field("order", "Order", row["order"] if row else "", aliases=("order",)),
            Field("line", "Activity line", str(row["line"]) if row else "10"),
            Field("engineer", "Engineer", "", self.engineer_options()),
            Field("planned_start", "Planned start (empty: the activity's)", "",
                  placeholder="2026-12-07 08:00"),
            Field("planned_end", "Planned end (empty: the activity's)", "",
                  placeholder="2026-12-07 10:00"),
        ], note=f"Dates in {tz}. With P1 on, its appointment is created too (R1)."), build)

    def action_move(self) -> None:
        row = self._need_row()
        if row is None:
            return
        tz = self.dapp.tz

        def build(v: dict[str, str]) -> c.Command:
            start = when_field(v, "planned_start", tz)
            end = when_field(v, "planned_end", tz)
            if end <= start:
                raise FieldError("planned_end", "planned end must be after the start")
            return c.MoveAssignment(row["order"], row["line"], row["assignment"], start, end,
                                    version=row["version"])

        self.form(FormSpec(f"Move {row['key']}", [
            Field("planned_start", "Planned start", when(row["planned_start"], tz)),
            Field("planned_end", "Planned end", when(row["planned_end"], tz)),
        ], note=f"Dates in {tz}. The appointment's dates follow (R10)."), build)

    def action_reassign(self) -> None:
        row = self._need_row()
        if row is None:
            return

        def build(v: dict[str, str]) -> c.Command:
            return c.Reassign(row["order"], row["line"], row["assignment"],
                              required(v, "engineer"), version=row["version"])

        self.form(FormSpec(f"Reassign {row['key']}", [
            Field("engineer", "Engineer", row["engineer"], self.engineer_options()),
        ], note=f"Now {row['engineer']} {row['engineer_name']}. The participants of this "
                "appointment and of its siblings follow (R11)."), build)

    def action_status(self) -> None:
        row = self._need_row()
        if row is None:
            return
        steps = sorted(ASSIGNMENT_FLOW.get(row["status"], ()))

        def build(v: dict[str, str]) -> c.Command:
            return c.SetAssignmentStatus(row["order"], row["line"], row["assignment"],
                                         required(v, "status"), version=row["version"])

        self.form(FormSpec(f"Status of {row['key']}", [
            Field("status", "New status", steps[0] if steps else "",
                  [(s, s) for s in steps]),
        ], note=f"Now {row['status']}. Completed sets the appointment to Held (R13)."), build)

    def action_delete(self) -> None:
        row = self._need_row()
        if row is None:
            return
        note = Text(f"Delete assignment {row['key']} ({row['engineer']} "
                    f"{row['engineer_name']})?\n")
        if row["appointment_id"] is None:
            note.append("It has no appointment.")
        elif OrderStatus(row["order_status"]) in FINAL_ORDER:
            note.append(f"Order {row['order']} is {row['order_status']}: appointment "
                        f"{row['appointment_id']} stays, as history (R14).", style="bold")
        else:
            note.append(f"Its appointment {row['appointment_id']} is deleted too (R14).",
                        style="bold")

        def build(v: dict[str, str]) -> c.Command:
            return c.DeleteAssignment(row["order"], row["line"], row["assignment"],
                                      version=row["version"])

        self.form(FormSpec(f"Delete {row['key']}", [], note=note, submit="Delete",
                           danger=True), build)

    def action_generate(self) -> None:
        row = self.current

        def build(v: dict[str, str]) -> c.Command:
            return c.GenerateAssignments(required(v, "order"))

        self.form(FormSpec("Generate assignments", [
            Field("order", "Order", row["order"] if row else ""),
        ], note="One assignment for every planned engineer of every activity who has none "
                "yet, each with its appointment (R1).", submit="Generate"), build)

    def action_order(self) -> None:
        from app.tui.screens.order import OrderScreen

        row = self._need_row()
        if row is not None:
            self.app.push_screen(OrderScreen(row["order"]))

    @on(DetailPanes.Jump)
    def _jump(self, event: DetailPanes.Jump) -> None:
        """From a related order on the board: to that appointment in the CRM view."""
        self.app.switch_mode("appointments")
        screen: Any = self.app.screen
        if hasattr(screen, "goto_appointment"):
            screen.goto_appointment(event.appointment_id)
