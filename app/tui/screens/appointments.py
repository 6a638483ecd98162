"""The CRM view: every appointment, with the same panes. Mirrored fields are read-only here."""

from __future__ import annotations

from typing import Any

from textual import on, work

from app.db import repositories as repo
from app.db.engine import read_connection
from app.tui.screens.base import GridScreen
from app.tui.widgets.grid import GridSource, PagedGrid
from app.tui.widgets.panes import DetailPanes
from app.tui.widgets.sources import AppointmentSource


class AppointmentsScreen(GridScreen):
    NAME = "Appointments"
    CRM = True

    def make_source(self) -> GridSource:
        return AppointmentSource(self.dapp.tz)

    def row_detail_key(self, row: dict[str, Any]) -> str:
        return str(row["id"])

    def fetch_detail(self, conn: Any, key: str) -> dict[str, Any] | None:
        ap = repo.appointment_json(conn, int(key))
        if ap is None:
            return None
        asg = None
        if ap["origin"]["mirrors"]:
            o = ap["origin"]
            asg = repo.find_assignment(conn, o["order"], o["line"], o["assignment"])
        return {"appointment": ap, "assignment": asg, "order": ap["origin"]["order"]}

    def show_detail(self, detail: dict[str, Any] | None) -> None:
        panes = self.query_one(DetailPanes)
        if detail is None:
            panes.show(None, None, empty="This appointment is gone.")
        else:
            panes.show(detail["appointment"], detail["assignment"])

    def detail_touched(self, change: Any) -> bool:
        ap = (self.detail or {}).get("appointment") or {}
        origin = ap.get("origin") or {}
        key = f"{origin.get('order')}/{origin.get('line')}/{origin.get('assignment')}"
        return change.touches_appointment(ap.get("id")) or change.touches_assignment(key) \
            or change.touches_order(origin.get("order"))

    @work(thread=True, group="goto")
    def goto_appointment(self, ap_id: int) -> None:
        with read_connection(self.dapp.engine) as conn:
            start = repo.appointment_start(conn, ap_id)
        if start is not None:
            self.app.call_from_thread(self._goto, (start, ap_id))

    def _goto(self, key: Any) -> None:
        grid = self.query_one(PagedGrid)
        if not grid.filter.empty:
            grid.filter = self.base_filter()
            grid.set_filter(grid.filter)
        grid.goto_key(key)
        grid.focus()

    @on(DetailPanes.Jump)
    def _jump(self, event: DetailPanes.Jump) -> None:
        """From a related order in the CRM view: to the assignment on the board."""
        link = event.link
        if not link["assignment_exists"]:
            self.notify("That assignment was deleted; the appointment is history (R14).")
            return
        self.app.switch_mode("board")
        self._goto_assignment(f"{link['order']}/{link['line']}/{link['assignment']}")

    @work(thread=True, group="goto")
    def _goto_assignment(self, key: str) -> None:
        with read_connection(self.dapp.engine) as conn:
            row = repo.assignment_detail(conn, key)
        if row is not None:
            self.app.call_from_thread(self._goto_on_board, (row["planned_start"], row["id"]))

    def _goto_on_board(self, key: Any) -> None:
        board = self.app.screen
        grid = board.query_one(PagedGrid)
        if not grid.filter.empty:
            grid.set_filter(repo.GridFilter())
        grid.goto_key(key)
        grid.focus()
