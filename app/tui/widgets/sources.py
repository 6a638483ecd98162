"""The two kinds of grid rows: assignments (the board) and appointments (the CRM view)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from sqlalchemy import Connection

from app.db import repositories as repo
from app.db.repositories import GridFilter
from app.tui.format import KIND_SHORT, plain, status, until, when
from app.tui.messages import DataChanged
from app.tui.widgets.grid import PAGE, Column


def _engineer(row: dict[str, Any]) -> Text:
    name = row.get("engineer_name") or ""
    short = name.split(" ", 1)[-1] if " " in name else name
    return Text(f"{row['engineer']} {short}")


class AssignmentSource:
    noun = "assignments"

    def __init__(self, tz: str) -> None:
        self.tz = tz
        self.columns = [
            Column("!", 1, lambda r: Text("!", style="bold #ff6b6b") if r.get("overlap")
                   else Text(" ")),
            Column("Order", 9, lambda r: plain(r["order"])),
            Column("Knd", 3, lambda r: plain(KIND_SHORT.get(r["kind"], r["kind"]))),
            Column("Lin", 3, lambda r: plain(r["line"]), "right"),
            Column("No", 2, lambda r: plain(r["assignment"]), "right"),
            Column("Engineer", 0, _engineer),
            Column("Planned start", 16, lambda r: plain(when(r["planned_start"], self.tz))),
            Column("End", 9, lambda r: plain(until(r["planned_start"], r["planned_end"],
                                                   self.tz))),
            Column("Status", 9, lambda r: status(r["status"])),
            Column("Appt", 8, lambda r: status(r["appointment_status"])),
        ]

    def count(self, conn: Connection, f: GridFilter) -> int:
        return repo.count_assignments(conn, f)

    def position(self, conn: Connection, f: GridFilter, key: tuple[Any, int]) -> int:
        return repo.assignment_position(conn, f, key[0], key[1])

    def key_at(self, conn: Connection, f: GridFilter, index: int) -> tuple[Any, int] | None:
        return repo.assignment_key_at(conn, f, index)

    def page(self, conn: Connection, f: GridFilter, *, after: tuple[Any, int] | None = None,
             at: tuple[Any, int] | None = None, limit: int = PAGE) -> list[dict[str, Any]]:
        return repo.assignment_page(conn, f, after=after, at=at, limit=limit)

    def sort_key(self, row: dict[str, Any]) -> tuple[Any, int]:
        return (row["planned_start"], row["id"])

    def current_key(self, conn: Connection, row_id: int) -> tuple[Any, int] | None:
        start = repo.assignment_start(conn, row_id)
        return (start, row_id) if start is not None else None

    def touched(self, row: dict[str, Any], change: DataChanged) -> bool:
        return change.touches_assignment(row["key"]) or change.touches_appointment(
            row.get("appointment_id"))

    def row_style(self, row: dict[str, Any]) -> str:
        return ""


class AppointmentSource:
    noun = "appointments"

    def __init__(self, tz: str) -> None:
        self.tz = tz
        self.columns = [
            Column("Id", 6, lambda r: plain(r["id"]), "right"),
            Column("Start", 16, lambda r: plain(when(r["start"], self.tz))),
            Column("End", 9, lambda r: plain(until(r["start"], r["end"], self.tz))),
            Column("Status", 8, lambda r: status(r["status"])),
            Column("Origin", 16, lambda r: plain(r["origin"]) if r["assignment_id"] else
                   Text(r["origin"] + " (hist.)", style="italic")),
            Column("Subject", 0, lambda r: plain(r["subject"])),
        ]

    def count(self, conn: Connection, f: GridFilter) -> int:
        return repo.count_appointments(conn, f)

    def position(self, conn: Connection, f: GridFilter, key: tuple[Any, int]) -> int:
        return repo.appointment_position(conn, f, key[0], key[1])

    def key_at(self, conn: Connection, f: GridFilter, index: int) -> tuple[Any, int] | None:
        return repo.appointment_key_at(conn, f, index)

    def page(self, conn: Connection, f: GridFilter, *, after: tuple[Any, int] | None = None,
             at: tuple[Any, int] | None = None, limit: int = PAGE) -> list[dict[str, Any]]:
        return repo.appointment_page(conn, f, after=after, at=at, limit=limit)

    def sort_key(self, row: dict[str, Any]) -> tuple[Any, int]:
        return (row["start"], row["id"])

    def current_key(self, conn: Connection, row_id: int) -> tuple[Any, int] | None:
        start = repo.appointment_start(conn, row_id)
        return (start, row_id) if start is not None else None

    def touched(self, row: dict[str, Any], change: DataChanged) -> bool:
        return change.touches_appointment(row["id"]) or change.touches_assignment(
            row["origin"])

    def row_style(self, row: dict[str, Any]) -> str:
        return ""
