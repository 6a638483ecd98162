"""`dispatch check`: the whole database against the rules, with the mirror's own computation."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import Connection, func, select

from app.db.tables import ACT, AP, PARAMS, A, E, L, O
from app.sync import state
from app.sync.coordinator import FINAL_ORDER


def violations(conn: Connection) -> Iterator[str]:
    """Every way the data breaks a rule, one readable line each."""
    yield from _parameters(conn)
    low, high = conn.execute(select(func.min(A.c.id), func.max(A.c.id))).one()
    for start in range(low or 0, (high or -1) + 1, state.BATCH):
        batch = state.load_batch(conn, id_range=(start, start + state.BATCH - 1))
        for item in batch.items:
            if item.stored is None or item.desired is None:
                continue
            have, want = item.stored, item.desired
            ap_id = have.fields["id"]
            where = f"appointment {ap_id} ({item.key})"
            for k, v in want.fields.items():
                if have.fields.get(k) != v:
                    yield f"{where}: {k} is {have.fields.get(k)!r}, the rules say {v!r}"
            if have.participants != want.participants:
                yield f"{where}: participants differ from R3-R5"
            if have.references != want.references:
                yield f"{where}: references differ from R6"
            if have.link != want.link:
                yield f"{where}: related-order link is missing or wrong (R7)"
    # R1: at most one appointment per assignment is enforced by a unique key; orphans here.
    for ap_id, number, status in conn.execute(
        select(AP.c.id, AP.c.origin_order, O.c.status)
        .outerjoin(O, O.c.number == AP.c.origin_order)
        .where(AP.c.assignment_id.is_(None))
    ):
        if status is None:
            yield f"appointment {ap_id}: its order {number} does not exist"
        elif status not in {s.value for s in FINAL_ORDER}:
            yield (f"appointment {ap_id}: kept without its assignment, but order {number} is "
                   f"{status}, not Completed/Costed/Closed (R14)")
    for (ap_id,) in conn.execute(
        select(AP.c.id).outerjoin(L, L.c.appointment_id == AP.c.id)
        .where(L.c.appointment_id.is_(None))
    ):
        yield f"appointment {ap_id}: no related-order link (R7)"
    bad = conn.scalar(
        select(func.count()).select_from(A).join(ACT, ACT.c.id == A.c.activity_id)
        .where(ACT.c.order_id != A.c.order_id)
    )
    if bad:
        yield f"{bad} assignments name an order their activity does not belong to"


def _parameters(conn: Connection) -> Iterator[str]:
    p = conn.execute(select(PARAMS).where(PARAMS.c.id == 1)).mappings().first()
    if p is None:
        yield "the parameters record is missing"
        return
    if p["create_crm_appointments"]:
        if not p["organizer_code"]:
            yield "P2: P1 is on but no organizer is set"
        else:
            email = conn.scalar(select(E.c.email).where(E.c.code == p["organizer_code"]))
            if not email:
                yield f"P2: the organizer {p['organizer_code']} has no e-mail"
    if p["update_assignments_from_appointment_dates"] and not p["create_crm_appointments"]:
        yield "P4 is on while P1 is off"
