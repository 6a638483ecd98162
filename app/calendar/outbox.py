"""The calendar outbox: appointment changes queued for the calendar server.

`enqueue_hook` runs inside the coordinator's transaction (it is one of its `appointment_hooks`),
so a change and its outbox row are committed together or not at all: nothing is lost between the
database and the calendar. It only queues while a calendar is set up (`calendar_settings` row
enabled); `enqueue_all` queues everything when one is set up later.

The queue is keyed by the appointment's calendar UID (`calendar_items`), created here on first
sight: random and never reused. When an appointment is deleted its item is detached
(`appointment_id` NULL) and queued, so the push deletes its events even if the database hands the
same appointment id to a new appointment later.

`sync_state`/`sync_states` give the per-appointment state the console shows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import pendulum
from sqlalchemy import Connection, Table, func, insert, select, update

from app.db import models as m

SETTINGS: Table = m.CalendarSettings.__table__  # type: ignore[assignment]
ITEMS: Table = m.CalendarItem.__table__  # type: ignore[assignment]
EVENTS: Table = m.CalendarEvent.__table__  # type: ignore[assignment]
OUTBOX: Table = m.CalendarOutbox.__table__  # type: ignore[assignment]
AP: Table = m.Appointment.__table__  # type: ignore[assignment]
CHUNK = 500


def _chunks(ids: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(ids), CHUNK):
        yield ids[i:i + CHUNK]


def calendar_enabled(conn: Connection) -> bool:
    return bool(conn.scalar(select(SETTINGS.c.enabled).where(SETTINGS.c.id == 1)))


def enqueue_hook(conn: Connection, changed: Collection[int], deleted: Collection[int]) -> None:
    """The coordinator's appointment hook: queue the changed and deleted appointments."""
    if not (changed or deleted) or not calendar_enabled(conn):
        return
    now = pendulum.now("UTC")
    uids: list[str] = []
    if changed:
        uids += ensure_items(conn, list(dict.fromkeys(changed)))
    if deleted:
        for part in _chunks(list(dict.fromkeys(deleted))):
            gone = list(conn.scalars(select(ITEMS.c.uid).where(ITEMS.c.appointment_id.in_(part))))
            if gone:
                conn.execute(update(ITEMS).where(ITEMS.c.uid.in_(gone)).values(
                    appointment_id=None))
                uids += gone
    _queue(conn, uids, now)


def ensure_items(conn: Connection, appointment_ids: Sequence[int]) -> list[str]:
    """The UIDs of these appointments, creating the missing ones."""
    from app.calendar.ical import new_uid  # lazily: every Coordinator imports this module

    out: list[str] = []
    for part in _chunks(list(appointment_ids)):
        have = dict(conn.execute(select(ITEMS.c.appointment_id, ITEMS.c.uid).where(
            ITEMS.c.appointment_id.in_(part))).all())
        new = [{"uid": new_uid(), "appointment_id": ap, "sequence": 0}
               for ap in part if ap not in have]
        if new:
            conn.execute(insert(ITEMS), new)
            have.update({r["appointment_id"]: r["uid"] for r in new})
        out += [have[ap] for ap in part]
    return out


def _queue(conn: Connection, uids: Sequence[str], now: dt.datetime) -> None:
    if uids:
        conn.execute(insert(OUTBOX), [
            {"uid": uid, "enqueued_at": now, "attempts": 0, "next_attempt_at": None,
             "last_error": None} for uid in dict.fromkeys(uids)])


def enqueue_uids(conn: Connection, uids: Sequence[str]) -> None:
    _queue(conn, uids, pendulum.now("UTC"))


def enqueue_all(conn: Connection) -> int:
    """Queue every appointment (after `calendar setup`); returns how many."""
    ids = list(conn.scalars(select(AP.c.id).order_by(AP.c.id)))
    uids = ensure_items(conn, ids)
    _queue(conn, uids, pendulum.now("UTC"))
    return len(uids)


# ---- the visible state ---------------------------------------------------------------------


def sync_states(conn: Connection, appointment_ids: Sequence[int],
                now: dt.datetime | None = None) -> dict[int, str]:
    """Each appointment's calendar state: "off" (no calendar set up), "not synced", "synced",
    "queued", "retrying at HH:MM UTC: <reason>" or "error: <reason>"."""
    if not calendar_enabled(conn):
        return {ap: "off" for ap in appointment_ids}
    now = now or pendulum.now("UTC")
    out: dict[int, str] = {ap: "not synced" for ap in appointment_ids}
    for part in _chunks(list(appointment_ids)):
        uid_of = dict(conn.execute(select(ITEMS.c.uid, ITEMS.c.appointment_id).where(
            ITEMS.c.appointment_id.in_(part))).all())
        if not uid_of:
            continue
        synced = set(conn.scalars(select(EVENTS.c.uid).where(
            EVENTS.c.uid.in_(list(uid_of)), EVENTS.c.etag.is_not(None)).distinct()))
        for uid in synced:
            out[uid_of[uid]] = "synced"
        rows = conn.execute(
            select(OUTBOX.c.uid, func.max(OUTBOX.c.attempts), func.max(OUTBOX.c.next_attempt_at),
                   func.max(OUTBOX.c.last_error))
            .where(OUTBOX.c.uid.in_(list(uid_of))).group_by(OUTBOX.c.uid)).all()
        for uid, attempts, next_at, error in rows:
            out[uid_of[uid]] = _describe(attempts or 0, next_at, error, now)
    return out


def sync_state(conn: Connection, appointment_id: int, now: dt.datetime | None = None) -> str:
    return sync_states(conn, [appointment_id], now)[appointment_id]


def _describe(attempts: int, next_at: Any, error: str | None, now: dt.datetime) -> str:
    if not attempts:
        return "queued"
    if error and error.startswith(PERMANENT):
        return "error: " + error[len(PERMANENT):]
    if next_at is not None and next_at > now:
        return f"retrying at {next_at:%H:%M} UTC: {error or 'server unavailable'}"
    return f"queued (retry {attempts}): {error or 'server unavailable'}"


PERMANENT = "refused: "
"""`last_error` prefix of an error that waiting will not cure (a 403, a 400): shown as error."""
