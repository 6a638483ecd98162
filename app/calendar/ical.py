"""Appointment <-> VEVENT, pure (no database, no network, no clock).

`to_ics` writes one VCALENDAR holding one VEVENT and the VTIMEZONE its TZID needs; `parse`
reads one back into the same `EventData`. The round trip is the contract the sync rests on: what
we wrote, read back, is equal to what we meant, so our own writes coming back are not changes.

Mapping (RFC 5545):
- UID (ours, never reused), SEQUENCE (ours), DTSTAMP, DTSTART/DTEND in the calendar's zone with
  TZID + VTIMEZONE; instants are kept in UTC, so a job across a DST change keeps its length.
- SUMMARY = subject, LOCATION, DESCRIPTION = Information.
- STATUS: Planned/Held -> CONFIRMED, Not Held -> CANCELLED; `X-DISPATCH-STATUS` keeps the word.
- Show time as: `X-MICROSOFT-CDO-BUSYSTATUS` (what Outlook reads) and `TRANSP` (the fallback).
- ORGANIZER = the Meeting Organizer participant (P2, mailto). Every other participant is an
  ATTENDEE: mailto when it has an e-mail, else `urn:uuid:` (co-engineers, R4), with CN, ROLE and
  `X-DISPATCH-TYPE`/`X-DISPATCH-CODE` so that the participant row can be read back.
- No METHOD on stored objects; `method=` is for iTIP files (`dispatch calendar export`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from dataclasses import dataclass, replace
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar
from icalendar import vCalAddress

PRODID = "-//dispatch//field service appointments//EN"
UID_PREFIX = "dispatch-"
URN_NAMESPACE = uuid.UUID("6f1c7a4e-2b7d-4a8e-9a51-3c0d7b9e2f10")
MAX_EVENT_BYTES = 256 * 1024
"""A bigger object is not one of ours; refused before parsing (a hostile or broken event)."""

_STATUS_TO_ICAL = {"Planned": "CONFIRMED", "Held": "CONFIRMED", "Not Held": "CANCELLED"}
_BUSY = {"Free": "FREE", "Tentative": "TENTATIVE", "Busy": "BUSY", "Out of Office": "OOF"}
_BUSY_BACK = {v: k for k, v in _BUSY.items()}
_ROLE = {"Required Attendee": "REQ-PARTICIPANT", "Optional Attendee": "OPT-PARTICIPANT"}
_ROLE_BACK = {v: k for k, v in _ROLE.items()}
ORGANIZER = "Meeting Organizer"


class MalformedEvent(ValueError):
    """The calendar object cannot be read as one of our appointments; the message says why."""


@dataclass(frozen=True, slots=True)
class Attendee:
    """One participant row as the calendar sees it."""

    type: str  # Employee / Contact
    code: str
    name: str
    attendance: str  # Meeting Organizer / Required Attendee / Optional Attendee
    email: str | None


@dataclass(frozen=True, slots=True)
class EventData:
    """Everything of an appointment that travels to the calendar."""

    uid: str
    sequence: int
    appointment_id: int
    subject: str
    location: str
    information: str
    status: str  # Planned / Held / Not Held
    show_time_as: str  # Free / Tentative / Busy / Out of Office
    start: dt.datetime  # aware, UTC
    end: dt.datetime  # aware, UTC
    tzid: str
    attendees: tuple[Attendee, ...]

    @property
    def organizer(self) -> Attendee | None:
        return next((a for a in self.attendees if a.attendance == ORGANIZER), None)


def new_uid() -> str:
    """A fresh UID: random, so it is never reused even when a database reuses an id."""
    return f"{UID_PREFIX}{uuid.uuid4()}"


def href_for(uid: str) -> str:
    """The object's name in the collection: the UID with anything but [A-Za-z0-9._-] replaced
    (a `:` in an href was refused by Radicale)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", uid)[:200] + ".ics"


def urn_for(type_: str, code: str) -> str:
    """A stable address for a participant without e-mail (R4): never a mailbox."""
    return f"urn:uuid:{uuid.uuid5(URN_NAMESPACE, f'{type_}:{code}')}"


def check_tzid(tzid: str) -> str:
    try:
        ZoneInfo(tzid)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"time zone {tzid!r} is not a known IANA zone (e.g. Europe/Rome)") from None
    return tzid


@lru_cache(maxsize=64)
def _vtimezone(tzid: str, first_year: int, last_year: int) -> icalendar.Timezone:
    return icalendar.Timezone.from_tzid(
        tzid, first_date=dt.date(first_year, 1, 1), last_date=dt.date(last_year + 1, 1, 1)
    )


def _local(value: dt.datetime, tzid: str) -> dt.datetime:
    return value.astimezone(ZoneInfo(tzid))


def _ambiguous(local: dt.datetime) -> bool:
    return local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset()


def to_vevent(ev: EventData, *, dtstamp: dt.datetime) -> icalendar.Event:
    e = icalendar.Event()
    e.add("uid", ev.uid)
    e.add("dtstamp", dtstamp.astimezone(dt.UTC))
    e.add("sequence", ev.sequence)
    for name, value in (("dtstart", ev.start), ("dtend", ev.end)):
        local = _local(value, ev.tzid)
        if _ambiguous(local):
            # The repeated hour at the end of DST: a TZID time there means its first occurrence
            # (RFC 5545 3.3.5), so write the instant in UTC and keep the zone in a parameter.
            e.add(name, value.astimezone(dt.UTC), parameters={"X-DISPATCH-TZID": ev.tzid})
        else:
            e.add(name, local)
    e.add("summary", ev.subject)
    e.add("location", ev.location)
    e.add("description", ev.information)
    e.add("status", _STATUS_TO_ICAL[ev.status])
    e.add("x-dispatch-status", ev.status)
    e.add("x-microsoft-cdo-busystatus", _BUSY[ev.show_time_as])
    e.add("transp", "TRANSPARENT" if ev.show_time_as == "Free" else "OPAQUE")
    e.add("x-dispatch-appointment", str(ev.appointment_id))
    for a in ev.attendees:
        address = vCalAddress(f"mailto:{a.email}" if a.email else urn_for(a.type, a.code))
        # Parameter values with a backslash: icalendar 7.3's parser reads `\\` as `\` and an
        # unquoted trailing `\` as an escape (found by the round-trip property test), so
        # double it and quote the value.
        if "\\" in a.name + a.code + a.type:
            quoted: tuple[str, ...] = (*address.params.always_quoted, "CN", "X-DISPATCH-CODE",
                                       "X-DISPATCH-TYPE")
            address.params.always_quoted = quoted  # type: ignore[assignment]
        address.params["CN"] = _param(a.name)
        address.params["X-DISPATCH-TYPE"] = _param(a.type)
        address.params["X-DISPATCH-CODE"] = _param(a.code)
        if a.attendance == ORGANIZER:
            e.add("organizer", address)
            continue
        address.params["CUTYPE"] = "INDIVIDUAL"
        address.params["ROLE"] = _ROLE.get(a.attendance, "REQ-PARTICIPANT")
        address.params["PARTSTAT"] = "NEEDS-ACTION"
        e.add("attendee", address)
    return e


def _param(value: str) -> str:
    return value.replace("\\", "\\\\")


def to_ics(ev: EventData, *, dtstamp: dt.datetime, method: str | None = None) -> bytes:
    """One VCALENDAR: VTIMEZONE and VEVENT. `method` only for iTIP files, never stored objects."""
    return to_calendar([ev], dtstamp=dtstamp, method=method)


def to_calendar(events: list[EventData], *, dtstamp: dt.datetime,
                method: str | None = None) -> bytes:
    """A VCALENDAR with these events. Written piece by piece: the VTIMEZONE text is the same
    for every event of a year range, so it is serialised once and reused (half the work)."""
    head = f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:{PRODID}\r\n"
    if method:
        head += f"METHOD:{method}\r\n"
    spans: dict[str, tuple[int, int]] = {}
    for ev in events:
        lo, hi = spans.get(ev.tzid, (ev.start.year, ev.end.year))
        spans[ev.tzid] = (min(lo, ev.start.year - 1), max(hi, ev.end.year))
    parts = [head.encode()]
    parts += [_vtimezone_text(tzid, lo, hi) for tzid, (lo, hi) in sorted(spans.items())
              if tzid != "UTC"]
    parts += [to_vevent(ev, dtstamp=dtstamp).to_ical() for ev in events]
    parts.append(b"END:VCALENDAR\r\n")
    return b"".join(parts)


@lru_cache(maxsize=64)
def _vtimezone_text(tzid: str, first_year: int, last_year: int) -> bytes:
    return _vtimezone(tzid, first_year, last_year).to_ical()


def cancel(ev: EventData) -> EventData:
    """The event as an iTIP CANCEL carries it: cancelled, with a higher SEQUENCE."""
    return replace(ev, status="Not Held", sequence=ev.sequence + 1)


# ---- reading ------------------------------------------------------------------------------


def parse(data: bytes | str) -> EventData:
    """Read one of our stored calendar objects. Raises `MalformedEvent` with a one-line reason."""
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > MAX_EVENT_BYTES:
        raise MalformedEvent(f"object is {len(raw)} bytes, more than {MAX_EVENT_BYTES}")
    raw = _without_known_vtimezones(raw)
    try:
        cal = icalendar.Calendar.from_ical(raw)
    except Exception as exc:  # icalendar raises ValueError and friends for broken text
        raise MalformedEvent(f"not iCalendar: {_one_line(exc)}") from None
    if not isinstance(cal, icalendar.Calendar):
        raise MalformedEvent("not a VCALENDAR")
    events = [c for c in cal.subcomponents if c.name == "VEVENT"]
    if len(events) != 1:
        raise MalformedEvent(f"expected one VEVENT, found {len(events)}")
    e = events[0]
    if e.get("RRULE") is not None or e.get("RECURRENCE-ID") is not None:
        raise MalformedEvent("a recurring event cannot mirror one appointment")
    try:
        return _read_event(e)  # type: ignore[arg-type]
    except MalformedEvent:
        raise
    except Exception as exc:
        raise MalformedEvent(_one_line(exc)) from None


_VTIMEZONE = re.compile(rb"BEGIN:VTIMEZONE\r?\n.*?END:VTIMEZONE\r?\n", re.S)
_TZID = re.compile(rb"TZID[=:]\"?([^\";:\r\n]+)")


def _without_known_vtimezones(raw: bytes) -> bytes:
    """Drop VTIMEZONE blocks when every TZID is an IANA zone: the zone database is the truth
    for those (and parsing the blocks is 40% of the work)."""
    if b"BEGIN:VTIMEZONE" not in raw:
        return raw
    for tzid in set(_TZID.findall(raw)):
        try:
            ZoneInfo(tzid.decode().strip())
        except (ZoneInfoNotFoundError, ValueError, UnicodeDecodeError):
            return raw
    return _VTIMEZONE.sub(b"", raw)


def _read_event(e: icalendar.Event) -> EventData:
    uid = _text(e, "UID", required=True)
    start, tzid = _when(e, "DTSTART")
    end, _ = _when(e, "DTEND")
    if end <= start:
        raise MalformedEvent("DTEND is not after DTSTART")
    try:
        sequence = int(e.get("SEQUENCE", 0))
        appointment_id = int(str(e.get("X-DISPATCH-APPOINTMENT", "0")))
    except (TypeError, ValueError):
        raise MalformedEvent("SEQUENCE or X-DISPATCH-APPOINTMENT is not a number") from None
    ical_status = _text(e, "STATUS").upper()
    word = _text(e, "X-DISPATCH-STATUS")
    if ical_status == "CANCELLED":
        status = "Not Held"
    elif word in ("Planned", "Held"):
        status = word
    else:
        status = "Planned"
    busy = _text(e, "X-MICROSOFT-CDO-BUSYSTATUS").upper()
    if busy in _BUSY_BACK:
        show = _BUSY_BACK[busy]
    else:
        show = "Free" if _text(e, "TRANSP").upper() == "TRANSPARENT" else "Busy"
    attendees: list[Attendee] = []
    org = e.get("ORGANIZER")
    if org is not None:
        attendees.append(_attendee(org, ORGANIZER))
    raw_att = e.get("ATTENDEE")
    if raw_att is not None:
        for a in raw_att if isinstance(raw_att, list) else [raw_att]:
            role = str(a.params.get("ROLE", "REQ-PARTICIPANT")).upper()
            attendees.append(_attendee(a, _ROLE_BACK.get(role, "Required Attendee")))
    return EventData(
        uid=uid, sequence=sequence, appointment_id=appointment_id,
        subject=_text(e, "SUMMARY"), location=_text(e, "LOCATION"),
        information=_text(e, "DESCRIPTION"), status=status, show_time_as=show,
        start=start, end=end, tzid=tzid, attendees=tuple(attendees),
    )


def _attendee(value: object, attendance: str) -> Attendee:
    address = str(value)
    params = getattr(value, "params", {})
    email = address[7:] if address.lower().startswith("mailto:") else None
    code = str(params.get("X-DISPATCH-CODE", ""))
    type_ = str(params.get("X-DISPATCH-TYPE", "Employee"))
    return Attendee(type=type_, code=code, name=str(params.get("CN", "")),
                    attendance=attendance, email=email or None)


def _text(e: icalendar.Event, name: str, *, required: bool = False) -> str:
    value = e.get(name)
    if value is None:
        if required:
            raise MalformedEvent(f"{name} is missing")
        return ""
    if isinstance(value, list):
        raise MalformedEvent(f"{name} appears more than once")
    return str(value)


def _when(e: icalendar.Event, name: str) -> tuple[dt.datetime, str]:
    prop = e.get(name)
    if prop is None:
        raise MalformedEvent(f"{name} is missing")
    value = prop.dt
    if not isinstance(value, dt.datetime):
        raise MalformedEvent(f"{name} is a whole day, not a time")
    if value.tzinfo is None:
        raise MalformedEvent(f"{name} is a floating time (no TZID, no Z)")
    tzid = str(prop.params.get("TZID") or prop.params.get("X-DISPATCH-TZID")
               or getattr(value.tzinfo, "key", None) or "UTC")
    utc = value.astimezone(dt.UTC)
    if not 1970 <= utc.year <= 2200:
        raise MalformedEvent(f"{name} year {utc.year} is outside 1970-2200")
    return utc, tzid


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


# ---- fingerprints -------------------------------------------------------------------------


def _people(ev: EventData) -> list[list[str | None]]:
    return sorted([a.type, a.code, a.name, a.attendance, a.email] for a in ev.attendees)


def significant_hash(ev: EventData) -> str:
    """What makes SEQUENCE go up (RFC 5546 3.2.2): time, location, status, participants."""
    return _hash([ev.start.isoformat(), ev.end.isoformat(), ev.tzid, ev.location, ev.status,
                  _people(ev)])


def content_hash(ev: EventData) -> str:
    """Everything but the dates, SEQUENCE and DTSTAMP: did someone else edit the other fields?"""
    return _hash([ev.uid, ev.subject, ev.location, ev.information, ev.status, ev.show_time_as,
                  _people(ev)])


def _hash(value: object) -> str:
    return hashlib.sha256(json.dumps(value, ensure_ascii=False).encode()).hexdigest()[:32]


def differences(a: EventData, b: EventData) -> list[str]:
    """The names of the fields that differ, for journal entries a person reads."""
    out = []
    for name in ("subject", "location", "information", "status", "show_time_as", "start", "end"):
        if getattr(a, name) != getattr(b, name):
            out.append({"subject": "summary", "information": "description",
                        "show_time_as": "show time as"}.get(name, name))
    if _people(a) != _people(b):
        out.append("attendees")
    return out
