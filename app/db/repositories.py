"""Read-side queries shared by the command line and the console. Nothing here writes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, and_, func, select

from app.db import models as m

A = m.Assignment.__table__
ACT = m.Activity.__table__
O = m.Order.__table__  # noqa: E741
AP = m.Appointment.__table__
P = m.Participant.__table__
R = m.Reference.__table__
L = m.RelatedOrder.__table__
E = m.Employee.__table__
BP = m.Partner.__table__
C = m.Contact.__table__
PE = m.PlannedEngineer.__table__
J = m.JournalEntry.__table__
U = m.User.__table__
PARAMS = m.Parameters.__table__


def iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


ASSIGNMENT_COLUMNS = (
    A.c.id, O.c.number.label("order"), O.c.kind, ACT.c.line, A.c.number.label("assignment"),
    A.c.employee_code.label("engineer"), E.c.name.label("engineer_name"), A.c.planned_start,
    A.c.planned_end, A.c.status, A.c.version, ACT.c.description, O.c.status.label("order_status"),
    AP.c.id.label("appointment_id"), AP.c.status.label("appointment_status"),
)


def assignment_select() -> Any:
    return (
        select(*ASSIGNMENT_COLUMNS)
        .join(O, O.c.id == A.c.order_id)
        .join(ACT, ACT.c.id == A.c.activity_id)
        .join(E, E.c.code == A.c.employee_code)
        .outerjoin(AP, AP.c.assignment_id == A.c.id)
    )


def assignment_row(row: Any) -> dict[str, Any]:
    d = dict(row._mapping)
    d["key"] = f"{d['order']}/{d['line']}/{d['assignment']}"
    return d


def find_assignment(conn: Connection, order: str, line: int, number: int) -> dict | None:
    row = conn.execute(
        assignment_select().where(O.c.number == order, ACT.c.line == line, A.c.number == number)
    ).first()
    return assignment_row(row) if row else None


def assignment_json(conn: Connection, row: dict[str, Any]) -> dict[str, Any]:
    out = {
        "order": row["order"], "kind": row["kind"], "line": row["line"],
        "assignment": row["assignment"], "engineer": row["engineer"],
        "engineer_name": row["engineer_name"], "planned_start": iso(row["planned_start"]),
        "planned_end": iso(row["planned_end"]), "status": row["status"],
        "version": row["version"], "activity": row["description"],
        "order_status": row["order_status"],
    }
    out["appointment"] = (
        appointment_json(conn, row["appointment_id"]) if row["appointment_id"] else None
    )
    return out


def list_assignments(
    conn: Connection, *, order: str | None = None, engineer: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    stmt = assignment_select()
    if order:
        stmt = stmt.where(O.c.number == order)
    if engineer:
        stmt = stmt.where(A.c.employee_code == engineer)
    stmt = stmt.order_by(A.c.planned_start, A.c.id)
    if limit:
        stmt = stmt.limit(limit)
    return [assignment_row(r) for r in conn.execute(stmt)]


def appointment_json(conn: Connection, ap_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(AP).where(AP.c.id == ap_id)).mappings().first()
    if row is None:
        return None
    parts = conn.execute(
        select(P.c.seq, P.c.type, P.c.code, P.c.name, P.c.attendance, P.c.email)
        .where(P.c.appointment_id == ap_id).order_by(P.c.seq)
    ).mappings().all()
    refs = conn.execute(
        select(R.c.type, R.c.sequence, R.c.note).where(R.c.appointment_id == ap_id)
        .order_by(R.c.sequence)
    ).mappings().all()
    links = conn.execute(select(L).where(L.c.appointment_id == ap_id)).mappings().all()
    organizer = conn.execute(select(E.c.name).where(E.c.code == row["organizer_code"])).scalar()
    bp = conn.execute(select(BP.c.name).where(BP.c.code == row["business_partner"])).scalar()
    return {
        "id": row["id"],
        "subject": row["subject"],
        "location": row["location"],
        "status": row["status"],
        "start": iso(row["start"]),
        "end": iso(row["end"]),
        "due_date": iso(row["due_date"]),
        "show_time_as": row["show_time_as"],
        "information": row["information"],
        "business_partner": {"code": row["business_partner"], "name": bp},
        "organizer": {"code": row["organizer_code"], "name": organizer},
        "origin": {
            "order": row["origin_order"], "line": row["origin_line"],
            "assignment": row["origin_assignment"],
            "mirrors": row["assignment_id"] is not None,
        },
        "participants": [
            {"type": p["type"], "code": p["code"], "name": p["name"],
             "attendance": p["attendance"], "email": p["email"]} for p in parts
        ],
        "references": [dict(r) for r in refs],
        "related_orders": [
            {"kind": link["order_kind"], "order": link["order_number"], "line": link["line"],
             "assignment": link["assignment_number"],
             "assignment_exists": link["assignment_id"] is not None}
            for link in links
        ],
        "version": row["version"],
    }


def list_appointments(
    conn: Connection, *, order: str | None = None, engineer: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    stmt = select(
        AP.c.id, AP.c.subject, AP.c.status, AP.c.start, AP.c.end, AP.c.origin_order,
        AP.c.origin_line, AP.c.origin_assignment, AP.c.assignment_id, A.c.employee_code,
    ).outerjoin(A, A.c.id == AP.c.assignment_id)
    if order:
        stmt = stmt.where(AP.c.origin_order == order)
    if engineer:
        # R16: an engineer's schedule is where they take part with an e-mail; the copies
        # where they are a co-engineer (no e-mail, R4) would show the visit twice.
        stmt = stmt.where(AP.c.id.in_(select(P.c.appointment_id).where(
            and_(P.c.type == "Employee", P.c.code == engineer, P.c.email.is_not(None)))))
    stmt = stmt.order_by(AP.c.start, AP.c.id)
    if limit:
        stmt = stmt.limit(limit)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def history(conn: Connection, *, after: int = 0, limit: int = 50, order: str | None = None,
            assignment: str | None = None) -> list[dict[str, Any]]:
    stmt = select(J)
    if after:
        stmt = stmt.where(J.c.id > after)
    if order:
        stmt = stmt.where(J.c.order_number == order)
    if assignment:
        stmt = stmt.where(J.c.assignment == assignment)
    if after:
        stmt = stmt.order_by(J.c.id).limit(limit)
        return [dict(r) for r in conn.execute(stmt).mappings()]
    rows = [dict(r) for r in conn.execute(stmt.order_by(J.c.id.desc()).limit(limit)).mappings()]
    return rows[::-1]


def last_journal_id(conn: Connection) -> int:
    return int(conn.execute(select(func.max(J.c.id))).scalar() or 0)


def parameters(conn: Connection) -> dict[str, Any]:
    return dict(conn.execute(select(PARAMS).where(PARAMS.c.id == 1)).mappings().one())


def users(conn: Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(select(U).order_by(U.c.name)).mappings()]


def user(conn: Connection, name: str) -> dict[str, Any] | None:
    row = conn.execute(select(U).where(U.c.name == name)).mappings().first()
    return dict(row) if row else None


UK = m.UserKey.__table__


def user_keys(conn: Connection, user: str | None = None) -> list[dict[str, Any]]:
    """SSH keys with their owner's role and employee, by user then date added."""
    q = (select(UK, U.c.role, U.c.employee_code).join(U, U.c.name == UK.c.user_name)
         .order_by(UK.c.user_name, UK.c.id))
    if user is not None:
        q = q.where(UK.c.user_name == user)
    return [dict(r) for r in conn.execute(q).mappings()]


def key_owner(conn: Connection, fingerprint: str) -> dict[str, Any] | None:
    """The user a key identifies (name, role, employee_code), or None for an unknown key."""
    row = conn.execute(
        select(U).join(UK, UK.c.user_name == U.c.name).where(UK.c.fingerprint == fingerprint)
    ).mappings().first()
    return dict(row) if row else None
