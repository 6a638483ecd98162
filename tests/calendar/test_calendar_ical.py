"""The pure mapping: appointment -> VEVENT -> appointment, and what `parse` refuses."""

from __future__ import annotations

import ast
import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.calendar import ical

UTC = dt.UTC
TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\r"),
               min_size=1, max_size=60).map(str.strip).filter(bool)
LONG = st.text(st.characters(blacklist_categories=("Cs", "Cc"), whitelist_characters="\n\t"),
               max_size=300).map(str.strip)
EMAIL = st.from_regex(r"[a-z][a-z0-9.]{0,10}@[a-z]{1,8}\.(it|com)", fullmatch=True)
INSTANT = st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2199, 1, 1),
                       ).map(lambda d: d.replace(microsecond=0, tzinfo=UTC))
ZONES = st.sampled_from(["Europe/Rome", "America/New_York", "Asia/Kolkata", "UTC",
                         "Australia/Lord_Howe"])


@st.composite
def attendees(draw: st.DrawFn) -> tuple[ical.Attendee, ...]:
    org = ical.Attendee("Employee", draw(st.from_regex(r"E[0-9]{3}", fullmatch=True)),
                        draw(TEXT), "Meeting Organizer", draw(EMAIL))
    others = draw(st.lists(st.tuples(
        st.sampled_from(["Employee", "Contact"]), st.from_regex(r"[A-Z][0-9]{3}", fullmatch=True),
        TEXT, st.sampled_from(["Required Attendee", "Optional Attendee"]),
        st.one_of(st.none(), EMAIL)), max_size=4, unique_by=lambda t: (t[0], t[1])))
    return (org, *(ical.Attendee(*o) for o in others))


@st.composite
def events(draw: st.DrawFn) -> ical.EventData:
    start = draw(INSTANT)
    minutes = draw(st.integers(min_value=1, max_value=60 * 24 * 3))
    return ical.EventData(
        uid=ical.new_uid(), sequence=draw(st.integers(0, 1000)),
        appointment_id=draw(st.integers(1, 10**6)), subject=draw(TEXT), location=draw(TEXT),
        information=draw(LONG), status=draw(st.sampled_from(["Planned", "Held", "Not Held"])),
        show_time_as=draw(st.sampled_from(["Free", "Tentative", "Busy", "Out of Office"])),
        start=start, end=start + dt.timedelta(minutes=minutes), tzid=draw(ZONES),
        attendees=draw(attendees()))


@settings(max_examples=150, deadline=None)
@given(events())
def test_round_trip_gives_the_same_appointment_fields(ev: ical.EventData) -> None:
    data = ical.to_ics(ev, dtstamp=dt.datetime(2026, 12, 3, 9, 0, tzinfo=UTC))
    back = ical.parse(data)
    assert back == ev
    assert ical.content_hash(back) == ical.content_hash(ev)
    assert b"METHOD" not in data


@pytest.mark.parametrize("minutes", [0, 30, 60, 90, 120])
def test_the_repeated_hour_at_the_end_of_dst_round_trips(minutes: int) -> None:
    # 2026-10-25: 02:00-03:00 Rome happens twice (00:00-01:00 UTC, then 01:00-02:00 UTC).
    start = dt.datetime(2026, 10, 24, 23, 30, tzinfo=UTC) + dt.timedelta(minutes=minutes)
    ev = _with(_event(), start=start, end=start + dt.timedelta(minutes=45))
    back = ical.parse(ical.to_ics(ev, dtstamp=start))
    assert (back.start, back.end, back.tzid) == (ev.start, ev.end, "Europe/Rome")


def test_itip_files_carry_method_and_cancel_bumps_sequence() -> None:
    ev = _event()
    request = ical.to_ics(ev, dtstamp=ev.start, method="REQUEST")
    assert b"METHOD:REQUEST" in request
    cancelled = ical.cancel(ev)
    data = ical.to_ics(cancelled, dtstamp=ev.start, method="CANCEL")
    assert b"METHOD:CANCEL" in data and b"STATUS:CANCELLED" in data
    assert ical.parse(data).sequence == ev.sequence + 1


def test_significant_changes_are_time_location_status_participants() -> None:
    ev = _event()
    base = ical.significant_hash(ev)
    assert ical.significant_hash(_with(ev, subject="other", information="x")) == base
    for change in ({"location": "Elsewhere"}, {"status": "Held"},
                   {"end": ev.end + dt.timedelta(hours=1)}, {"attendees": ev.attendees[:1]}):
        assert ical.significant_hash(_with(ev, **change)) != base, change


@pytest.mark.parametrize(("text", "reason"), [
    (b"hello", "not iCalendar"),
    (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n", "expected one VEVENT, found 0"),
    (b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nDTSTART:20261207T080000\r\n"
     b"DTEND:20261207T090000\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n", "floating time"),
    (b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nDTSTART:20261207T080000Z\r\n"
     b"DTEND:20261207T070000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n", "DTEND is not after"),
    (b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:20261207T080000Z\r\n"
     b"DTEND:20261207T090000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n", "UID is missing"),
    (b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nDTSTART:20261207T080000Z\r\n"
     b"DTEND:20261207T090000Z\r\nSEQUENCE:many\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n", "SEQUENCE"),
    (b"X" * (ical.MAX_EVENT_BYTES + 1), "bytes, more than"),
])
def test_parse_refuses_with_a_reason(text: bytes, reason: str) -> None:
    with pytest.raises(ical.MalformedEvent, match=reason):
        ical.parse(text)


def test_hrefs_are_sanitised_uids() -> None:
    assert ical.href_for("a:b/c d@e") == "a_b_c_d_e.ics"
    uid = ical.new_uid()
    assert ical.href_for(uid) == uid + ".ics" and ":" not in uid


def test_app_calendar_never_imports_textual() -> None:
    root = Path(__file__).resolve().parents[2] / "app" / "calendar"
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] in ("textual", "app") and "tui" in n or
                           n.split(".")[0] == "textual" for n in names), (path, names)


def _event() -> ical.EventData:
    start = dt.datetime(2026, 12, 7, 7, 0, tzinfo=UTC)
    return ical.EventData(
        uid=ical.new_uid(), sequence=2, appointment_id=7, subject="SO-1 / 10: Pump",
        location="Via Roma 1", information="x", status="Planned", show_time_as="Busy",
        start=start, end=start + dt.timedelta(hours=2), tzid="Europe/Rome",
        attendees=(ical.Attendee("Employee", "E900", "Paola", "Meeting Organizer", "p@x.it"),
                   ical.Attendee("Employee", "E001", "Mario", "Required Attendee", "m@x.it")))


def _with(ev: ical.EventData, **kw: object) -> ical.EventData:
    return ical.EventData(**{**{f: getattr(ev, f) for f in ev.__dataclass_fields__}, **kw})


def test_outlook_zone_names_are_read_through_their_vtimezone() -> None:
    data = (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VTIMEZONE\r\n"
            b"TZID:W. Europe Standard Time\r\nBEGIN:STANDARD\r\nDTSTART:16010101T030000\r\n"
            b"TZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nRRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10\r\n"
            b"END:STANDARD\r\nBEGIN:DAYLIGHT\r\nDTSTART:16010101T020000\r\nTZOFFSETFROM:+0100\r\n"
            b"TZOFFSETTO:+0200\r\nRRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3\r\nEND:DAYLIGHT\r\n"
            b"END:VTIMEZONE\r\nBEGIN:VEVENT\r\nUID:x\r\n"
            b"DTSTART;TZID=W. Europe Standard Time:20261207T080000\r\n"
            b"DTEND;TZID=W. Europe Standard Time:20260707T100000\r\n"
            b"END:VEVENT\r\nEND:VCALENDAR\r\n")
    with pytest.raises(ical.MalformedEvent, match="DTEND is not after"):
        ical.parse(data)
    ev = ical.parse(data.replace(b"20260707T100000", b"20261207T100000"))
    assert ev.start == dt.datetime(2026, 12, 7, 7, 0, tzinfo=UTC)  # +01:00 in December
    assert ev.end - ev.start == dt.timedelta(hours=2)
