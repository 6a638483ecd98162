"""My assignments (technicians): their own assignments by day, with Accept, Start, Complete."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.binding import Binding

from app.db.repositories import GridFilter
from app.sync import commands as c
from app.tui.format import local, plain, status
from app.tui.screens.base import GridScreen
from app.tui.widgets.grid import Column, GridSource
from app.tui.widgets.sources import AssignmentSource

NEXT = {"accept": "Accepted", "start": "Started", "complete": "Completed"}


class MyAssignmentSource(AssignmentSource):
    def __init__(self, tz: str) -> None:
        super().__init__(tz)

        def day(r: dict[str, Any]) -> Text:
            v = local(r["planned_start"], self.tz)
            return Text(f"{v:%a %d %b}" if v else "-", style="bold")

        def hours(r: dict[str, Any]) -> Text:
            s, e = local(r["planned_start"], self.tz), local(r["planned_end"], self.tz)
            assert s is not None and e is not None
            days = (e.date() - s.date()).days
            return Text(f"{s:%H:%M}-{e:%H:%M}" + (f" +{days}d" if days else ""))

        self.columns = [
            Column("Day", 10, day), Column("Time", 11, hours),
            Column("Order", 9, lambda r: plain(r["order"])),
            Column("Lin", 3, lambda r: plain(r["line"]), "right"),
            Column("No", 2, lambda r: plain(r["assignment"]), "right"),
            Column("Activity", 0, lambda r: plain(r["description"])),
            Column("Status", 9, lambda r: status(r["status"])),
        ]


class MyAssignmentsScreen(GridScreen):
    NAME = "My assignments"

    BINDINGS = [
        Binding("a", "accept", "Accept", id="accept", tooltip="Accept the assignment"),
        Binding("s", "start", "Start", id="start", tooltip="Start working on it"),
        Binding("c", "complete", "Complete", id="complete", tooltip="Mark it Completed"),
    ]

    def make_source(self) -> GridSource:
        return MyAssignmentSource(self.dapp.tz)

    def base_filter(self) -> GridFilter:
        return GridFilter(engineer=self.dapp.actor.employee or "-")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in NEXT:
            return bool(self.dapp.actor.employee) and self.dapp.role.value in (
                "technician", "dispatcher")
        return super().check_action(action, parameters)

    def _set(self, action: str) -> None:
        row = self.current
        if row is None:
            self.notify("No assignment selected.", severity="warning")
            return
        self.dapp.execute(c.SetAssignmentStatus(row["order"], row["line"], row["assignment"],
                                                NEXT[action], version=row["version"]))

    def action_accept(self) -> None:
        self._set("accept")

    def action_start(self) -> None:
        self._set("start")

    def action_complete(self) -> None:
        self._set("complete")
