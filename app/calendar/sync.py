"""Two-way sync between the appointments and the calendar server.

Pull first, then push:
- **Pull** reads the organizer's collection (and each engineer's) by sync token (a full listing
  by ETag when the token is refused). Objects whose ETag is the one we wrote are our own echo.
  In the organizer's collection a changed DTSTART/DTEND becomes the coordinator's
  `CalendarMove` (R15; the coordinator applies P4). Any other edit, any edit in an engineer's
  calendar, and a deleted event are put back by the next push (R9), and the coordinator's
  `CalendarNote` says so in the journal in the same transaction that queues the rewrite.
- **Push** drains the outbox: `If-None-Match: *` to create, `If-Match: <etag>` to update or
  delete. A 412 re-reads the object and compares (bounded retries). A server that is down or
  answers 5xx leaves the rows queued with a retry time; an object we wrote but could not record
  is recognised by its UID and content on the next attempt, so nothing is sent twice.

State lives in the calendar tables (`calendar_items`, `calendar_events`, `calendar_outbox`,
`calendar_collections`), written here; domain data only changes through the coordinator.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pendulum
from sqlalchemy import Connection, Engine, Table, delete, func, insert, or_, select, update

from app.calendar import ical
from app.calendar.caldav_gateway import (
    ConfigError,
    Gateway,
    ServerRefused,
    Unavailable,
    read_password,
)
from app.calendar.outbox import EVENTS, ITEMS, OUTBOX, PERMANENT, SETTINGS, enqueue_all
from app.db import models as m
from app.db.engine import read_connection, write_transaction
from app.sync import commands as c
from app.sync.errors import DispatchError

COLLECTIONS: Table = m.CalendarCollection.__table__  # type: ignore[assignment]
AP: Table = m.Appointment.__table__  # type: ignore[assignment]
P: Table = m.Participant.__table__  # type: ignore[assignment]
A: Table = m.Assignment.__table__  # type: ignore[assignment]
E: Table = m.Employee.__table__  # type: ignore[assignment]
PRECONDITION_RETRIES = 3
BATCH = 100
MAX_DELAY = 900


@dataclass(frozen=True)
class Collection:
    id: int
    kind: str  # organizer / engineer
    employee_code: str | None
    url: str
    sync_token: str | None

    @property
    def label(self) -> str:
        if self.kind == "organizer":
            return "the organizer's calendar"
        return f"engineer {self.employee_code}'s calendar"

    def object_url(self, href: str) -> str:
        return (self.url if self.url.endswith("/") else self.url + "/") + href


@dataclass(frozen=True)
class Config:
    server_url: str
    username: str | None
    password_env: str | None
    password_file: str | None
    tzid: str
    enabled: bool
    collections: tuple[Collection, ...]

    @property
    def organizer(self) -> Collection | None:
        return next((x for x in self.collections if x.kind == "organizer"), None)

    def engineer(self, code: str | None) -> Collection | None:
        return next((x for x in self.collections
                     if x.kind == "engineer" and x.employee_code == code), None)

    def gateway(self) -> Gateway:
        return Gateway(self.server_url, self.username,
                       read_password(self.password_env, self.password_file))


@dataclass
class SyncReport:
    """What one round did; `summary()` is the line the CLI prints."""

    pushed: int = 0
    deleted: int = 0
    skipped: int = 0
    pulled: int = 0
    moved: int = 0
    reverted: int = 0
    recreated: int = 0
    unreadable: int = 0
    queued: int = 0
    unavailable: str | None = None
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"pushed {self.pushed}", f"deleted {self.deleted}", f"pulled {self.pulled}",
                 f"moved {self.moved}", f"reverted {self.reverted}",
                 f"recreated {self.recreated}", f"unreadable {self.unreadable}",
                 f"still queued {self.queued}"]
        text = "calendar sync: " + ", ".join(parts)
        if self.unavailable:
            text += f"; server unavailable ({self.unavailable}), will retry"
        for err in self.errors:
            text += f"; {err}"
        return text

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


# ---- configuration ---------------------------------------------------------------------------


def load_config(conn: Connection) -> Config | None:
    row = conn.execute(select(SETTINGS).where(SETTINGS.c.id == 1)).mappings().first()
    if row is None:
        return None
    cols = tuple(Collection(r.id, r.kind, r.employee_code, r.url, r.sync_token) for r in
                 conn.execute(select(COLLECTIONS).order_by(COLLECTIONS.c.id)))
    return Config(row["server_url"], row["username"], row["password_env"], row["password_file"],
                  row["tzid"], bool(row["enabled"]), cols)


def setup(engine: Engine, *, server_url: str, organizer_calendar: str | None,
          engineers: dict[str, str] | None = None, username: str | None = None,
          password_env: str | None = None, password_file: str | None = None,
          tzid: str = "Europe/Rome", check: bool = False) -> str:
    """Save the calendar configuration (never a password) and queue every appointment.

    Collections not named again are kept; `check` first asks the server for each collection.
    Raises `ConfigError` (bad input) or `ServerRefused`/`Unavailable` (check failed)."""
    if not re.match(r"^https?://[^\s/]+", server_url or ""):
        raise ConfigError(f"server URL {server_url!r} is not an http(s) URL")
    if password_env and password_file:
        raise ConfigError("give --password-env or --password-file, not both")
    try:
        ical.check_tzid(tzid)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    engineers = engineers or {}
    urls = [u for u in [organizer_calendar, *engineers.values()] if u]
    for u in urls:
        if not re.match(r"^https?://[^\s/]+", u):
            raise ConfigError(f"calendar URL {u!r} is not an http(s) URL")
    with write_transaction(engine) as conn:
        for employee in engineers:
            if conn.scalar(select(E.c.code).where(E.c.code == employee)) is None:
                raise ConfigError(f"employee {employee!r} does not exist")
    if check:
        gw = Gateway(server_url, username, read_password(password_env, password_file))
        try:
            for u in urls:
                gw.check(u)
        finally:
            gw.close()
    with write_transaction(engine) as conn:
        values = {"server_url": server_url, "username": username, "password_env": password_env,
                  "password_file": password_file, "tzid": tzid, "enabled": True}
        if conn.scalar(select(SETTINGS.c.id).where(SETTINGS.c.id == 1)) is None:
            conn.execute(insert(SETTINGS).values(id=1, **values))
        else:
            conn.execute(update(SETTINGS).where(SETTINGS.c.id == 1).values(**values))
        wanted: list[tuple[str, str | None, str]] = []
        if organizer_calendar:
            wanted.append(("organizer", None, organizer_calendar))
        wanted += [("engineer", eng_code, url) for eng_code, url in engineers.items()]
        for kind, code, url in wanted:
            cond = (COLLECTIONS.c.kind == kind) & (
                COLLECTIONS.c.employee_code.is_(None) if code is None
                else COLLECTIONS.c.employee_code == code)
            old = conn.execute(select(COLLECTIONS).where(cond)).mappings().first()
            if old is not None and old["url"] == url:
                continue
            if old is not None:  # a new URL: its events there are no longer ours to track
                conn.execute(delete(EVENTS).where(EVENTS.c.collection_id == old["id"]))
                conn.execute(delete(COLLECTIONS).where(COLLECTIONS.c.id == old["id"]))
            conn.execute(delete(COLLECTIONS).where(COLLECTIONS.c.url == url))
            conn.execute(insert(COLLECTIONS).values(kind=kind, employee_code=code, url=url))
        n = enqueue_all(conn)
        total = conn.scalar(select(func.count()).select_from(COLLECTIONS))
    return (f"calendar set up: {server_url}, {total} calendar(s), time zone {tzid};"
            f" {n} appointment(s) queued")


def disable(engine: Engine) -> str:
    with write_transaction(engine) as conn:
        conn.execute(update(SETTINGS).where(SETTINGS.c.id == 1).values(enabled=False))
    return "calendar sync off: changes are no longer queued"


def status(engine: Engine, now: dt.datetime | None = None) -> dict[str, Any]:
    """Configuration and queue figures for `dispatch calendar status`."""
    now = now or pendulum.now("UTC")
    with read_connection(engine) as conn:
        cfg = load_config(conn)
        if cfg is None:
            return {"configured": False}
        rows = conn.execute(select(COLLECTIONS)).mappings().all()
        queued = conn.scalar(select(func.count(func.distinct(OUTBOX.c.uid))))
        waiting = conn.scalar(select(func.count(func.distinct(OUTBOX.c.uid))).where(
            OUTBOX.c.next_attempt_at > now, or_(OUTBOX.c.last_error.is_(None),
                                                OUTBOX.c.last_error.not_like(PERMANENT + "%"))))
        failed = conn.scalar(select(func.count(func.distinct(OUTBOX.c.uid))).where(
            OUTBOX.c.last_error.like(PERMANENT + "%")))
        synced = conn.scalar(select(func.count(func.distinct(EVENTS.c.uid))).where(
            EVENTS.c.etag.is_not(None)))
        last_error = conn.scalar(select(OUTBOX.c.last_error).where(
            OUTBOX.c.last_error.is_not(None)).order_by(OUTBOX.c.id.desc()).limit(1))
    return {
        "configured": True, "enabled": cfg.enabled, "server": cfg.server_url,
        "username": cfg.username, "password_from": (
            f"${cfg.password_env}" if cfg.password_env else cfg.password_file or "none"),
        "tzid": cfg.tzid,
        "calendars": [{"kind": r["kind"], "employee": r["employee_code"], "url": r["url"],
                       "last_pull": r["last_pull_at"].isoformat() if r["last_pull_at"] else None,
                       "last_error": r["last_error"]} for r in rows],
        "appointments_synced": synced, "queued": queued, "retrying": waiting,
        "errors": failed, "last_error": last_error,
    }


# ---- loading what to write -------------------------------------------------------------------


@dataclass
class _Plan:
    """What a pull decided: coordinator commands, event state to save, the new sync token."""

    commands: list[c.Command] = field(default_factory=list)
    state: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    forget: list[tuple[str, int]] = field(default_factory=list)
    token: tuple[int, str | None] | None = None
    sequences: dict[str, int] = field(default_factory=dict)  # uid -> a SEQUENCE seen there


@dataclass
class _Item:
    uid: str
    appointment_id: int | None
    sequence: int
    significant_hash: str | None
    max_outbox_id: int = 0
    desired: ical.EventData | None = None
    engineer: str | None = None
    mirrors: bool = False
    events: dict[int, dict[str, Any]] = field(default_factory=dict)


def _load_items(conn: Connection, uids: Sequence[str], tzid: str) -> dict[str, _Item]:
    items = {r.uid: _Item(r.uid, r.appointment_id, r.sequence, r.significant_hash)
             for r in conn.execute(select(ITEMS).where(ITEMS.c.uid.in_(list(uids))))}
    for uid, max_id in conn.execute(select(OUTBOX.c.uid, func.max(OUTBOX.c.id)).where(
            OUTBOX.c.uid.in_(list(uids))).group_by(OUTBOX.c.uid)):
        if uid in items:
            items[uid].max_outbox_id = max_id
    for r in conn.execute(select(EVENTS).where(EVENTS.c.uid.in_(list(uids)))).mappings():
        items[r["uid"]].events[r["collection_id"]] = dict(r)
    by_ap = {it.appointment_id: it for it in items.values() if it.appointment_id is not None}
    if by_ap:
        _attach_desired(conn, by_ap, tzid)
    return items


def _attach_desired(conn: Connection, by_ap: dict[int, _Item], tzid: str) -> None:
    ids = list(by_ap)
    rows = conn.execute(select(AP, A.c.employee_code).outerjoin(
        A, A.c.id == AP.c.assignment_id).where(AP.c.id.in_(ids))).mappings().all()
    people: dict[int, list[ical.Attendee]] = {}
    for p in conn.execute(select(P).where(P.c.appointment_id.in_(ids)).order_by(
            P.c.appointment_id, P.c.seq)).mappings():
        people.setdefault(p["appointment_id"], []).append(ical.Attendee(
            p["type"], p["code"], p["name"], p["attendance"], p["email"]))
    for r in rows:
        it = by_ap[r["id"]]
        it.engineer = r["employee_code"]
        it.mirrors = r["assignment_id"] is not None
        it.desired = ical.EventData(
            uid=it.uid, sequence=it.sequence, appointment_id=r["id"], subject=r["subject"],
            location=r["location"], information=r["information"], status=r["status"],
            show_time_as=r["show_time_as"], start=r["start"], end=r["end"], tzid=tzid,
            attendees=tuple(people.get(r["id"], [])))


def desired_event(conn: Connection, appointment_id: int, tzid: str) -> ical.EventData | None:
    uid = conn.scalar(select(ITEMS.c.uid).where(ITEMS.c.appointment_id == appointment_id))
    if uid is None:
        return None
    return _load_items(conn, [uid], tzid)[uid].desired


def _sequenced(it: _Item) -> tuple[ical.EventData, str]:
    """The event with our SEQUENCE: one up when a significant field changed since last time."""
    assert it.desired is not None
    sig = ical.significant_hash(it.desired)
    seq = it.sequence
    if it.significant_hash is not None and sig != it.significant_hash:
        seq += 1
    return replace(it.desired, sequence=seq), sig


# ---- the round ---------------------------------------------------------------------------------


class Syncer:
    """One round of sync against one server. `coordinator` carries moves and notes."""

    def __init__(self, engine: Engine, cfg: Config, gateway: Gateway, coordinator: Any,
                 now: dt.datetime) -> None:
        self.engine = engine
        self.cfg = cfg
        self.gw = gateway
        self.coord = coordinator
        self.now = now
        self.report = SyncReport()
        self._tried: set[str] = set()

    # ---- journal and moves through the coordinator ----------------------------------------

    def _note(self, ap_id: int, detail: str, *, resend: bool = True) -> None:
        self._apply(_Plan(commands=[c.CalendarNote(ap_id, _clean(detail), resend)]))

    def _apply(self, plan: _Plan) -> set[int]:
        """Run the plan's moves and notes through the coordinator in one transaction (a refused
        move becomes a note, a note about a vanished appointment is dropped), then save the
        plan's event state. Returns the appointments that moved."""
        commands = list(plan.commands)
        moved: set[int] = set()
        while commands:
            try:
                self.coord.execute_many(commands, c.Actor.calendar())
                moved = {x.appointment for x in commands if isinstance(x, c.CalendarMove)}
                break
            except DispatchError as exc:
                i = getattr(exc, "index", None)
                if i is None or not 0 <= i < len(commands):
                    self.report.errors.append(str(exc))
                    break
                bad = commands.pop(i)
                if isinstance(bad, c.CalendarMove):
                    self.report.moved -= 1
                    self.report.reverted += 1
                    commands.insert(i, c.CalendarNote(bad.appointment, _clean(
                        f"calendar: the move in the organizer's calendar was refused ({exc});"
                        " reverted")))
                else:
                    self.report.errors.append(f"appointment {getattr(bad, 'appointment', '?')}:"
                                              f" {exc}")
        if plan.state or plan.forget or plan.token is not None or plan.sequences:
            with write_transaction(self.engine) as conn:
                for uid, seen in plan.sequences.items():  # ours stays above any client's
                    conn.execute(update(ITEMS).where(ITEMS.c.uid == uid,
                                                     ITEMS.c.sequence < seen).values(
                        sequence=seen))
                for (uid, cid), values in plan.state.items():
                    conn.execute(update(EVENTS).where(EVENTS.c.uid == uid,
                                                      EVENTS.c.collection_id == cid).values(
                        **values))
                for uid, cid in plan.forget:
                    conn.execute(delete(EVENTS).where(EVENTS.c.uid == uid,
                                                      EVENTS.c.collection_id == cid))
                if plan.token is not None:
                    cid, token = plan.token
                    conn.execute(update(COLLECTIONS).where(COLLECTIONS.c.id == cid).values(
                        sync_token=token, last_pull_at=self.now, last_error=None))
        return moved

    # ---- pull -----------------------------------------------------------------------------

    def pull(self) -> None:
        for col in self.cfg.collections:
            try:
                self._pull_collection(col)
            except ServerRefused as exc:
                self.report.errors.append(str(exc))
                with write_transaction(self.engine) as conn:
                    conn.execute(update(COLLECTIONS).where(COLLECTIONS.c.id == col.id).values(
                        last_error=str(exc)[:500]))

    def _pull_collection(self, col: Collection) -> None:
        changes = self.gw.changes(col.url, col.sync_token)
        names = None if changes.full else [*changes.changed, *changes.deleted]
        known: dict[str, dict[str, Any]] = {}
        q = select(EVENTS, ITEMS.c.appointment_id).join(ITEMS, ITEMS.c.uid == EVENTS.c.uid
                                                        ).where(EVENTS.c.collection_id == col.id)
        with read_connection(self.engine) as conn:
            parts = [None] if names is None else [names[i:i + BATCH]
                                                  for i in range(0, len(names), BATCH)]
            for part in parts:
                sel = q if part is None else q.where(EVENTS.c.href.in_(part))
                known.update({r["href"]: dict(r) for r in conn.execute(sel).mappings()})
        changed = [h for h, etag in changes.changed.items()
                   if h in known and etag != known[h]["etag"]]
        gone = [h for h in changes.deleted if h in known and known[h]["etag"]]
        if changes.full:  # a full listing: what is not in it is gone
            gone += [h for h, r in known.items()
                     if r["etag"] and h not in changes.changed and h not in gone]
        fetched = self.gw.fetch(col.url, changed)
        with read_connection(self.engine) as conn:
            items = _load_items(conn, [known[h]["uid"] for h in changed], self.cfg.tzid)
        plan = _Plan(token=(col.id, changes.token))
        for href in changed:
            if href not in fetched:
                gone.append(href)
                continue
            etag, data = fetched[href]
            self.report.pulled += 1
            item = items.get(known[href]["uid"])
            self._inspect(col, known[href], etag, data, item.desired if item else None, plan)
        for href in gone:
            self._event_deleted(col, known[href], plan)
        self._apply(plan)

    def _event_deleted(self, col: Collection, row: dict[str, Any], plan: _Plan) -> None:
        ap_id = row.get("appointment_id")
        if ap_id is None:  # our own deletion is under way, or done: forget it
            plan.forget.append((row["uid"], col.id))
            return
        plan.state[(row["uid"], col.id)] = {"etag": None, "synced_hash": None}
        self.report.recreated += 1
        plan.commands.append(c.CalendarNote(
            ap_id, f"calendar: the event was deleted in {col.label}; recreated (R9)"))

    def _inspect(self, col: Collection, row: dict[str, Any], etag: str | None, data: bytes,
                 want: ical.EventData | None, plan: _Plan) -> None:
        """Someone else wrote this object. Decide: our echo, an organizer move, an edit to put
        back, or an unreadable object; add the commands and the new event state to `plan`."""
        ap_id = row.get("appointment_id")
        if ap_id is None:
            return
        key = (row["uid"], col.id)

        def adopt(synced: ical.EventData | None) -> None:
            values: dict[str, Any] = {"etag": etag, "synced_hash": None}
            if synced is not None:
                values.update(synced_hash=ical.content_hash(synced), synced_start=synced.start,
                              synced_end=synced.end, synced_sequence=synced.sequence)
            plan.state[key] = values

        try:
            got = ical.parse(data)
            if got.uid != row["uid"]:
                raise ical.MalformedEvent(f"its UID is {got.uid[:80]!r}, not ours")
        except ical.MalformedEvent as exc:
            adopt(None)
            self.report.unreadable += 1
            plan.commands.append(c.CalendarNote(ap_id, _clean(
                f"calendar: the event in {col.label} could not be read ({exc});"
                " rewritten from the service side")))
            return
        if want is not None and _same(got, want):
            adopt(got)  # our own write coming back, or already what we want
            return
        dates = (got.start, got.end) != (row["synced_start"], row["synced_end"])
        other = ical.content_hash(got) != row["synced_hash"]
        if not dates and not other:
            adopt(got)
            return
        adopt(None)
        if want is not None and got.sequence > want.sequence:
            plan.sequences[row["uid"]] = got.sequence
        move = dates and col.kind == "organizer"
        if move:
            self.report.moved += 1
            plan.commands.append(c.CalendarMove(ap_id, got.start, got.end))
        if other or (dates and not move):
            fields = ical.differences(got, want) if want else ["the event"]
            if move:
                fields = [f for f in fields if f not in ("start", "end")]
            self.report.reverted += 1
            plan.commands.append(c.CalendarNote(ap_id, _clean(
                f"calendar: {', '.join(fields) or 'the event'} edited in {col.label};"
                " reverted, the service side wins (R9)")))

    # ---- push -----------------------------------------------------------------------------

    def push(self, *, force: bool = False, limit: int | None = None) -> None:
        done = 0
        while True:
            with read_connection(self.engine) as conn:
                q = select(OUTBOX.c.uid, func.min(OUTBOX.c.id).label("first")).group_by(
                    OUTBOX.c.uid)
                if not force:
                    latest = func.max(OUTBOX.c.next_attempt_at)
                    q = q.having(or_(latest.is_(None), latest <= self.now))
                if self._tried:  # once per round: rows queued meanwhile wait for the next one
                    q = q.where(OUTBOX.c.uid.not_in(list(self._tried)))
                batch = [r.uid for r in conn.execute(q.order_by("first").limit(BATCH))]
                if not batch:
                    return
                items = _load_items(conn, batch, self.cfg.tzid)
            for uid in batch:
                self._tried.add(uid)
                it = items.get(uid)
                if it is None:  # an outbox row without an item: nothing to send
                    with write_transaction(self.engine) as conn:
                        conn.execute(delete(OUTBOX).where(OUTBOX.c.uid == uid))
                    continue
                try:
                    self._push_item(it)
                except Unavailable as exc:
                    self.report.unavailable = str(exc)
                    self._postpone(str(exc), permanent=False)
                    return
                except ServerRefused as exc:
                    self.report.errors.append(str(exc))
                    self._postpone(str(exc), permanent=True, uid=uid)
                done += 1
                if limit is not None and done >= limit:
                    return

    def _postpone(self, reason: str, *, permanent: bool, uid: str | None = None) -> None:
        """Leave the rows queued with a later retry time: `uid`'s, or every due one."""
        with write_transaction(self.engine) as conn:
            where = [OUTBOX.c.uid == uid] if uid else [or_(
                OUTBOX.c.next_attempt_at.is_(None), OUTBOX.c.next_attempt_at <= self.now)]
            attempts = conn.scalar(select(func.max(OUTBOX.c.attempts)).where(*where)) or 0
            delay = MAX_DELAY if permanent else min(30 * 2 ** attempts, MAX_DELAY)
            conn.execute(update(OUTBOX).where(*where).values(
                attempts=OUTBOX.c.attempts + 1,
                next_attempt_at=self.now + dt.timedelta(seconds=delay),
                last_error=(PERMANENT if permanent else "") + _clean(reason)[:480]))

    def _push_item(self, it: _Item) -> None:
        records: dict[int, dict[str, Any] | None] = {}  # collection -> new row (None: deleted)
        seq_sig: tuple[int, str] | None = None
        try:
            if it.desired is None:
                for cid, row in it.events.items():
                    col = self._collection(cid)
                    if col is not None:
                        self._delete(col, row)
                    records[cid] = None
                    self.report.deleted += 1
            else:
                ev, sig = _sequenced(it)
                seq_sig = (ev.sequence, sig)
                targets = self._targets(it)
                for cid in targets:
                    col = self._collection(cid)
                    assert col is not None
                    written, etag = self._put(col, it, ev, it.events.get(cid))
                    if written is not ev:  # moved meanwhile (a 412 showed an organizer move)
                        ev = written
                        seq_sig = (ev.sequence, ical.significant_hash(ev))
                    records[cid] = self._record(ev, col, it.uid, etag)
                for cid, row in it.events.items():
                    if cid not in targets:
                        col = self._collection(cid)
                        if col is not None:
                            self._delete(col, row)
                        records[cid] = None
                        self.report.deleted += 1
        except BaseException:
            self._save(it, records, seq_sig, complete=False)  # keep what did reach the server
            raise
        self._save(it, records, seq_sig, complete=True)

    def _targets(self, it: _Item) -> list[int]:
        out: list[int] = []
        org = self.cfg.organizer
        if org is not None:
            out.append(org.id)
        eng = self.cfg.engineer(it.engineer) if it.mirrors else None
        if eng is not None and eng.id not in out:
            out.append(eng.id)
        if not it.mirrors:  # kept as history (R14): it stays where it was
            out += [cid for cid in it.events if cid not in out and self._collection(cid)]
        return out

    def _collection(self, cid: int) -> Collection | None:
        return next((x for x in self.cfg.collections if x.id == cid), None)

    def _record(self, ev: ical.EventData, col: Collection, uid: str,
                etag: str | None) -> dict[str, Any]:
        return {"uid": uid, "collection_id": col.id, "href": ical.href_for(uid),
                "etag": etag, "synced_hash": ical.content_hash(ev),
                "synced_start": ev.start, "synced_end": ev.end, "synced_sequence": ev.sequence,
                "synced_at": self.now}

    def _put(self, col: Collection, it: _Item, ev: ical.EventData,
             row: dict[str, Any] | None) -> tuple[ical.EventData, str | None]:
        """Write `ev` to `col`; returns the event as written (re-read after an organizer move)
        and its ETag."""
        if (row is not None and row["etag"] and row["synced_hash"] == ical.content_hash(ev)
                and (row["synced_start"], row["synced_end"]) == (ev.start, ev.end)
                and row["synced_sequence"] == ev.sequence):
            self.report.skipped += 1
            return ev, row["etag"]  # the server has it already: nothing is sent twice
        href = ical.href_for(it.uid)
        url = col.object_url(href)
        etag = row["etag"] if row is not None else None
        body = ical.to_ics(ev, dtstamp=self.now)
        for _ in range(PRECONDITION_RETRIES + 1):
            code, new_etag = self.gw.put(url, body, etag)
            if code in (200, 201, 204):
                self.report.pushed += 1
                return ev, new_etag or self._etag_of(url)
            if code == 404:  # If-Match on an object that is gone: deleted on the server
                if it.appointment_id is not None:
                    self.report.recreated += 1
                    self._note(it.appointment_id, f"calendar: the event was deleted in"
                               f" {col.label}; recreated (R9)", resend=False)
                etag = None
                continue
            if code == 409:
                raise ServerRefused(409, f"PUT {url}: 409 Conflict (does the calendar exist?)")
            got = self.gw.get(url)  # 412: someone was there first; read and compare
            if got is None:
                etag = None
                continue
            server_etag, data = got
            try:
                theirs = ical.parse(data)
            except ical.MalformedEvent:
                theirs = None
            if theirs is not None and theirs.uid == ev.uid and _same(theirs, ev) \
                    and theirs.sequence == ev.sequence:
                self.report.skipped += 1
                return ev, server_etag  # ours already (written, not recorded)
            if etag is not None and row is not None and theirs is not None \
                    and theirs.uid == ev.uid:
                plan = _Plan()
                self._inspect(col, {**row, "appointment_id": it.appointment_id},
                              server_etag, data, ev, plan)
                if self._apply(plan):  # the organizer moved it: write the moved appointment
                    with read_connection(self.engine) as conn:
                        fresh = desired_event(conn, it.appointment_id or 0, self.cfg.tzid)
                    if fresh is not None:
                        ev = replace(fresh, sequence=ev.sequence + 1)
                        body = ical.to_ics(ev, dtstamp=self.now)
            elif etag is None and it.appointment_id is not None and (
                    theirs is None or theirs.uid != ev.uid):
                self._note(it.appointment_id, f"calendar: another object sat at {href} in"
                           f" {col.label}; replaced", resend=False)
            etag = server_etag
        raise Unavailable(f"PUT {url}: still changing after {PRECONDITION_RETRIES} retries")

    def _etag_of(self, url: str) -> str | None:
        got = self.gw.get(url)
        return got[0] if got else None

    def _delete(self, col: Collection, row: dict[str, Any]) -> None:
        url = col.object_url(row["href"])
        etag = row["etag"]
        for _ in range(PRECONDITION_RETRIES + 1):
            code = self.gw.delete(url, etag)
            if code != 412:
                return
            got = self.gw.get(url)  # changed since we wrote it: the service side still wins
            if got is None:
                return
            etag = got[0]
        raise Unavailable(f"DELETE {url}: still changing after {PRECONDITION_RETRIES} retries")

    def _save(self, it: _Item, records: dict[int, dict[str, Any] | None],
              seq_sig: tuple[int, str] | None, *, complete: bool) -> None:
        with write_transaction(self.engine) as conn:
            for cid, rec in records.items():
                conn.execute(delete(EVENTS).where(EVENTS.c.uid == it.uid,
                                                  EVENTS.c.collection_id == cid))
                if rec is not None:
                    conn.execute(insert(EVENTS).values(**rec))
            if seq_sig is not None:
                conn.execute(update(ITEMS).where(ITEMS.c.uid == it.uid).values(
                    sequence=seq_sig[0], significant_hash=seq_sig[1]))
            if not complete:
                return
            conn.execute(delete(OUTBOX).where(OUTBOX.c.uid == it.uid,
                                              OUTBOX.c.id <= it.max_outbox_id))
            if it.desired is None:
                still = conn.scalar(select(func.count()).select_from(OUTBOX).where(
                    OUTBOX.c.uid == it.uid))
                if not still:
                    conn.execute(delete(ITEMS).where(ITEMS.c.uid == it.uid,
                                                     ITEMS.c.appointment_id.is_(None)))


def _same(a: ical.EventData, b: ical.EventData) -> bool:
    return ical.content_hash(a) == ical.content_hash(b) and (a.start, a.end) == (b.start, b.end)


def _clean(text: str) -> str:
    return re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", " ", text).strip()[:1000] or "-"


# ---- entry points ------------------------------------------------------------------------------


def sync_once(engine: Engine, coordinator: Any = None, *, gateway: Gateway | None = None,
              push: bool = True, pull: bool = True, force: bool = False,
              now: dt.datetime | None = None, limit: int | None = None) -> SyncReport:
    """One round: pull, then push. `force` retries postponed rows now (an explicit
    `dispatch calendar sync`); the background loop leaves them to their retry time.
    Never raises for server trouble: the report says what happened."""
    from app.sync.coordinator import Coordinator

    with read_connection(engine) as conn:
        cfg = load_config(conn)
    report = SyncReport()
    if cfg is None or not cfg.enabled:
        report.errors.append("no calendar is set up (dispatch calendar setup)")
        return report
    try:
        gw = gateway or cfg.gateway()
    except ConfigError as exc:
        report.errors.append(str(exc))
        return report
    syncer = Syncer(engine, cfg, gw, coordinator or Coordinator(engine), now or pendulum.now(
        "UTC"))
    syncer._tried = set()
    try:
        if pull:
            try:
                syncer.pull()
            except Unavailable as exc:
                syncer.report.unavailable = str(exc)
        if push and syncer.report.unavailable is None:
            syncer.push(force=force, limit=limit)
        elif push and syncer.report.unavailable:
            syncer._postpone(syncer.report.unavailable, permanent=False)
    finally:
        if gateway is None:
            gw.close()
    with read_connection(engine) as conn:
        syncer.report.queued = conn.scalar(select(func.count(func.distinct(OUTBOX.c.uid)))) or 0
    return syncer.report


def run_loop(engine: Engine, stop: threading.Event, *, interval: float = 30.0,
             coordinator: Any = None,
             on_report: Callable[[SyncReport], None] | None = None) -> None:
    """The console's background worker: a round every `interval` seconds until `stop` is set.
    Run it in a thread; `on_report` gets each round's report (post it to the UI from there)."""
    while not stop.is_set():
        report = sync_once(engine, coordinator)
        if on_report is not None:
            on_report(report)
        stop.wait(interval)


def export(engine: Engine, *, appointment_ids: Sequence[int] | None = None,
           method: str | None = None, now: dt.datetime | None = None) -> list[tuple[int, bytes]]:
    """(appointment id, iCalendar bytes) for export. `method` REQUEST or CANCEL gives iTIP
    messages (CANCEL: STATUS CANCELLED, SEQUENCE one up); None gives one plain VCALENDAR
    (id 0) with every event, for import or subscription (Outlook without CalDAV).
    UIDs are the ones the sync uses, created here when missing, so a re-import updates."""
    from app.calendar.outbox import ensure_items

    now = now or pendulum.now("UTC")
    with write_transaction(engine) as conn:
        cfg = load_config(conn)
        tzid = cfg.tzid if cfg else "Europe/Rome"
        ids = list(appointment_ids) if appointment_ids else list(
            conn.scalars(select(AP.c.id).order_by(AP.c.id)))
        missing = [i for i in ids if conn.scalar(select(AP.c.id).where(AP.c.id == i)) is None]
        if missing:
            raise ConfigError(f"appointment {missing[0]} does not exist")
        uids = ensure_items(conn, ids)
        items = _load_items(conn, uids, tzid)
    events = []
    for uid in uids:
        ev, _sig = _sequenced(items[uid])
        if method == "CANCEL":
            ev = ical.cancel(ev)
        events.append(ev)
    if method is None:
        return [(0, ical.to_calendar(events, dtstamp=now))]
    return [(ev.appointment_id, ical.to_ics(ev, dtstamp=now, method=method)) for ev in events]
