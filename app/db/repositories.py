"""Read-side queries shared by the command line and the console. Nothing here writes."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, func, literal, or_, select, tuple_

from app.db import models as m
from app.db.tables import ACT, AP, BP, PARAMS, PE, A, C, E, J, L, O, P, R, U
from app.db.types import UTCDateTime


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


# ---- the console's paged reads --------------------------------------------------------------
# The console's grids never hold all rows: they count, then fetch pages by keyset
# (planned_start, id) in a worker. These queries stay on the two assignment indexes where they
# can: `ix_assignments_start_id` for order and seeks, `ix_assignments_employee_start` for an
# engineer's rows.

OVERLAP_MARGIN = dt.timedelta(days=1)
"""How far back the double-booking check looks for an earlier assignment that still runs."""


@dataclass(frozen=True)
class GridFilter:
    """What the filter bar asks for; empty fields do not filter."""

    text: str = ""
    engineer: str | None = None
    status: str | None = None
    order: str | None = None
    date_from: dt.datetime | None = None
    date_to: dt.datetime | None = None

    @property
    def empty(self) -> bool:
        return self == GridFilter()


def _filtered(stmt: Any, f: GridFilter) -> Any:
    if f.engineer:
        stmt = stmt.where(A.c.employee_code == f.engineer)
    if f.status:
        stmt = stmt.where(A.c.status == f.status)
    if f.order:
        stmt = stmt.where(A.c.order_id.in_(select(O.c.id).where(O.c.number == f.order)))
    if f.date_from is not None:
        stmt = stmt.where(A.c.planned_start >= f.date_from)
    if f.date_to is not None:
        stmt = stmt.where(A.c.planned_start < f.date_to)
    if f.text:
        like = f"%{_escape_like(f.text)}%"
        stmt = stmt.where(or_(
            A.c.employee_code.in_(select(E.c.code).where(
                or_(E.c.code.ilike(like, escape="\\"), E.c.name.ilike(like, escape="\\")))),
            A.c.order_id.in_(select(O.c.id).where(O.c.number.ilike(like, escape="\\"))),
            A.c.activity_id.in_(select(ACT.c.id).where(
                ACT.c.description.ilike(like, escape="\\"))),
        ))
    return stmt


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _key_bind(start: dt.datetime, row_id: int) -> Any:
    return tuple_(literal(start, UTCDateTime()), literal(row_id))


def count_assignments(conn: Connection, f: GridFilter) -> int:
    stmt = _filtered(select(func.count()).select_from(A), f)
    return int(conn.scalar(stmt) or 0)


def assignment_position(conn: Connection, f: GridFilter, start: dt.datetime, row_id: int) -> int:
    """How many rows of the filtered grid come before (start, id): the row index of that key."""
    stmt = _filtered(select(func.count()).select_from(A), f).where(
        tuple_(A.c.planned_start, A.c.id) < _key_bind(start, row_id))
    return int(conn.scalar(stmt) or 0)


def assignment_key_at(conn: Connection, f: GridFilter, index: int) -> tuple[Any, int] | None:
    """The (start, id) at row `index`: a seek on the start index for a jump (scrollbar, End)."""
    stmt = _filtered(select(A.c.planned_start, A.c.id), f).order_by(
        A.c.planned_start, A.c.id).offset(index).limit(1)
    row = conn.execute(stmt).first()
    return (row[0], row[1]) if row else None


def _keyset(stmt: Any, start: Any, row_id: Any, after: tuple[dt.datetime, int] | None,
            at: tuple[dt.datetime, int] | None, limit: int) -> Any:
    """One page of a grid sorted by (start, id): from the key `at` (inclusive) or after `after`."""
    if after is not None:
        stmt = stmt.where(tuple_(start, row_id) > _key_bind(*after))
    elif at is not None:
        stmt = stmt.where(tuple_(start, row_id) >= _key_bind(*at))
    return stmt.order_by(start, row_id).limit(limit)


def assignment_page(
    conn: Connection, f: GridFilter, *, after: tuple[dt.datetime, int] | None = None,
    at: tuple[dt.datetime, int] | None = None, limit: int = 100,
) -> list[dict[str, Any]]:
    """Up to `limit` grid rows from the key `at` (inclusive) or after the key `after`."""
    stmt = _keyset(_filtered(assignment_select(), f), A.c.planned_start, A.c.id, after, at,
                   limit)
    rows = [assignment_row(r) for r in conn.execute(stmt)]
    _mark_overlaps(conn, rows)
    return rows


def _mark_overlaps(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Set `overlap` on rows whose engineer has another assignment at the same time."""
    if not rows:
        return
    lo = min(r["planned_start"] for r in rows) - OVERLAP_MARGIN
    hi = max(r["planned_end"] for r in rows)
    engineers = sorted({r["engineer"] for r in rows})
    near: dict[str, list[tuple[Any, Any, int]]] = {}
    stmt = select(A.c.employee_code, A.c.planned_start, A.c.planned_end, A.c.id).where(
        A.c.employee_code.in_(engineers), A.c.planned_start >= lo, A.c.planned_start < hi)
    for code, s, e, i in conn.execute(stmt):
        near.setdefault(code, []).append((s, e, i))
    for r in rows:
        r["overlap"] = any(
            i != r["id"] and s < r["planned_end"] and e > r["planned_start"]
            for s, e, i in near.get(r["engineer"], ())
        )


def employees(conn: Connection, *, engineers_only: bool = False) -> list[dict[str, Any]]:
    stmt = select(E).order_by(E.c.code)
    if engineers_only:
        stmt = stmt.where(E.c.is_engineer.is_(True))
    return [dict(r) for r in conn.execute(stmt).mappings()]


def assignment_detail(conn: Connection, key: str) -> dict[str, Any] | None:
    """One assignment (by ORDER/LINE/NO) with its appointment, for the detail panes."""
    order, line, number = key.rsplit("/", 2)
    row = find_assignment(conn, order, int(line), int(number))
    if row is None:
        return None
    out = dict(row)
    out["appointment"] = (
        appointment_json(conn, row["appointment_id"]) if row["appointment_id"] else None
    )
    return out


def order_detail(conn: Connection, number: str) -> dict[str, Any] | None:
    """An order header with partner and contact names, and its activities with engineers."""
    row = conn.execute(select(O).where(O.c.number == number)).mappings().first()
    if row is None:
        return None
    out = dict(row)
    names = dict(conn.execute(select(BP.c.code, BP.c.name).where(
        BP.c.code.in_([row["sold_to"], row["ship_to"]]))).all())
    out["sold_to_name"] = names.get(row["sold_to"])
    out["ship_to_name"] = names.get(row["ship_to"])
    contact = conn.execute(select(C).where(C.c.code == row["contact"])).mappings().first()
    out["contact_name"] = contact["name"] if contact else None
    acts = []
    for a in conn.execute(select(ACT).where(ACT.c.order_id == row["id"]).order_by(ACT.c.line)
                          ).mappings():
        planned = list(conn.scalars(select(PE.c.employee_code).where(
            PE.c.activity_id == a["id"]).order_by(PE.c.employee_code)))
        assigned = [dict(r) for r in conn.execute(
            select(A.c.number, A.c.employee_code, A.c.status, A.c.planned_start,
                   A.c.planned_end).where(A.c.activity_id == a["id"]).order_by(A.c.number)
        ).mappings()]
        acts.append({**dict(a), "engineers": planned, "assignments": assigned})
    out["activities"] = acts
    out["appointments"] = int(conn.scalar(select(func.count()).select_from(AP).where(
        AP.c.origin_order == number)) or 0)
    return out


def order_numbers(conn: Connection, prefix: str = "", limit: int = 20) -> list[str]:
    stmt = select(O.c.number).order_by(O.c.number).limit(limit)
    if prefix:
        stmt = stmt.where(O.c.number >= prefix, O.c.number < prefix + "\uffff")
    return list(conn.scalars(stmt))


def partners(conn: Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(select(BP).order_by(BP.c.code)).mappings()]


def contacts(conn: Connection, partner: str | None = None) -> list[dict[str, Any]]:
    stmt = select(C).order_by(C.c.code)
    if partner:
        stmt = stmt.where(C.c.partner_code == partner)
    return [dict(r) for r in conn.execute(stmt).mappings()]


# Appointments (the CRM view), paged the same way by (start, id).

APPOINTMENT_COLUMNS = (
    AP.c.id, AP.c.subject, AP.c.status, AP.c.start, AP.c.end, AP.c.origin_order,
    AP.c.origin_line, AP.c.origin_assignment, AP.c.assignment_id, AP.c.organizer_code,
    AP.c.business_partner, AP.c.version,
)


def _ap_filtered(stmt: Any, f: GridFilter) -> Any:
    if f.order:
        stmt = stmt.where(AP.c.origin_order == f.order)
    if f.status:
        stmt = stmt.where(AP.c.status == f.status)
    if f.engineer:
        stmt = stmt.where(AP.c.id.in_(select(P.c.appointment_id).where(
            P.c.type == "Employee", P.c.code == f.engineer, P.c.email.is_not(None))))
    if f.date_from is not None:
        stmt = stmt.where(AP.c.start >= f.date_from)
    if f.date_to is not None:
        stmt = stmt.where(AP.c.start < f.date_to)
    if f.text:
        like = f"%{_escape_like(f.text)}%"
        stmt = stmt.where(or_(AP.c.subject.ilike(like, escape="\\"),
                              AP.c.origin_order.ilike(like, escape="\\")))
    return stmt


def count_appointments(conn: Connection, f: GridFilter) -> int:
    return int(conn.scalar(_ap_filtered(select(func.count()).select_from(AP), f)) or 0)


def appointment_position(conn: Connection, f: GridFilter, start: dt.datetime, row_id: int) -> int:
    stmt = _ap_filtered(select(func.count()).select_from(AP), f).where(
        tuple_(AP.c.start, AP.c.id) < _key_bind(start, row_id))
    return int(conn.scalar(stmt) or 0)


def appointment_key_at(conn: Connection, f: GridFilter, index: int) -> tuple[Any, int] | None:
    stmt = _ap_filtered(select(AP.c.start, AP.c.id), f).order_by(AP.c.start, AP.c.id).offset(
        index).limit(1)
    row = conn.execute(stmt).first()
    return (row[0], row[1]) if row else None


def appointment_page(
    conn: Connection, f: GridFilter, *, after: tuple[dt.datetime, int] | None = None,
    at: tuple[dt.datetime, int] | None = None, limit: int = 100,
) -> list[dict[str, Any]]:
    stmt = _keyset(_ap_filtered(select(*APPOINTMENT_COLUMNS), f), AP.c.start, AP.c.id, after,
                   at, limit)
    out = []
    for r in conn.execute(stmt):
        d = dict(r._mapping)
        d["key"] = str(d["id"])
        d["origin"] = f"{d['origin_order']}/{d['origin_line']}/{d['origin_assignment']}"
        out.append(d)
    return out


def appointment_start(conn: Connection, ap_id: int) -> Any:
    return conn.scalar(select(AP.c.start).where(AP.c.id == ap_id))


def assignment_start(conn: Connection, assignment_id: int) -> Any:
    return conn.scalar(select(A.c.planned_start).where(A.c.id == assignment_id))
