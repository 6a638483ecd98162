"""The detail panes of one assignment or appointment: Appointment, Participants, References,
Related orders. They are filled from one `assignment_detail`/`appointment_json` dict; every
value goes in as plain `Text`."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from app.tui.format import plain, status, when

LABEL = 10


def _field(out: Text, label: str, value: Text | str, note: str = "") -> None:
    out.append(f"{label:<{LABEL}}", style="bold")
    out.append_text(value if isinstance(value, Text) else plain(value))
    if note:
        out.append(f"  {note}", style="italic dim")
    out.append("\n")


def sync_state(ap: dict[str, Any], assignment: dict[str, Any] | None) -> Text:
    """In step, moved by the organizer (R15), or kept as history (R14)."""
    if not ap["origin"]["mirrors"]:
        return Text("history: its assignment was deleted (R14)", style="italic #f5c542")
    if assignment is None:
        return Text("mirrors " + _origin(ap), style="#5fd068")
    if (ap["start"], ap["end"]) != (assignment["planned_start"].isoformat(),
                                    assignment["planned_end"].isoformat()):
        return Text("in step; dates moved by the organizer (R15)", style="#f5c542")
    return Text("in step with the assignment", style="#5fd068")


def _origin(ap: dict[str, Any]) -> str:
    o = ap["origin"]
    return f"{o['order']}/{o['line']}/{o['assignment']}"


class DetailPanes(VerticalScroll):
    """The four panes; `show()` replaces their content."""

    class Jump(Message):
        """Enter on a related order: go to that assignment or appointment."""

        def __init__(self, link: dict[str, Any], appointment_id: int) -> None:
            super().__init__()
            self.link = link
            self.appointment_id = appointment_id

    def __init__(self, *, crm: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.crm = crm
        self.tz = "UTC"
        self.appointment: dict[str, Any] | None = None
        self._links: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Static(id="pane-appointment", classes="pane", markup=False)
        yield Static(id="pane-participants", classes="pane", markup=False)
        yield Static(id="pane-references", classes="pane", markup=False)
        yield OptionList(id="pane-related", classes="pane")

    def on_mount(self) -> None:
        self.tz = getattr(self.app, "tz", "UTC")
        titles = {"pane-appointment": "Appointment", "pane-participants": "Participants",
                  "pane-references": "References", "pane-related": "Related orders"}
        for wid, title in titles.items():
            self.query_one(f"#{wid}").border_title = title
        self.show(None, None)

    def show(self, appointment: dict[str, Any] | None, assignment: dict[str, Any] | None,
             *, empty: str = "Nothing selected.") -> None:
        self.appointment = appointment
        self.query_one("#pane-appointment", Static).update(
            self._appointment(appointment, assignment, empty))
        self.query_one("#pane-participants", Static).update(self._participants(appointment))
        self.query_one("#pane-references", Static).update(self._references(appointment))
        related = self.query_one("#pane-related", OptionList)
        related.clear_options()
        self._links = list(appointment["related_orders"]) if appointment else []
        if not self._links:
            related.add_option(Option(Text("-", style="dim"), disabled=True))
        for link in self._links:
            where = f"{link['order']}/{link['line']}/{link['assignment']}"
            label = Text(f"{link['kind'].replace('_', ' ')} ", style="dim")
            label.append(where, style="bold" if link["assignment_exists"] else "strike")
            if not link["assignment_exists"]:
                label.append("  (assignment deleted)", style="dim")
            elif self.crm:
                label.append("  Enter: open on the board", style="dim")
            elif appointment is not None:
                label.append(f"  Enter: appointment {appointment['id']}", style="dim")
            related.add_option(Option(label))
        if self._links:
            related.highlighted = 0

    def _appointment(self, ap: dict[str, Any] | None, asg: dict[str, Any] | None,
                     empty: str) -> Text:
        out = Text()
        if ap is None:
            if asg is not None:
                out.append("No appointment: ", style="bold")
                out.append("P1 (create CRM appointments) was off when this assignment was "
                           "created.", style="italic")
            else:
                out.append(empty, style="italic dim")
            return out
        ro = "  (R9: mirrored, change it on the board)" if self.crm and ap["origin"][
            "mirrors"] else ""
        _field(out, "Id", str(ap["id"]), f"version {ap['version']}")
        _field(out, "Subject", ap["subject"])
        _field(out, "Location", ap["location"])
        _field(out, "Status", status(ap["status"]))
        _field(out, "Start", when(_dt(ap["start"]), self.tz))
        _field(out, "End", when(_dt(ap["end"]), self.tz))
        _field(out, "Due date", when(_dt(ap["due_date"]), self.tz), "R8")
        _field(out, "Show as", ap["show_time_as"])
        bp = ap["business_partner"]
        _field(out, "Partner", f"{bp['code']} {bp['name'] or ''}")
        org = ap["organizer"]
        _field(out, "Organizer", f"{org['code']} {org['name'] or ''}")
        _field(out, "Origin", _origin(ap))
        _field(out, "Sync", sync_state(ap, asg))
        if ro:
            out.append(ro.strip() + "\n", style="italic #f5c542")
        out.append("Information\n", style="bold")
        out.append(ap["information"] or "-")
        out.rstrip()
        return out

    def _participants(self, ap: dict[str, Any] | None) -> Text:
        out = Text()
        if ap is None:
            out.append("-", style="dim")
            return out
        short = {"Meeting Organizer": "Organizer", "Required Attendee": "Required",
                 "Optional Attendee": "Optional"}
        for i, p in enumerate(ap["participants"]):
            if i:
                out.append("\n")
            out.append(f"{p['type'][:3]:<4}", style="dim")
            out.append(f"{short.get(p['attendance'], p['attendance']):<9} ", style="bold")
            out.append(f"{p['code']} {p['name']}")
            out.append("\n    ")
            if p["email"]:
                out.append(p["email"], style="#6ea8fe")
            else:
                out.append("not sent (no e-mail: co-engineer, R4)"
                           if p["type"] == "Employee" else "no e-mail", style="italic #f5c542")
        return out

    def _references(self, ap: dict[str, Any] | None) -> Text:
        out = Text()
        if ap is None:
            out.append("-", style="dim")
            return out
        for i, r in enumerate(ap["references"]):
            if i:
                out.append("\n")
            out.append(f"{r['type']:<12}", style="bold")
            out.append(f"{r['sequence']:>3}  ")
            out.append(str(r["note"]))
        return out

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if self.appointment is None or event.option_index >= len(self._links):
            return
        self.post_message(self.Jump(self._links[event.option_index], self.appointment["id"]))


def _dt(value: str | None) -> Any:
    import pendulum

    return pendulum.parse(value) if value else None


class TopBar(Static):
    """The header: where you are, who you are, which database; and the latest outside change."""

    def __init__(self, screen_name: str) -> None:
        super().__init__(markup=False, id="topbar")
        self.screen_name = screen_name

    def on_mount(self) -> None:
        self.refresh_bar()

    def refresh_bar(self) -> None:
        app: Any = self.app
        out = Text()
        out.append(" Dispatch ", style="bold reverse")
        out.append(f" {self.screen_name} ", style="bold")
        out.append(" │ ", style="dim")
        out.append(f"user {app.actor.name}", style="bold")
        out.append(f" ({app.role.value}", style="")
        if app.actor.employee:
            out.append(f", {app.actor.employee}")
        out.append(")")
        if not app.can_edit:
            out.append("  read-only" if app.role.value == "supervisor" else "  own assignments",
                       style="italic #f5c542")
        out.append(" │ ", style="dim")
        out.append(f"db {app.db_label}")
        out.append(" │ ", style="dim")
        out.append(app.tz, style="dim")
        self.update(out)
