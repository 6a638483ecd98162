"""The sync coordinator: the one writer.

Every command runs in one transaction: validate, change the service side, recompute the desired
appointments of every assignment the change reaches, write only the difference, append to the
journal. It returns a `Change` saying what was touched. Nothing else in the code base writes.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pendulum
from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError

from app.db import bulk
from app.db.engine import write_transaction
from app.db.models import AssignmentStatus, OrderKind, OrderStatus, Role
from app.db.tables import ACT, AP, BP, OC, PARAMS, PE, UK, A, C, E, J, L, O, P, R, U
from app.sync import commands as c
from app.sync import mirror, state
from app.sync.errors import Busy, Conflict, DispatchError, Invalid, NotFound, Refused
from app.sync.mirror import MIRRORED_FIELDS, ActivityData
from app.sync.state import ALL_SCOPES, chunks

FINAL_ORDER = {OrderStatus.COMPLETED, OrderStatus.COSTED, OrderStatus.CLOSED}
"""R14: deleting an assignment of such an order keeps its appointment as history."""
FROZEN_ORDER = FINAL_ORDER | {OrderStatus.CANCELED}
"""Orders whose planning can no longer change."""

ORDER_FLOW = [OrderStatus.FREE, OrderStatus.PLANNED, OrderStatus.RELEASED,
              OrderStatus.COMPLETED, OrderStatus.COSTED, OrderStatus.CLOSED]

ASSIGNMENT_FLOW: dict[str, set[str]] = {
    "Assigned": {"Accepted", "Started", "Completed", "Rejected"},
    "Accepted": {"Started", "Completed", "Rejected"},
    "Started": {"Completed"},
    "Completed": {"Started"},  # reopen: dispatchers only
    "Rejected": {"Assigned"},  # re-plan: dispatchers only
}
DISPATCHER_ONLY_STEPS = {("Completed", "Started"), ("Rejected", "Assigned")}
TECHNICIAN_STATUSES = {"Accepted", "Started", "Completed", "Rejected"}

MAX_LEN = {
    "code": 20, "name": 80, "partner_name": 120, "email": 120, "phone": 40, "order": 30,
    "address": 200, "description": 200, "subject": 300, "location": 200, "information": 4000,
    "user": 60,
}
MIN_YEAR, MAX_YEAR = 1970, 2200
RETRIES = 5


@dataclass
class Change:
    """What one command changed."""

    op: str
    summary: str
    assignments: list[str] = field(default_factory=list)
    appointments: list[int] = field(default_factory=list)
    deleted_appointments: list[int] = field(default_factory=list)
    appointments_touched: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "summary": self.summary,
            "assignments": self.assignments,
            "appointments": self.appointments,
            "deleted_appointments": self.deleted_appointments,
        }


@dataclass
class _Tx:
    conn: Connection
    actor: c.Actor
    now: pendulum.DateTime
    op: str = ""
    journal: list[dict[str, Any]] = field(default_factory=list)
    assignments: dict[str, None] = field(default_factory=dict)
    appointments: dict[int, None] = field(default_factory=dict)
    deleted: dict[int, None] = field(default_factory=dict)
    params: dict[str, Any] | None = None

    def log(self, detail: str, *, order: str | None = None, assignment: str | None = None,
            appointment: int | None = None) -> None:
        self.journal.append({
            "at": self.now, "actor": self.actor.name[:60], "op": self.op,
            "order_number": order, "assignment": assignment, "appointment_id": appointment,
            "detail": detail,
        })
        if assignment:
            self.assignments.setdefault(assignment, None)
        if appointment is not None:
            self.appointments.setdefault(appointment, None)


AppointmentHook = Callable[[Connection, Collection[int], Collection[int]], None]


class Coordinator:
    """Runs commands. `clock` is injectable so tests and demo data are deterministic."""

    def __init__(self, engine: Engine, *, clock: Callable[[], pendulum.DateTime] | None = None):
        self.engine = engine
        self.clock = clock or (lambda: pendulum.now("UTC"))
        self.appointment_hooks: list[AppointmentHook] = []
        # The calendar outbox (app/calendar): every appointment change is queued for the calendar
        # in its own transaction, whichever process made it. A no-op until a calendar is set up.
        from app.calendar.outbox import enqueue_hook

        self.appointment_hooks.append(enqueue_hook)
        self._handlers: dict[type, Callable[[_Tx, Any], str]] = {
            c.UpsertEmployee: self._upsert_employee,
            c.UpsertPartner: self._upsert_partner,
            c.UpsertContact: self._upsert_contact,
            c.SetParameters: self._set_parameters,
            c.CreateOrder: self._create_order,
            c.UpdateOrder: self._update_order,
            c.SetOrderStatus: self._set_order_status,
            c.AddActivity: self._add_activity,
            c.UpdateActivity: self._update_activity,
            c.GenerateAssignments: self._generate,
            c.CreateAssignment: self._create_assignment,
            c.MoveAssignment: self._move,
            c.Reassign: self._reassign,
            c.SetAssignmentStatus: self._set_status,
            c.DeleteAssignment: self._delete,
            c.EditAppointment: self._edit_appointment,
            c.CalendarMove: self._calendar_move,
            c.CalendarNote: self._calendar_note,
            c.AddUser: self._add_user,
            c.AddUserKey: self._add_user_key,
            c.RemoveUserKey: self._remove_user_key,
        }

    # ---- running -------------------------------------------------------------------------

    def execute(self, command: c.Command, actor: c.Actor) -> Change:
        return self.execute_many([command], actor)[0]

    def execute_many(self, commands: Sequence[c.Command], actor: c.Actor) -> list[Change]:
        """All commands in one transaction: all are kept, or none.

        A refused command raises its error with `.index` set to its position.
        """
        for attempt in range(RETRIES + 1):
            try:
                return self._run(commands, actor)
            except (OperationalError, DBAPIError) as exc:
                if not _is_transient(exc) or attempt == RETRIES:
                    if _is_transient(exc):
                        raise Busy(
                            "the database stayed busy with other writers; nothing was changed,"
                            " try again"
                        ) from exc
                    raise
                time.sleep(0.05 * (2**attempt))
        raise AssertionError("unreachable")

    def _run(self, commands: Sequence[c.Command], actor: c.Actor) -> list[Change]:
        out: list[Change] = []
        with write_transaction(self.engine) as conn:
            if conn.dialect.name == "postgresql":
                _writer_lock(conn, commands)
            for index, command in enumerate(commands):
                tx = _Tx(conn=conn, actor=actor, now=self.clock(), op=command.op)
                try:
                    out.append(self._one(tx, command))
                except DispatchError as exc:
                    exc.index = index  # type: ignore[attr-defined]
                    raise
                except (IntegrityError, DataError) as exc:  # DataError: NUL, out of range
                    err = Invalid(f"refused by the database: {_short(exc)}")
                    err.index = index  # type: ignore[attr-defined]
                    raise err from exc
        return out

    def _one(self, tx: _Tx, command: c.Command) -> Change:
        handler = self._handlers.get(type(command))
        if handler is None:
            raise Invalid(f"unknown command {type(command).__name__}")
        _authorize(tx, command)
        summary = handler(tx, command)
        if tx.journal:
            bulk.insert_rows(tx.conn, J, _JOURNAL_COLUMNS,
                             [tuple(row[k] for k in _JOURNAL_COLUMNS) for row in tx.journal])
            if tx.conn.dialect.name == "postgresql":
                # Consoles LISTEN on this channel; delivered only if the transaction commits.
                tx.conn.exec_driver_sql("SELECT pg_notify('dispatch_journal', '')")
        return Change(
            op=command.op,
            summary=summary,
            assignments=list(tx.assignments),
            appointments=[i for i in tx.appointments if i not in tx.deleted],
            deleted_appointments=list(tx.deleted),
            appointments_touched=len(tx.appointments),
        )

    # ---- lookups --------------------------------------------------------------------------

    def _params(self, tx: _Tx, *, lock: bool = False) -> dict[str, Any]:
        if tx.params is None or lock:
            stmt = select(PARAMS).where(PARAMS.c.id == 1)
            if lock:
                stmt = stmt.with_for_update()
            row = tx.conn.execute(stmt).mappings().one()
            tx.params = dict(row)
        return tx.params

    def _order(self, tx: _Tx, number: str, *, field_name: str = "order") -> dict[str, Any]:
        row = tx.conn.execute(
            select(O).where(O.c.number == number).with_for_update()
        ).mappings().first()
        if row is None:
            raise NotFound(f"order {number!r} does not exist", field=field_name)
        return dict(row)

    def _activity(self, tx: _Tx, order: dict[str, Any], line: int) -> dict[str, Any]:
        row = tx.conn.execute(
            select(ACT).where(ACT.c.order_id == order["id"], ACT.c.line == line)
        ).mappings().first()
        if row is None:
            raise NotFound(f"order {order['number']} has no activity line {line}", field="line")
        return dict(row)

    def _assignment(self, tx: _Tx, cmd: Any) -> tuple[dict, dict, dict]:
        order = self._order(tx, cmd.order)
        activity = self._activity(tx, order, cmd.line)
        row = tx.conn.execute(
            select(A).where(A.c.activity_id == activity["id"], A.c.number == cmd.assignment)
        ).mappings().first()
        if row is None:
            raise NotFound(
                f"assignment {cmd.order}/{cmd.line}/{cmd.assignment} does not exist",
                field="assignment",
            )
        return order, activity, dict(row)

    def _employee(self, tx: _Tx, code: str, *, field_name: str, engineer: bool = False
                  ) -> dict[str, Any]:
        code = _text(code, field_name, MAX_LEN["code"])
        row = tx.conn.execute(select(E).where(E.c.code == code)).mappings().first()
        if row is None:
            raise NotFound(f"employee {code!r} does not exist", field=field_name)
        if engineer and not row["is_engineer"]:
            raise Refused(f"employee {code} ({row['name']}) is not an engineer", field=field_name)
        return dict(row)

    def _partner(self, tx: _Tx, code: str, *, field_name: str) -> dict[str, Any]:
        code = _text(code, field_name, MAX_LEN["code"])
        row = tx.conn.execute(select(BP).where(BP.c.code == code)).mappings().first()
        if row is None:
            raise NotFound(f"business partner {code!r} does not exist", field=field_name)
        return dict(row)

    def _contact(self, tx: _Tx, code: str, partner: str) -> dict[str, Any]:
        code = _text(code, "contact", MAX_LEN["code"])
        row = tx.conn.execute(select(C).where(C.c.code == code)).mappings().first()
        if row is None:
            raise NotFound(f"contact {code!r} does not exist", field="contact")
        if row["partner_code"] != partner:
            raise Refused(
                f"contact {code} belongs to {row['partner_code']}, not to the sold-to {partner}",
                field="contact",
            )
        return dict(row)

    # ---- the mirror -----------------------------------------------------------------------

    def _resync(
        self,
        tx: _Tx,
        assignment_ids: Iterable[int],
        *,
        create: Collection[int] = (),
        scope: frozenset[str] = ALL_SCOPES,
    ) -> int:
        """Bring the appointments of these assignments to their desired state; returns how many
        appointments were written. `create` may get new appointments (R1)."""
        ids = list(dict.fromkeys([*assignment_ids, *create]))
        if create:
            scope = ALL_SCOPES
        params = self._params(tx) if create else None
        written = 0
        for part in chunks(ids):
            batch = state.load_batch(tx.conn, part, create=create, params=params, scope=scope)
            written += self._write_batch(tx, batch, scope)
        return written

    def _write_batch(self, tx: _Tx, batch: state.Batch, scope: frozenset[str]) -> int:
        conn = tx.conn
        new_rows: list[dict[str, Any]] = []
        new_items: list[state.Item] = []
        updates: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        replace_parts: dict[int, Any] = {}
        replace_refs: dict[int, Any] = {}
        replace_link: dict[int, Any] = {}
        details: dict[int, list[str]] = {}
        for item in batch.items:
            want = item.desired
            if want is None:
                continue
            if item.stored is None:
                new_rows.append({**want.fields, "version": 1})
                new_items.append(item)
                continue
            have = item.stored
            ap_id = have.fields["id"]
            changed: list[str] = []
            if "fields" in scope:
                diff = {k: v for k, v in want.fields.items() if have.fields.get(k) != v}
                if diff:
                    updates[tuple(sorted(diff))].append({"_id": ap_id, **diff})
                    changed += [k for k in sorted(diff) if k not in ("mirrored_start",
                                                                     "mirrored_end")]
            if "participants" in scope and have.participants != want.participants:
                replace_parts[ap_id] = want.participants
                changed.append("participants")
            if "references" in scope and have.references != want.references:
                replace_refs[ap_id] = want.references
                changed.append("references")
            if "link" in scope and have.link != want.link:
                replace_link[ap_id] = want.link
                changed.append("related order")
            if changed:
                details[ap_id] = changed
                tx.log(f"appointment {ap_id}: {', '.join(changed)} updated",
                       order=item.order_number, assignment=item.key, appointment=ap_id)

        created: list[int] = []
        if new_rows:
            cols = tuple(new_rows[0])
            bulk.insert_rows(conn, AP, cols, [tuple(r[k] for k in cols) for r in new_rows])
            by_assignment: dict[int, int] = {}
            for part in chunks(r["assignment_id"] for r in new_rows):
                by_assignment.update((aid, ap_id) for ap_id, aid in conn.execute(
                    select(AP.c.id, AP.c.assignment_id).where(AP.c.assignment_id.in_(part))))
            for item in new_items:
                ap_id = by_assignment[item.assignment_id]
                created.append(ap_id)
                assert item.desired is not None
                replace_parts[ap_id] = item.desired.participants
                replace_refs[ap_id] = item.desired.references
                replace_link[ap_id] = item.desired.link
                tx.log(f"appointment {ap_id} created", order=item.order_number,
                       assignment=item.key, appointment=ap_id)

        touched_only_parts = (set(replace_parts) | set(replace_refs) | set(replace_link)) - set(
            created
        )
        for keys, rows in updates.items():
            bulk.update_rows(conn, AP, keys, [(*(r[k] for k in keys), r["_id"]) for r in rows])
            for r in rows:
                touched_only_parts.discard(r["_id"])
        if touched_only_parts:
            for part in chunks(sorted(touched_only_parts)):
                conn.execute(
                    update(AP).where(AP.c.id.in_(part)).values(version=AP.c.version + 1)
                )
        self._replace(conn, P, replace_parts, _PARTICIPANT_COLUMNS, created)
        self._replace(conn, R, replace_refs, _REFERENCE_COLUMNS, created)
        self._replace(conn, L, {k: (v,) for k, v in replace_link.items()}, _LINK_COLUMNS,
                      created)
        changed_ids = created + list(details)
        if changed_ids:
            self._notify_hooks(tx, changed_ids, ())
        return len(changed_ids)

    @staticmethod
    def _replace(conn: Connection, table: Any, rows_by_ap: dict[int, Any],
                 columns: tuple[str, ...], fresh: Collection[int]) -> None:
        """Replace the rows of these appointments; `fresh` ones have none to delete yet.

        The mirror's row dataclasses list their fields in `columns[1:]` order.
        """
        if not rows_by_ap:
            return
        for part in chunks(sorted(set(rows_by_ap) - set(fresh))):
            conn.execute(delete(table).where(table.c.appointment_id.in_(part)))
        fields = columns[1:]
        bulk.insert_rows(conn, table, columns, [
            (ap, *(getattr(r, f) for f in fields)) for ap, items in rows_by_ap.items()
            for r in items])

    def _notify_hooks(self, tx: _Tx, changed: Collection[int], deleted: Collection[int]) -> None:
        for hook in self.appointment_hooks:
            hook(tx.conn, changed, deleted)

    def _refresh_shared_fields(self, tx: _Tx, order_ids: Collection[int],
                               activity_id: int | None = None) -> int:
        """R12's fan-out: rewrite the fields all appointments of an activity share.

        A header or activity change reaches nothing else (not dates, status or participants),
        so this loads just those fields, diffs them against the mirror's per-activity values
        and writes the changed rows with one executemany per set of columns. (Measured: an
        UPDATE ... FROM a VALUES table was slower on SQLite, which scans for the join.)
        """
        written = 0
        for part in chunks(order_ids, 500):
            orders = state.load_orders(tx.conn, part)
            changes = state.load_changes(tx.conn, part)
            act_stmt = select(ACT.c.id, ACT.c.order_id, ACT.c.line, ACT.c.description).where(
                ACT.c.order_id.in_(part))
            if activity_id is not None:
                act_stmt = act_stmt.where(ACT.c.id == activity_id)
            shared: dict[int, dict[str, object]] = {}
            for act_id, order_id, line, description in tx.conn.execute(act_stmt).all():
                order, activity = orders[order_id], ActivityData(act_id, line, description)
                info = mirror.information(order, activity,
                                          state.changes_for(changes[order_id], act_id))
                shared[act_id] = mirror.activity_fields(order, activity, info)
            if not shared:
                continue
            names = tuple(next(iter(shared.values())))
            stmt = (select(AP.c.id, A.c.activity_id, AP.c.origin_order, AP.c.origin_line,
                           AP.c.origin_assignment, *(AP.c[k] for k in names))
                    .join(A, A.c.id == AP.c.assignment_id))
            stmt = stmt.where(A.c.activity_id == activity_id) if activity_id is not None \
                else stmt.where(A.c.order_id.in_(part))
            updates: dict[tuple[str, ...], list[tuple[Any, ...]]] = defaultdict(list)
            changed: list[int] = []
            for ap_id, act_id, number, line, no, *have in tx.conn.execute(stmt).all():
                want = shared[act_id]
                keys = tuple(k for k, v in zip(names, have, strict=True) if want[k] != v)
                if not keys:
                    continue
                updates[keys].append((*(want[k] for k in keys), ap_id))
                changed.append(ap_id)
                tx.log(f"appointment {ap_id}: {', '.join(keys)} updated", order=number,
                       assignment=f"{number}/{line}/{no}", appointment=ap_id)
            for keys, rows in updates.items():
                bulk.update_rows(tx.conn, AP, keys, rows)
            if changed:
                self._notify_hooks(tx, changed, ())
            written += len(changed)
        return written

    def _activity_assignments(self, tx: _Tx, activity_id: int) -> list[int]:
        return list(tx.conn.scalars(select(A.c.id).where(A.c.activity_id == activity_id)))

    def _order_assignments(self, tx: _Tx, order_id: int) -> list[int]:
        return list(tx.conn.scalars(select(A.c.id).where(A.c.order_id == order_id)))

    # ---- master data ----------------------------------------------------------------------

    def _upsert_employee(self, tx: _Tx, cmd: c.UpsertEmployee) -> str:
        code = _text(cmd.code, "code")
        name = _text(cmd.name, "name")
        email = _email(cmd.email)
        row = tx.conn.execute(select(E).where(E.c.code == code)).mappings().first()
        values = {"name": name, "email": email, "is_engineer": bool(cmd.engineer)}
        if row is None:
            tx.conn.execute(insert(E).values(code=code, **values))
            tx.log(f"employee {code} created")
            return f"Created employee {code} {name}"
        if {k: row[k] for k in values} == values:
            return f"Employee {code} unchanged"
        params = self._params(tx)
        if params["organizer_code"] == code and params["create_crm_appointments"] and not email:
            raise Refused(f"employee {code} is the appointment organizer (P2) and needs an e-mail",
                          field="email")
        if row["is_engineer"] and not values["is_engineer"] and tx.conn.scalar(
            select(func.count()).select_from(A).where(A.c.employee_code == code)
        ):
            raise Refused(f"employee {code} has assignments and must stay an engineer",
                          field="engineer")
        tx.conn.execute(update(E).where(E.c.code == code).values(**values))
        tx.log(f"employee {code} updated")
        n = 0
        if (row["name"], row["email"]) != (name, email):
            affected = select(A.c.id).where(
                A.c.activity_id.in_(select(A.c.activity_id).where(A.c.employee_code == code))
            ).union(
                select(AP.c.assignment_id).where(
                    AP.c.organizer_code == code, AP.c.assignment_id.is_not(None)
                )
            )
            ids = list(tx.conn.scalars(affected))
            n = self._resync(tx, ids, scope=frozenset({"participants"}))
        return f"Updated employee {code}; {_n(n)} updated"

    def _upsert_partner(self, tx: _Tx, cmd: c.UpsertPartner) -> str:
        code = _text(cmd.code, "code")
        name = _text(cmd.name, "name", MAX_LEN["partner_name"])
        row = tx.conn.execute(select(BP).where(BP.c.code == code)).mappings().first()
        if row is None:
            tx.conn.execute(insert(BP).values(code=code, name=name))
            tx.log(f"business partner {code} created")
            return f"Created business partner {code} {name}"
        if row["name"] == name:
            return f"Business partner {code} unchanged"
        tx.conn.execute(update(BP).where(BP.c.code == code).values(name=name))
        tx.log(f"business partner {code} renamed")
        order_ids = list(tx.conn.scalars(select(O.c.id).where(
            (O.c.sold_to == code) | (O.c.ship_to == code))))
        n = self._refresh_shared_fields(tx, order_ids)
        return f"Updated business partner {code}; {_n(n)} updated"

    def _upsert_contact(self, tx: _Tx, cmd: c.UpsertContact) -> str:
        code = _text(cmd.code, "code")
        name = _text(cmd.name, "name")
        self._partner(tx, _text(cmd.partner, "partner"), field_name="partner")
        values = {"partner_code": cmd.partner, "name": name, "email": _email(cmd.email),
                  "phone": _opt_text(cmd.phone, "phone")}
        row = tx.conn.execute(select(C).where(C.c.code == code)).mappings().first()
        if row is None:
            tx.conn.execute(insert(C).values(code=code, **values))
            tx.log(f"contact {code} created")
            return f"Created contact {code} {name}"
        if row["partner_code"] != cmd.partner and tx.conn.scalar(
            select(func.count()).select_from(O).where(O.c.contact == code)
        ):
            raise Refused(f"contact {code} is used on orders of {row['partner_code']} and cannot"
                          f" move to {cmd.partner}", field="partner")
        if {k: row[k] for k in values} == values:
            return f"Contact {code} unchanged"
        tx.conn.execute(update(C).where(C.c.code == code).values(**values))
        tx.log(f"contact {code} updated")
        ids = list(tx.conn.scalars(select(A.c.id).join(O, O.c.id == A.c.order_id).where(
            O.c.contact == code)))
        n = self._resync(tx, ids, scope=frozenset({"fields", "participants"}))
        return f"Updated contact {code}; {_n(n)} updated"

    def _add_user(self, tx: _Tx, cmd: c.AddUser) -> str:
        name = _text(cmd.name, "name", MAX_LEN["user"])
        try:
            role = Role(cmd.role)
        except ValueError:
            raise Invalid(f"role {cmd.role!r} is not one of dispatcher, technician, supervisor",
                          field="role") from None
        if role == Role.CALENDAR:
            raise Invalid("the calendar is not a user role", field="role")
        if role == Role.TECHNICIAN and not cmd.employee:
            raise Invalid("a technician needs --employee CODE (whose assignments are theirs)",
                          field="employee")
        if cmd.employee:
            self._employee(tx, cmd.employee, field_name="employee")
        row = tx.conn.execute(select(U).where(U.c.name == name)).first()
        values = {"role": role.value, "employee_code": cmd.employee}
        if row is None:
            tx.conn.execute(insert(U).values(name=name, **values))
        else:
            tx.conn.execute(update(U).where(U.c.name == name).values(**values))
        tx.log(f"user {name} is {role.value}")
        return f"User {name} is a {role.value}" + (f" ({cmd.employee})" if cmd.employee else "")

    def _add_user_key(self, tx: _Tx, cmd: c.AddUserKey) -> str:
        from app.ssh.keys import NAME_PATTERN, BadKey, parse_public_key

        user = self._user(tx, cmd.user)
        if not NAME_PATTERN.match(user["name"]):
            raise Invalid(f"user name {user['name']!r} cannot log in over SSH: use letters, digits,"
                          " '.', '_' or '-' (it goes into the forced command)", field="user")
        if not isinstance(cmd.public_key, str):
            raise Invalid("public_key must be text", field="public_key")
        try:
            key = parse_public_key(cmd.public_key)
        except BadKey as exc:
            raise Invalid(str(exc), field="public_key") from None
        fp = key.fingerprint
        owner = tx.conn.scalar(select(UK.c.user_name).where(UK.c.fingerprint == fp))
        if owner == user["name"]:
            return f"Key {fp} is already {owner}'s; unchanged"
        if owner is not None:
            raise Refused(f"key {fp} already belongs to {owner}; a key identifies one user",
                          field="public_key")
        tx.conn.execute(insert(UK).values(
            user_name=user["name"], key_type=key.key_type, key_data=key.data,
            comment=key.comment, fingerprint=fp, added_at=tx.now))
        tx.log(f"key {fp} ({key.key_type}) added for {user['name']}")
        label = f"{key.key_type} {key.comment}".strip()
        return f"Key {fp} ({label}) added for {user['name']}"

    def _remove_user_key(self, tx: _Tx, cmd: c.RemoveUserKey) -> str:
        user = self._user(tx, cmd.user)
        wanted = _text(cmd.key, "key", 200)
        rows = tx.conn.execute(select(UK).where(UK.c.user_name == user["name"])).mappings().all()
        hits = [r for r in rows if wanted in (r["fingerprint"], r["comment"])]
        if not hits:
            raise NotFound(f"{user['name']} has no key {wanted!r} (see 'dispatch users list')",
                           field="key")
        if len(hits) > 1:
            raise Invalid(f"{len(hits)} keys of {user['name']} have the comment {wanted!r};"
                          " give the fingerprint", field="key")
        tx.conn.execute(delete(UK).where(UK.c.id == hits[0]["id"]))
        tx.log(f"key {hits[0]['fingerprint']} removed from {user['name']}")
        return f"Key {hits[0]['fingerprint']} removed from {user['name']}"

    def _user(self, tx: _Tx, name: Any) -> dict[str, Any]:
        text = _text(name, "user", MAX_LEN["user"])
        row = tx.conn.execute(select(U).where(U.c.name == text)).mappings().first()
        if row is None:
            raise NotFound(f"user {text!r} does not exist: add it with 'dispatch users add'",
                           field="user")
        return dict(row)

    def _set_parameters(self, tx: _Tx, cmd: c.SetParameters) -> str:
        cur = self._params(tx, lock=True)
        _check_version("the parameters", cmd.version, cur["version"], cur)
        new = dict(cur)
        if cmd.create_crm_appointments is not None:
            new["create_crm_appointments"] = bool(cmd.create_crm_appointments)
        if cmd.organizer is not None:
            new["organizer_code"] = cmd.organizer or None
        if cmd.include_sold_to_contact is not None:
            new["include_sold_to_contact"] = bool(cmd.include_sold_to_contact)
        if cmd.update_assignments_from_appointment_dates is not None:
            new["update_assignments_from_appointment_dates"] = bool(
                cmd.update_assignments_from_appointment_dates)
        if new["organizer_code"]:
            org = self._employee(tx, new["organizer_code"], field_name="organizer")
            if not org["email"]:
                raise Refused(f"P2: the organizer {org['code']} ({org['name']}) has no e-mail;"
                              " an organizer must have one", field="organizer")
        if new["create_crm_appointments"] and not new["organizer_code"]:
            raise Refused("P2: an organizer is required while P1 (create CRM appointments) is on",
                          field="organizer")
        if new["update_assignments_from_appointment_dates"] and not new["create_crm_appointments"]:
            raise Refused("P4 (update assignments with appointment dates) needs P1 on",
                          field="update_assignments_from_appointment_dates")
        keys = ["create_crm_appointments", "organizer_code", "include_sold_to_contact",
                "update_assignments_from_appointment_dates"]
        diff = {k: new[k] for k in keys if new[k] != cur[k]}
        if not diff:
            return "Parameters unchanged"
        tx.conn.execute(update(PARAMS).where(PARAMS.c.id == 1).values(
            **diff, version=cur["version"] + 1))
        tx.params = None
        text = ", ".join(f"{_PARAM_LABEL[k]}={v}" for k, v in diff.items())
        tx.log(f"parameters: {text}")
        return f"Parameters set: {text}"

    # ---- orders and activities ------------------------------------------------------------

    def _create_order(self, tx: _Tx, cmd: c.CreateOrder) -> str:
        number = _text(cmd.order, "order", MAX_LEN["order"])
        try:
            kind = OrderKind(cmd.kind)
        except ValueError:
            raise Invalid(f"kind {cmd.kind!r} is not one of "
                          + ", ".join(k.value for k in OrderKind), field="kind") from None
        status = _order_status(cmd.status)
        if status in FROZEN_ORDER:
            raise Refused(f"a new order cannot start {status.value}", field="status")
        known = set(tx.conn.scalars(select(BP.c.code).where(BP.c.code.in_(
            [_text(cmd.sold_to, "sold_to"), _text(cmd.ship_to, "ship_to")]))))
        for name in ("sold_to", "ship_to"):
            if getattr(cmd, name) not in known:
                raise NotFound(f"business partner {getattr(cmd, name)!r} does not exist",
                               field=name)
        if cmd.contact:
            self._contact(tx, cmd.contact, cmd.sold_to)
        start, end = _dates(cmd.planned_start, cmd.planned_end)
        if tx.conn.scalar(select(O.c.id).where(O.c.number == number)) is not None:
            raise Refused(f"order {number} exists already", field="order")
        lines = [getattr(a, "line", None) for a in cmd.activities]
        if len(set(lines)) != len(lines):
            raise Invalid("activity lines must be unique within the order", field="activities")
        specs = [self._check_activity(spec, f"activities[{i}].")
                 for i, spec in enumerate(cmd.activities)]
        self._engineers(tx, {code for spec in specs for code in spec.engineers},
                        field_name="activities.engineers")
        order_id = tx.conn.execute(insert(O).values(
            number=number, kind=kind.value, sold_to=cmd.sold_to, ship_to=cmd.ship_to,
            contact=cmd.contact or None, address=_text(cmd.address, "address"),
            status=status.value, planned_start=start, planned_end=end, version=1,
        ).returning(O.c.id)).scalar_one()
        tx.log(f"order {number} created ({kind.label}, {len(specs)} activities)", order=number)
        self._insert_activities(tx, order_id, specs)
        return f"Created {kind.label.lower()} {number} with {len(specs)} activities"

    @staticmethod
    def _check_activity(spec: c.ActivitySpec, where: str = "") -> c.ActivitySpec:
        """A validated copy: dates in UTC, text trimmed, engineers without repeats."""
        if not isinstance(spec, c.ActivitySpec):
            raise Invalid("expected an activity", field=where.rstrip(".") or "activities")
        start, end = _dates(spec.planned_start, spec.planned_end, where)
        return c.ActivitySpec(
            _int(spec.line, where + "line"), _text(spec.description, where + "description"),
            start, end, tuple(dict.fromkeys(spec.engineers)))

    def _engineers(self, tx: _Tx, codes: Collection[str], *, field_name: str) -> None:
        """All of `codes` exist and are engineers; one query however many."""
        if not codes:
            return
        codes = [_text(code, field_name, MAX_LEN["code"]) for code in codes]
        found = dict(tx.conn.execute(
            select(E.c.code, E.c.is_engineer).where(E.c.code.in_(list(codes)))).all())
        for code in sorted(codes, key=str):
            if code not in found:
                raise NotFound(f"employee {code!r} does not exist", field=field_name)
            if not found[code]:
                raise Refused(f"employee {code} is not an engineer", field=field_name)

    def _insert_activities(self, tx: _Tx, order_id: int, specs: Sequence[c.ActivitySpec]
                           ) -> None:
        if not specs:
            return
        bulk.insert_rows(tx.conn, ACT, ("order_id", "line", "description", "planned_start",
                                        "planned_end", "version"),
                         [(order_id, s.line, s.description, s.planned_start, s.planned_end, 1)
                          for s in specs])
        by_line = dict(tx.conn.execute(select(ACT.c.line, ACT.c.id).where(
            ACT.c.order_id == order_id, ACT.c.line.in_([s.line for s in specs]))).all())
        ids = [by_line[s.line] for s in specs]
        rows = [{"activity_id": act_id, "employee_code": code}
                for act_id, spec in zip(ids, specs, strict=True) for code in spec.engineers]
        if rows:
            tx.conn.execute(insert(PE), rows)

    def _update_order(self, tx: _Tx, cmd: c.UpdateOrder) -> str:
        order = self._order(tx, cmd.order)
        _check_version(f"order {order['number']}", cmd.version, order["version"], order)
        _not_frozen(order)
        new = dict(order)
        if cmd.sold_to is not None:
            new["sold_to"] = self._partner(tx, cmd.sold_to, field_name="sold_to")["code"]
        if cmd.ship_to is not None:
            new["ship_to"] = self._partner(tx, cmd.ship_to, field_name="ship_to")["code"]
        if cmd.contact is not None:
            new["contact"] = cmd.contact or None
        if cmd.address is not None:
            new["address"] = _text(cmd.address, "address")
        if new["contact"] and (cmd.contact is not None or cmd.sold_to is not None):
            self._contact(tx, new["contact"], new["sold_to"])
        if cmd.planned_start is not None or cmd.planned_end is not None:
            new["planned_start"], new["planned_end"] = _dates(
                cmd.planned_start or order["planned_start"], cmd.planned_end or order["planned_end"])
        keys = ["sold_to", "ship_to", "contact", "address", "planned_start", "planned_end"]
        diff = {k: new[k] for k in keys if new[k] != order[k]}
        if not diff:
            return f"Order {order['number']} unchanged"
        tx.conn.execute(update(O).where(O.c.id == order["id"]).values(
            **diff, version=order["version"] + 1))
        note = "; ".join(_describe(k, order[k], v) for k, v in diff.items())
        tx.conn.execute(insert(OC).values(order_id=order["id"], activity_id=None, at=tx.now,
                                          text=note[:300]))
        tx.log(f"order {order['number']}: {note}", order=order["number"])
        if {"contact", "sold_to"} & set(diff):  # the contact participant may change too (R5)
            n = self._resync(tx, self._order_assignments(tx, order["id"]),
                             scope=frozenset({"fields", "participants"}))
        else:
            n = self._refresh_shared_fields(tx, [order["id"]])
        return f"Updated order {order['number']} ({', '.join(diff)}); {_n(n)} updated"

    def _set_order_status(self, tx: _Tx, cmd: c.SetOrderStatus) -> str:
        order = self._order(tx, cmd.order)
        _check_version(f"order {order['number']}", cmd.version, order["version"], order)
        old = OrderStatus(order["status"])
        new = _order_status(cmd.status)
        if new == old:
            return f"Order {order['number']} is {new.value} already"
        if not _order_step_allowed(old, new):
            raise Refused(f"order {order['number']} cannot go from {old.value} to {new.value}",
                          field="status")
        tx.conn.execute(update(O).where(O.c.id == order["id"]).values(
            status=new.value, version=order["version"] + 1))
        tx.log(f"order {order['number']}: status {old.value} -> {new.value}",
               order=order["number"])
        return f"Order {order['number']} is now {new.value}"

    def _add_activity(self, tx: _Tx, cmd: c.AddActivity) -> str:
        order = self._order(tx, cmd.order)
        _not_frozen(order)
        if tx.conn.scalar(select(ACT.c.id).where(ACT.c.order_id == order["id"],
                                                 ACT.c.line == cmd.line)) is not None:
            raise Refused(f"order {order['number']} has an activity line {cmd.line} already",
                          field="line")
        spec = self._check_activity(c.ActivitySpec(
            cmd.line, cmd.description, cmd.planned_start, cmd.planned_end, tuple(cmd.engineers)))
        self._engineers(tx, spec.engineers, field_name="engineers")
        self._insert_activities(tx, order["id"], [spec])
        tx.log(f"activity {spec.line} added", order=order["number"])
        return f"Added activity {cmd.line} to order {order['number']}"

    def _update_activity(self, tx: _Tx, cmd: c.UpdateActivity) -> str:
        order = self._order(tx, cmd.order)
        _not_frozen(order)
        act = self._activity(tx, order, cmd.line)
        _check_version(f"activity {order['number']}/{cmd.line}", cmd.version, act["version"], act)
        new = dict(act)
        if cmd.description is not None:
            new["description"] = _text(cmd.description, "description")
        if cmd.planned_start is not None or cmd.planned_end is not None:
            new["planned_start"], new["planned_end"] = _dates(
                cmd.planned_start or act["planned_start"], cmd.planned_end or act["planned_end"])
        diff = {k: new[k] for k in ("description", "planned_start", "planned_end")
                if new[k] != act[k]}
        engineers_changed = False
        if cmd.engineers is not None:
            wanted = list(dict.fromkeys(cmd.engineers))
            self._engineers(tx, wanted, field_name="engineers")
            have = list(tx.conn.scalars(select(PE.c.employee_code).where(
                PE.c.activity_id == act["id"])))
            if set(have) != set(wanted):
                engineers_changed = True
                tx.conn.execute(delete(PE).where(PE.c.activity_id == act["id"]))
                if wanted:
                    tx.conn.execute(insert(PE), [{"activity_id": act["id"], "employee_code": e}
                                                 for e in wanted])
        if not diff and not engineers_changed:
            return f"Activity {order['number']}/{cmd.line} unchanged"
        tx.conn.execute(update(ACT).where(ACT.c.id == act["id"]).values(
            **diff, version=act["version"] + 1))
        parts = [_describe(k, act[k], v) for k, v in diff.items()]
        if engineers_changed:
            parts.append("planned engineers " + (", ".join(cmd.engineers or ()) or "none"))
        note = f"activity {cmd.line}: " + "; ".join(parts)
        tx.conn.execute(insert(OC).values(order_id=order["id"], activity_id=act["id"],
                                          at=tx.now, text=note[:300]))
        tx.log(note, order=order["number"])
        n = self._refresh_shared_fields(tx, [order["id"]], act["id"])
        return f"Updated activity {order['number']}/{cmd.line}; {_n(n)} updated"

    # ---- assignments ----------------------------------------------------------------------

    def _next_number(self, tx: _Tx, activity_id: int) -> int:
        top = tx.conn.scalar(select(func.max(A.c.number)).where(A.c.activity_id == activity_id))
        return int(top or 0) + 1

    def _generate(self, tx: _Tx, cmd: c.GenerateAssignments) -> str:
        order = self._order(tx, cmd.order)
        _not_frozen(order)
        acts = tx.conn.execute(select(ACT).where(ACT.c.order_id == order["id"])
                               .order_by(ACT.c.line)).mappings().all()
        act_ids = [a["id"] for a in acts]
        planned: dict[int, list[str]] = defaultdict(list)
        for act_id, code in tx.conn.execute(
            select(PE.c.activity_id, PE.c.employee_code)
            .where(PE.c.activity_id.in_(act_ids)).order_by(PE.c.employee_code)
        ):
            planned[act_id].append(code)
        existing: dict[int, set[str]] = defaultdict(set)
        top: dict[int, int] = defaultdict(int)
        for act_id, code, number in tx.conn.execute(
            select(A.c.activity_id, A.c.employee_code, A.c.number)
            .where(A.c.activity_id.in_(act_ids))
        ):
            existing[act_id].add(code)
            top[act_id] = max(top[act_id], number)
        rows: list[dict[str, Any]] = []
        keys: list[str] = []
        for act in acts:
            for code in planned[act["id"]]:
                if code in existing[act["id"]]:
                    continue
                top[act["id"]] += 1
                rows.append({
                    "order_id": order["id"], "activity_id": act["id"], "number": top[act["id"]],
                    "employee_code": code, "planned_start": act["planned_start"],
                    "planned_end": act["planned_end"], "status": AssignmentStatus.ASSIGNED.value,
                    "version": 1,
                })
                keys.append(f"{order['number']}/{act['line']}/{top[act['id']]}")
        if not rows:
            return f"Order {order['number']}: every planned engineer has an assignment already"
        cols = tuple(rows[0])
        bulk.insert_rows(tx.conn, A, cols, [tuple(r[k] for k in cols) for r in rows])
        fresh = {(r["activity_id"], r["number"]) for r in rows}
        new_ids = [aid for aid, act_id, number in tx.conn.execute(
            select(A.c.id, A.c.activity_id, A.c.number).where(A.c.activity_id.in_(act_ids)))
            if (act_id, number) in fresh]
        for key in keys:
            tx.log(f"assignment {key} generated", order=order["number"], assignment=key)
        # R4: existing assignments of these activities gain co-engineers.
        touched = [act_id for act_id, codes in existing.items() if codes]
        siblings = list(tx.conn.scalars(select(A.c.id).where(
            A.c.activity_id.in_(touched), A.c.id.not_in(new_ids)))) if touched else []
        n = self._resync(tx, siblings, create=new_ids)
        return (f"Generated {len(rows)} assignments for order {order['number']};"
                f" {_n(n)} created or updated")

    def _create_assignment(self, tx: _Tx, cmd: c.CreateAssignment) -> str:
        order = self._order(tx, cmd.order)
        _not_frozen(order)
        act = self._activity(tx, order, cmd.line)
        self._employee(tx, cmd.engineer, field_name="engineer", engineer=True)
        start, end = _dates(cmd.planned_start or act["planned_start"],
                            cmd.planned_end or act["planned_end"])
        number = self._next_number(tx, act["id"])
        new_id = tx.conn.execute(insert(A).values(
            order_id=order["id"], activity_id=act["id"], number=number,
            employee_code=cmd.engineer, planned_start=start, planned_end=end,
            status=AssignmentStatus.ASSIGNED.value, version=1,
        ).returning(A.c.id)).scalar_one()
        key = f"{order['number']}/{cmd.line}/{number}"
        tx.log(f"assignment {key} created for {cmd.engineer}", order=order["number"],
               assignment=key)
        siblings = [i for i in self._activity_assignments(tx, act["id"]) if i != new_id]
        n = self._resync(tx, siblings, create=[new_id])
        return f"Created assignment {key} for {cmd.engineer}; {_n(n)} created or updated"

    def _move(self, tx: _Tx, cmd: c.MoveAssignment) -> str:
        order, act, row = self._assignment(tx, cmd)
        key = _key(cmd)
        _check_version(f"assignment {key}", cmd.version, row["version"], row)
        _not_frozen(order)
        _not_closed_assignment(row, key)
        start, end = _dates(cmd.planned_start, cmd.planned_end)
        if (start, end) == (row["planned_start"], row["planned_end"]):
            return f"Assignment {key} is planned so already"
        tx.conn.execute(update(A).where(A.c.id == row["id"]).values(
            planned_start=start, planned_end=end, version=row["version"] + 1))
        tx.log(f"assignment {key} moved to {start.isoformat()} - {end.isoformat()}",
               order=order["number"], assignment=key)
        n = self._resync(tx, [row["id"]], scope=frozenset({"fields"}))
        return f"Moved {key}; {_n(n)} updated"

    def _reassign(self, tx: _Tx, cmd: c.Reassign) -> str:
        order, act, row = self._assignment(tx, cmd)
        key = _key(cmd)
        _check_version(f"assignment {key}", cmd.version, row["version"], row)
        _not_frozen(order)
        _not_closed_assignment(row, key)
        self._employee(tx, cmd.engineer, field_name="engineer", engineer=True)
        if cmd.engineer == row["employee_code"]:
            return f"Assignment {key} is {cmd.engineer}'s already"
        tx.conn.execute(update(A).where(A.c.id == row["id"]).values(
            employee_code=cmd.engineer, status=AssignmentStatus.ASSIGNED.value,
            version=row["version"] + 1))
        tx.log(f"assignment {key} reassigned {row['employee_code']} -> {cmd.engineer}",
               order=order["number"], assignment=key)
        # R11 and R4: this appointment's engineer, and every sibling's co-engineers.
        n = self._resync(tx, self._activity_assignments(tx, act["id"]),
                         scope=frozenset({"fields", "participants"}))
        return f"Reassigned {key} to {cmd.engineer}; {_n(n)} updated"

    def _set_status(self, tx: _Tx, cmd: c.SetAssignmentStatus) -> str:
        order, act, row = self._assignment(tx, cmd)
        key = _key(cmd)
        _check_version(f"assignment {key}", cmd.version, row["version"], row)
        if OrderStatus(order["status"]) in {OrderStatus.CLOSED, OrderStatus.CANCELED}:
            raise Refused(f"order {order['number']} is {order['status']}: its assignments"
                          " cannot change status", field="status")
        try:
            new = AssignmentStatus(cmd.status)
        except ValueError:
            raise Invalid(f"status {cmd.status!r} is not one of "
                          + ", ".join(s.value for s in AssignmentStatus), field="status") from None
        old = row["status"]
        if new.value == old:
            return f"Assignment {key} is {old} already"
        if new.value not in ASSIGNMENT_FLOW[old]:
            raise Refused(f"assignment {key} cannot go from {old} to {new.value}", field="status")
        if (old, new.value) in DISPATCHER_ONLY_STEPS and tx.actor.role != Role.DISPATCHER:
            raise Refused(f"only a dispatcher may take {key} from {old} back to {new.value}",
                          field="status")
        tx.conn.execute(update(A).where(A.c.id == row["id"]).values(
            status=new.value, version=row["version"] + 1))
        tx.log(f"assignment {key}: {old} -> {new.value}", order=order["number"], assignment=key)
        n = self._resync(tx, [row["id"]], scope=frozenset({"fields"}))
        return f"{key} is {new.value}; {_n(n)} updated"

    def _delete(self, tx: _Tx, cmd: c.DeleteAssignment) -> str:
        order, act, row = self._assignment(tx, cmd)
        key = _key(cmd)
        _check_version(f"assignment {key}", cmd.version, row["version"], row)
        ap_id = tx.conn.scalar(select(AP.c.id).where(AP.c.assignment_id == row["id"]))
        keep = OrderStatus(order["status"]) in FINAL_ORDER
        extra = ""
        if ap_id is not None:
            if keep:
                # R14: the appointment stays as history; it no longer mirrors anything.
                tx.conn.execute(update(AP).where(AP.c.id == ap_id).values(
                    assignment_id=None, version=AP.c.version + 1))
                tx.conn.execute(update(L).where(L.c.appointment_id == ap_id).values(
                    assignment_id=None))
                tx.log(f"appointment {ap_id} kept as history (order {order['status']})",
                       order=order["number"], assignment=key, appointment=ap_id)
                self._notify_hooks(tx, [ap_id], ())
                extra = f"; appointment {ap_id} kept (order {order['status']})"
            else:
                self._notify_hooks(tx, (), [ap_id])
                tx.conn.execute(delete(AP).where(AP.c.id == ap_id))
                tx.deleted[ap_id] = None
                tx.log(f"appointment {ap_id} deleted", order=order["number"], assignment=key,
                       appointment=ap_id)
                extra = f"; appointment {ap_id} deleted"
        tx.conn.execute(delete(A).where(A.c.id == row["id"]))
        tx.log(f"assignment {key} deleted", order=order["number"], assignment=key)
        n = self._resync(tx, self._activity_assignments(tx, act["id"]),
                         scope=frozenset({"participants"}))
        return f"Deleted {key}{extra}" + (f"; {_n(n)} updated" if n else "")

    # ---- the CRM and calendar side --------------------------------------------------------

    def _appointment(self, tx: _Tx, ap_id: int) -> dict[str, Any]:
        row = tx.conn.execute(select(AP).where(AP.c.id == ap_id).with_for_update()
                              ).mappings().first()
        if row is None:
            raise NotFound(f"appointment {ap_id} does not exist", field="appointment")
        return dict(row)

    def _edit_appointment(self, tx: _Tx, cmd: c.EditAppointment) -> str:
        ap = self._appointment(tx, cmd.appointment)
        _check_version(f"appointment {ap['id']}", cmd.version, ap["version"], ap)
        if not isinstance(cmd.changes, dict) or not cmd.changes:
            raise Invalid("nothing to change: give one or more fields", field="changes")
        unknown = sorted(set(cmd.changes) - set(MIRRORED_FIELDS))
        if unknown:
            raise Invalid(f"appointment has no editable field {unknown[0]!r}", field=unknown[0])
        if ap["assignment_id"] is not None:
            name = next(iter(cmd.changes))
            origin = f"{ap['origin_order']}/{ap['origin_line']}/{ap['origin_assignment']}"
            raise Refused(f"R9: {name} of appointment {ap['id']} mirrors assignment {origin};"
                          " change it on the service side", field=name)
        values = _appointment_edit(cmd.changes, ap)
        diff = {k: v for k, v in values.items() if ap[k] != v}
        if not diff:
            return f"Appointment {ap['id']} unchanged"
        tx.conn.execute(update(AP).where(AP.c.id == ap["id"]).values(
            **diff, version=ap["version"] + 1))
        tx.log(f"appointment {ap['id']}: {', '.join(diff)} edited", order=ap["origin_order"],
               appointment=ap["id"])
        self._notify_hooks(tx, [ap["id"]], ())
        return f"Edited appointment {ap['id']} ({', '.join(diff)})"

    def _calendar_move(self, tx: _Tx, cmd: c.CalendarMove) -> str:
        ap = self._appointment(tx, cmd.appointment)
        start, end = _dates(cmd.start, cmd.end, names=("start", "end"))
        if (start, end) == (ap["start"], ap["end"]):
            return f"Appointment {ap['id']} is there already"
        tx.conn.execute(update(AP).where(AP.c.id == ap["id"]).values(
            start=start, end=end, version=ap["version"] + 1))
        tx.log(f"appointment {ap['id']} moved in the organizer's calendar to "
               f"{start.isoformat()} - {end.isoformat()}", order=ap["origin_order"],
               appointment=ap["id"])
        self._notify_hooks(tx, [ap["id"]], ())
        params = self._params(tx)
        summary = f"Appointment {ap['id']} moved by the organizer"
        if ap["assignment_id"] is None or not (
            params["create_crm_appointments"] and params["update_assignments_from_appointment_dates"]
        ):
            return summary
        row = tx.conn.execute(select(A, O.c.status.label("order_status")).join(
            O, O.c.id == A.c.order_id).where(A.c.id == ap["assignment_id"])).mappings().one()
        key = f"{ap['origin_order']}/{ap['origin_line']}/{ap['origin_assignment']}"
        if OrderStatus(row["order_status"]) in FROZEN_ORDER:
            tx.log(f"P4: assignment {key} not moved, order is {row['order_status']}",
                   order=ap["origin_order"], assignment=key)
            return summary + f"; assignment {key} kept (order {row['order_status']})"
        # P4: the assignment follows, and everything that depends on its dates with it.
        tx.conn.execute(update(A).where(A.c.id == row["id"]).values(  # row was read unlocked
            planned_start=start, planned_end=end, version=A.c.version + 1))
        tx.log(f"assignment {key} moved with its appointment (P4)", order=ap["origin_order"],
               assignment=key)
        self._resync(tx, [row["id"]], scope=frozenset({"fields"}))
        return summary + f"; assignment {key} follows (P4)"

    def _calendar_note(self, tx: _Tx, cmd: c.CalendarNote) -> str:
        ap = self._appointment(tx, cmd.appointment)
        detail = _text(cmd.detail, "detail", MAX_LEN["information"])
        tx.log(detail, order=ap["origin_order"], appointment=ap["id"])
        if cmd.resend:
            self._notify_hooks(tx, [ap["id"]], ())
        return detail


# ---- helpers ------------------------------------------------------------------------------

_PARTICIPANT_COLUMNS = ("appointment_id", "seq", "type", "code", "name", "attendance", "email")
_REFERENCE_COLUMNS = ("appointment_id", "sequence", "type", "note")
_LINK_COLUMNS = ("appointment_id", "assignment_id", "order_kind", "order_number", "line",
                 "assignment_number")
_JOURNAL_COLUMNS = ("at", "actor", "op", "order_number", "assignment", "appointment_id",
                    "detail")

_PARAM_LABEL = {
    "create_crm_appointments": "P1",
    "organizer_code": "P2",
    "include_sold_to_contact": "P3",
    "update_assignments_from_appointment_dates": "P4",
}


def _authorize(tx: _Tx, command: c.Command) -> None:
    """Who may do what, whatever the interface: the console hides keys, this refuses."""
    role = tx.actor.role
    if isinstance(command, c.CalendarNote):
        if role != Role.CALENDAR:
            raise Refused("only the calendar sync writes calendar notes", field="appointment")
        return
    if isinstance(command, c.CalendarMove):
        if role != Role.CALENDAR:
            raise Refused("R15: only the organizer's calendar moves an appointment; move the"
                          " assignment instead", field="appointment")
        return
    if role == Role.DISPATCHER:
        return
    if role == Role.TECHNICIAN and isinstance(command, c.SetAssignmentStatus):
        if command.status not in TECHNICIAN_STATUSES:
            raise Refused(f"a technician may set Accepted, Started, Completed or Rejected, not"
                          f" {command.status}", field="status")
        owner = tx.conn.scalar(
            select(A.c.employee_code).join(ACT, ACT.c.id == A.c.activity_id)
            .join(O, O.c.id == A.c.order_id)
            .where(O.c.number == command.order, ACT.c.line == command.line,
                   A.c.number == command.assignment))
        if owner is not None and owner != tx.actor.employee:
            raise Refused(f"{tx.actor.name} may change only their own assignments; "
                          f"{_key(command)} is {owner}'s", field="assignment")
        return
    what = {Role.SUPERVISOR: "a supervisor's console is read-only",
            Role.TECHNICIAN: "a technician may only change the status of their own assignments",
            Role.CALENDAR: "the calendar may only move appointments (R15)"}[role]
    raise Refused(f"{tx.actor.name}: {what}")


SHARED_DATA_COMMANDS = (c.UpsertEmployee, c.UpsertPartner, c.UpsertContact, c.SetParameters,
                        c.CalendarMove)
"""Commands that change what other orders' appointments are built from (names, parameters),
or (the calendar) write an assignment without its order's row lock."""
WRITER_LOCK = 0x64697370  # "disp"


def _writer_lock(conn: Connection, commands: Sequence[c.Command]) -> None:
    """PostgreSQL only (SQLite has one writer at a time anyway). Commands on orders run side by
    side, each holding its order's row lock; they share this lock. A command in
    SHARED_DATA_COMMANDS takes it alone: otherwise a rename commits between another command's
    reading of the old name and its writing, and appointments keep the old name (measured:
    20 check violations in 15 s of benchmarks/load.py with 8 writers)."""
    alone = any(isinstance(cmd, SHARED_DATA_COMMANDS) for cmd in commands)
    lock = func.pg_advisory_xact_lock if alone else func.pg_advisory_xact_lock_shared
    conn.execute(select(lock(WRITER_LOCK)))


def _check_version(what: str, expected: int | None, actual: int, current: dict) -> None:
    if expected is not None and expected != actual:
        raise Conflict(
            f"{what} was changed by someone else (version {actual}, you had {expected});"
            " reload and try again",
            what=what, expected=expected, actual=actual, current=current,
        )


def _not_frozen(order: dict[str, Any]) -> None:
    if OrderStatus(order["status"]) in FROZEN_ORDER:
        raise Refused(f"order {order['number']} is {order['status']}: its planning can no"
                      " longer change", field="order")


def _not_closed_assignment(row: dict[str, Any], key: str) -> None:
    if row["status"] in (AssignmentStatus.COMPLETED, AssignmentStatus.REJECTED):
        raise Refused(f"assignment {key} is {row['status']}: reopen it before re-planning",
                      field="assignment")


def _order_status(value: str) -> OrderStatus:
    try:
        return OrderStatus(value)
    except ValueError:
        raise Invalid(f"status {value!r} is not one of "
                      + ", ".join(s.value for s in OrderStatus), field="status") from None


def _order_step_allowed(old: OrderStatus, new: OrderStatus) -> bool:
    if old in (OrderStatus.CLOSED, OrderStatus.CANCELED):
        return False
    if new == OrderStatus.CANCELED:
        return old not in FINAL_ORDER
    i, j = ORDER_FLOW.index(old), ORDER_FLOW.index(new)
    if old in FINAL_ORDER:
        return j == i + 1  # Completed -> Costed -> Closed, never back
    return True


def _key(cmd: Any) -> str:
    return f"{cmd.order}/{cmd.line}/{cmd.assignment}"


def _n(count: int) -> str:
    return f"{count} appointment{'s' if count != 1 else ''}"


def _text(value: Any, name: str, limit: int | None = None) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{name} must be text", field=name)
    text = value.strip()
    if not text:
        raise Invalid(f"{name} must not be empty", field=name)
    base = name.rsplit(".", 1)[-1]
    limit = limit or MAX_LEN.get(base, MAX_LEN.get("code" if base in (
        "sold_to", "ship_to", "partner", "engineer", "contact") else base, 200))
    if len(text) > limit:
        raise Invalid(f"{name} is {len(text)} characters long; at most {limit}", field=name)
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in text):
        raise Invalid(f"{name} contains control characters", field=name)
    return text


def _opt_text(value: Any, name: str) -> str | None:
    if value is None or value == "":
        return None
    return _text(value, name)


def _email(value: Any) -> str | None:
    email = _opt_text(value, "email")
    if email is not None and ("@" not in email or " " in email or email.startswith("@")):
        raise Invalid(f"email {email!r} is not an e-mail address", field="email")
    return email


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"{name} must be a whole number", field=name)
    if not 0 < value < 1_000_000:
        raise Invalid(f"{name} must be between 1 and 999999", field=name)
    return value


def _dates(start: Any, end: Any, where: str = "",
           names: tuple[str, str] = ("planned_start", "planned_end")
           ) -> tuple[pendulum.DateTime, pendulum.DateTime]:
    from app.db.types import to_utc

    out = []
    for value, name in ((start, where + names[0]), (end, where + names[1])):
        if not isinstance(value, dt.datetime):
            raise Invalid(f"{name} must be a date and time", field=name)
        if value.tzinfo is None or value.utcoffset() is None:
            raise Invalid(f"{name} has no time zone offset", field=name)
        utc = to_utc(value)
        if not MIN_YEAR <= utc.year <= MAX_YEAR:
            raise Invalid(f"{name} {utc.year} is outside {MIN_YEAR}-{MAX_YEAR}", field=name)
        out.append(utc)
    if out[1] <= out[0]:
        raise Invalid(f"{where}{names[1]} ({out[1].isoformat()}) must be after "
                      f"{names[0]} ({out[0].isoformat()})", field=where + names[1])
    return out[0], out[1]


def _describe(key: str, old: Any, new: Any) -> str:
    label = key.replace("_", "-") if key in ("sold_to", "ship_to") else key.replace("_", " ")
    if isinstance(new, dt.datetime):
        new = new.isoformat()
    return f"{label} {new if new is not None else '-'}"


def _appointment_edit(changes: dict[str, Any], ap: dict[str, Any]) -> dict[str, Any]:
    """Validate a CRM-side edit of an appointment that no longer mirrors (history)."""
    from app.db.models import AppointmentStatus, ShowTimeAs

    out: dict[str, Any] = {}
    for k, v in changes.items():
        if k in ("start", "end", "due_date"):
            if not isinstance(v, dt.datetime):
                raise Invalid(f"{k} must be a date and time", field=k)
            out[k] = v
        elif k == "status":
            if not isinstance(v, str) or v not in {s.value for s in AppointmentStatus}:
                raise Invalid(f"status {v!r} is not Planned, Held or Not Held", field=k)
            out[k] = v
        elif k == "show_time_as":
            if not isinstance(v, str) or v not in {s.value for s in ShowTimeAs}:
                raise Invalid(f"show_time_as {v!r} is not Free, Tentative, Busy or Out of Office",
                              field=k)
            out[k] = v
        elif k == "information":
            out[k] = _text(v, k, MAX_LEN["information"])
        else:
            out[k] = _text(v, k)
    if "start" in out or "end" in out:
        out["start"], out["end"] = _dates(out.get("start", ap["start"]),
                                          out.get("end", ap["end"]), names=("start", "end"))
    return out


def _is_transient(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    code = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return "database is locked" in text or "database is busy" in text or code in (
        "40001", "40P01", "55P03")  # serialization, deadlock, lock timeout


def _short(exc: DBAPIError) -> str:
    return str(exc.orig).splitlines()[0][:200]


def dumps(change: Change) -> str:
    return json.dumps(change.to_json())
