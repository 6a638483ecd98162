"""Loading the mirror's inputs and the stored appointments, a few set-based queries per batch.

Used by the coordinator (to write the difference) and by `dispatch check` (to report it), so
both compare against one computation.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BindParameter, Connection, bindparam, select
from sqlalchemy.orm import aliased

from app.db.tables import ACT, AP, BP, OC, A, C, E, L, O, P, R
from app.sync import mirror
from app.sync.mirror import (
    ActivityData,
    AssignmentData,
    Desired,
    LinkRow,
    OrderData,
    Person,
    StoredDates,
)

BATCH = 5000
ALL_SCOPES = frozenset({"fields", "participants", "references", "link"})


def chunks(items: Iterable[int], size: int = BATCH) -> Iterator[list[int]]:
    batch: list[int] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class Stored:
    """An appointment as the database has it, with the parts loaded for the scope."""

    fields: dict[str, Any]
    participants: tuple[tuple[Any, ...], ...] = ()  # compare equal to ParticipantRow
    references: tuple[tuple[Any, ...], ...] = ()
    link: LinkRow | None = None


@dataclass
class Item:
    """One assignment: its desired appointment (None if it has none and gets none) and stored."""

    assignment_id: int
    key: str
    order_number: str
    activity_id: int
    desired: Desired | None
    stored: Stored | None


@dataclass
class Batch:
    items: list[Item] = field(default_factory=list)


# Statements built once: constructing a select costs more than SQLite running it, and every
# command loads a batch. `ids` is an expanding parameter.
_IDS: BindParameter[Any] = bindparam("ids", expanding=True)
_PEOPLE = select(E.c.code, E.c.name, E.c.email).where(E.c.code.in_(_IDS))
_ASSIGNMENT_COLUMNS = (A.c.id, A.c.number, A.c.employee_code, A.c.planned_start,
                       A.c.planned_end, A.c.status, A.c.activity_id, A.c.order_id)
_ASSIGNMENTS = select(*_ASSIGNMENT_COLUMNS).where(A.c.id.in_(_IDS))
_ACTIVITIES = select(ACT.c.id, ACT.c.line, ACT.c.description).where(ACT.c.id.in_(_IDS))
_ENGINEERS_OF = select(A.c.activity_id, A.c.employee_code).where(A.c.activity_id.in_(_IDS))
_STORED = select(AP).where(AP.c.assignment_id.in_(_IDS))
_CHANGES = (select(OC.c.order_id, OC.c.activity_id, OC.c.at, OC.c.text)
            .where(OC.c.order_id.in_(_IDS)).order_by(OC.c.id))
_SOLD, _SHIP = aliased(BP, name="sold"), aliased(BP, name="ship")
_ORDERS = (
    select(
        O.c.id, O.c.number, O.c.kind, O.c.sold_to, _SOLD.c.name, O.c.ship_to, _SHIP.c.name,
        O.c.contact, C.c.name, C.c.email, O.c.address, O.c.planned_end,
    )
    .join(_SOLD, _SOLD.c.code == O.c.sold_to)
    .join(_SHIP, _SHIP.c.code == O.c.ship_to)
    .outerjoin(C, C.c.code == O.c.contact)
    .where(O.c.id.in_(_IDS))
)


def load_people(conn: Connection, codes: Collection[str]) -> dict[str, Person]:
    people: dict[str, Person] = {}
    for part in _str_chunks(codes):
        for code, name, email in conn.execute(_PEOPLE, {"ids": part}).all():
            people[code] = Person(code, name, email)
    return people


def _str_chunks(items: Collection[str], size: int = BATCH) -> Iterator[list[str]]:
    seq = list(items)
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def load_orders(conn: Connection, order_ids: Collection[int]) -> dict[int, OrderData]:
    out: dict[int, OrderData] = {}
    for r in conn.execute(_ORDERS, {"ids": list(order_ids)}).all():
        contact = Person(r[7], r[8], r[9]) if r[7] else None
        out[r[0]] = OrderData(r[0], r[1], r[2], r[3], r[4], r[5], r[6], contact, r[10], r[11])
    return out


def load_changes(
    conn: Connection, order_ids: Collection[int]
) -> dict[int, list[tuple[int | None, dt.datetime, str]]]:
    out: dict[int, list[tuple[int | None, dt.datetime, str]]] = defaultdict(list)
    for order_id, activity_id, at, text in conn.execute(
            _CHANGES, {"ids": list(order_ids)}).all():
        out[order_id].append((activity_id, at, text))
    return out


def changes_for(
    changes: Sequence[tuple[int | None, dt.datetime, str]], activity_id: int
) -> list[tuple[dt.datetime, str]]:
    """Header changes and this activity's changes, oldest first, the latest few."""
    mine = [(at, text) for act, at, text in changes if act is None or act == activity_id]
    return mine[-mirror.LATEST_CHANGES :]


def load_batch(
    conn: Connection,
    assignment_ids: Collection[int] = (),
    *,
    id_range: tuple[int, int] | None = None,
    create: Collection[int] = (),
    params: dict[str, Any] | None = None,
    scope: frozenset[str] = ALL_SCOPES,
) -> Batch:
    """Inputs and stored state for `assignment_ids` (or every id in `id_range`, inclusive,
    which spares long IN lists when walking the whole table); those in `create` get an
    appointment if they have none and P1 is on (R1)."""
    batch = Batch()
    ids = list(assignment_ids)
    ap_filter: Any = None
    if id_range is not None:
        ap_filter = AP.c.assignment_id.between(*id_range)
        arows = conn.execute(select(*_ASSIGNMENT_COLUMNS).where(A.c.id.between(*id_range))
                             ).all()
    elif ids:
        arows = conn.execute(_ASSIGNMENTS, {"ids": ids}).all()
    else:
        return batch
    if not arows:
        return batch
    activity_ids = {r[6] for r in arows}
    order_ids = {r[7] for r in arows}
    activities = {
        r[0]: ActivityData(r[0], r[1], r[2])
        for r in conn.execute(_ACTIVITIES, {"ids": list(activity_ids)}).all()
    }
    engineers_of: dict[int, set[str]] = defaultdict(set)
    for act_id, code in conn.execute(_ENGINEERS_OF, {"ids": list(activity_ids)}).all():
        engineers_of[act_id].add(code)
    orders = load_orders(conn, order_ids)
    changes = load_changes(conn, order_ids)

    stored_rows: dict[int, dict[str, Any]] = {}
    if id_range is not None or not set(ids) <= set(create):  # new assignments have none yet
        result = (conn.execute(select(AP).where(ap_filter)) if ap_filter is not None
                  else conn.execute(_STORED, {"ids": ids}))
        names = list(result.keys())
        stored_rows = {row["assignment_id"]: row for row in
                       (dict(zip(names, r, strict=True)) for r in result.all())}
    stored_by_ap: dict[int, Stored] = {row["id"]: Stored(row) for row in stored_rows.values()}
    _load_parts(conn, stored_by_ap, scope, ap_filter)

    creating = set(create) if params and params.get("create_crm_appointments") else set()
    codes: set[str] = {r[2] for r in arows}
    for act_id in activity_ids:
        codes |= engineers_of[act_id]
    codes |= {row["organizer_code"] for row in stored_rows.values()}
    if creating and params and params.get("organizer_code"):
        codes.add(params["organizer_code"])
    people = load_people(conn, codes)

    with_parts = "participants" in scope or bool(creating)
    info_cache: dict[int, str] = {}
    co_cache: dict[int, list[Person]] = {}
    for aid, number, emp, start, end, status, act_id, order_id in arows:
        order = orders[order_id]
        activity = activities[act_id]
        key = f"{order.number}/{activity.line}/{number}"
        row = stored_rows.get(aid)
        stored = stored_by_ap[row["id"]] if row else None
        if row is not None:
            organizer = people.get(row["organizer_code"])
            with_contact = bool(row["with_contact"])
        elif aid in creating and params:
            organizer = people.get(params["organizer_code"])
            with_contact = bool(params.get("include_sold_to_contact"))
        else:
            batch.items.append(Item(aid, key, order.number, act_id, None, None))
            continue
        assert organizer is not None, "organizer employee vanished"
        info = info_cache.get(act_id)
        if info is None:
            info = mirror.information(order, activity, changes_for(changes[order_id], act_id))
            info_cache[act_id] = info
        co = co_cache.get(act_id)
        if co is None:
            co = co_cache[act_id] = [people[code] for code in sorted(engineers_of[act_id])]
        desired = mirror.desired_appointment(
            order=order,
            activity=activity,
            assignment=AssignmentData(aid, number, people[emp], start, end, status),
            co_engineers=co,
            organizer=organizer,
            with_contact=with_contact,
            changes=(),
            stored=None if row is None else StoredDates(
                row["start"], row["end"], row["mirrored_start"], row["mirrored_end"]
            ),
            info=info,
            with_participants=with_parts,
        )
        batch.items.append(Item(aid, key, order.number, act_id, desired, stored))
    return batch


def _load_parts(conn: Connection, stored: dict[int, Stored], scope: frozenset[str],
                ap_filter: Any = None) -> None:
    """Participants, references and links of `stored`; with `ap_filter` (a condition on
    appointments) they are selected by a join instead of a list of ids."""
    if not stored:
        return
    ap_ids: Any = list(stored)
    if ap_filter is not None:
        ap_ids = select(AP.c.id).where(ap_filter)
    # Stored rows stay plain tuples: they compare equal to the mirror's NamedTuples, and
    # building a NamedTuple per stored row costs more than the query.
    if "participants" in scope:
        parts: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
        for r in conn.execute(
            select(P.c.appointment_id, P.c.seq, P.c.type, P.c.code, P.c.name, P.c.attendance,
                   P.c.email)
            .where(P.c.appointment_id.in_(ap_ids))
            .order_by(P.c.appointment_id, P.c.seq)
        ).all():
            parts[r[0]].append(tuple(r)[1:])
        for ap_id, s in stored.items():
            s.participants = tuple(parts.get(ap_id, ()))
    if "references" in scope:
        refs: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
        for ref in conn.execute(
            select(R.c.appointment_id, R.c.sequence, R.c.type, R.c.note)
            .where(R.c.appointment_id.in_(ap_ids))
            .order_by(R.c.appointment_id, R.c.sequence)
        ).all():
            refs[ref[0]].append(tuple(ref)[1:])
        for ap_id, s in stored.items():
            s.references = tuple(refs.get(ap_id, ()))
    if "link" in scope:
        for link in conn.execute(
            select(L.c.appointment_id, L.c.assignment_id, L.c.order_kind, L.c.order_number,
                   L.c.line, L.c.assignment_number).where(L.c.appointment_id.in_(ap_ids))
        ).all():
            if link[1] is not None:
                stored[link[0]].link = LinkRow(*tuple(link)[1:])
