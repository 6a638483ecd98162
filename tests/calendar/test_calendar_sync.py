# ruff: noqa: F811  (the fixtures are imported by name from calfixtures)
"""Two-way sync against a real Radicale: push, pull, conflicts, failures (issue 4)."""

from __future__ import annotations

from calfixtures import DISPATCHER, Cal, at, cal, order_cmd, own_radicale, radicale  # noqa: F401
from sqlalchemy import select

from app.calendar import ical
from app.calendar.outbox import sync_state
from app.db import models as m
from app.db.engine import read_connection
from app.sync import commands as c


def _one_order(cal: Cal, number: str = "SO-1001", engineers: tuple[str, ...] = ("E001", "E002")
               ) -> list[int]:
    changes = cal.coord.execute_many(
        [order_cmd(number, engineers=engineers), c.GenerateAssignments(number)], DISPATCHER)
    return sorted(changes[1].appointments)


def test_create_pushes_each_appointment_once_with_attendees(cal: Cal) -> None:
    ids = _one_order(cal)
    assert len(ids) == 2
    report = cal.sync()
    assert report.pushed == 3 and not report.errors, report.summary()  # 2 organizer + E001's
    events = cal.listing()
    assert len(events) == 2
    by_ap = {ev.appointment_id: ev for ev in events.values()}
    ev = by_ap[ids[0]]
    assert ev.subject.startswith("SO-1001 / 10") and ev.location == "Via Roma 1, 20121 Milano"
    assert ev.organizer is not None and ev.organizer.email == "paola.neri@example.com"
    people = {a.code: a for a in ev.attendees}
    assert people["E001"].email == "mario.rossi@example.com"
    assert people["E002"].email is None  # R4: the co-engineer has no e-mail
    assert people["C100"].email == "anna@acme.example"  # P3
    raw = cal.raw(cal.organizer_url, cal.href(ids[0]))[1].decode()
    assert "urn:uuid:" in raw and "X-MICROSOFT-CDO-BUSYSTATUS:BUSY" in raw
    assert "TRANSP:OPAQUE" in raw and "METHOD" not in raw and "TZID=Europe/Rome" in raw
    assert "BEGIN:VTIMEZONE" in raw
    # R16: only E001's own appointment is in E001's calendar.
    mine = cal.listing(cal.engineer_urls["E001"])
    assert [e.appointment_id for e in mine.values()] == [ids[0]]
    with read_connection(cal.engine) as conn:
        assert sync_state(conn, ids[0]) == "synced"
    # A second round sends nothing: the outbox is empty and the echo is recognised.
    again = cal.sync()
    assert (again.pushed, again.pulled, again.moved, again.reverted) == (0, 0, 0, 0)


def test_update_bumps_sequence_only_for_significant_changes(cal: Cal) -> None:
    ids = _one_order(cal)
    cal.sync()
    href = cal.href(ids[0])
    assert cal.listing()[href].sequence == 0
    cal.coord.execute(c.MoveAssignment("SO-1001", 10, 1, at("2026-12-08 09:00"),
                                       at("2026-12-08 11:00")), DISPATCHER)
    assert cal.sync().pushed == 2  # organizer + E001
    ev = cal.listing()[href]
    assert (ev.start, ev.end) == (at("2026-12-08 09:00"), at("2026-12-08 11:00"))
    assert ev.sequence == 1
    cal.coord.execute(c.UpdateActivity("SO-1001", 10, description="Replace the big pump"),
                      DISPATCHER)
    cal.sync()
    ev = cal.listing()[href]
    assert "Replace the big pump" in ev.subject and ev.sequence == 1  # summary: not significant


def test_reassign_moves_the_event_between_engineer_calendars(cal: Cal) -> None:
    ids = _one_order(cal, engineers=("E002",))
    cal.sync()
    assert cal.listing(cal.engineer_urls["E001"]) == {}
    cal.coord.execute(c.Reassign("SO-1001", 10, 1, "E001"), DISPATCHER)
    cal.sync()
    ev = cal.listing()[cal.href(ids[0])]
    codes = {a.code for a in ev.attendees}
    assert "E001" in codes and "E002" not in codes and ev.sequence == 1
    assert [e.appointment_id for e in cal.listing(cal.engineer_urls["E001"]).values()] == ids
    cal.coord.execute(c.Reassign("SO-1001", 10, 1, "E003"), DISPATCHER)
    cal.sync()
    assert cal.listing(cal.engineer_urls["E001"]) == {}  # gone from E001's calendar


def test_complete_sets_status_and_delete_removes_event(cal: Cal) -> None:
    ids = _one_order(cal)
    cal.sync()
    cal.coord.execute(c.SetAssignmentStatus("SO-1001", 10, 1, "Completed"), DISPATCHER)
    cal.sync()
    href = cal.href(ids[0])
    assert cal.listing()[href].status == "Held"
    assert "X-DISPATCH-STATUS:Held" in cal.raw(cal.organizer_url, href)[1].decode()
    cal.coord.execute(c.DeleteAssignment("SO-1001", 10, 2), DISPATCHER)
    report = cal.sync()
    assert report.deleted == 1, report.summary()
    assert [e.appointment_id for e in cal.listing().values()] == [ids[0]]
    with read_connection(cal.engine) as conn:  # the UID is forgotten, never reused
        assert conn.scalar(select(m.CalendarItem.uid).where(
            m.CalendarItem.appointment_id == ids[1])) is None
        assert conn.scalar(select(m.CalendarOutbox.id)) is None


def test_kept_appointment_keeps_its_event(cal: Cal) -> None:
    ids = _one_order(cal)
    cal.sync()
    cal.coord.execute(c.SetOrderStatus("SO-1001", "Completed"), DISPATCHER)
    cal.coord.execute(c.DeleteAssignment("SO-1001", 10, 1), DISPATCHER)  # R14: kept
    report = cal.sync()
    assert report.deleted == 0, report.summary()
    assert ids[0] in {e.appointment_id for e in cal.listing().values()}
    assert ids[0] in {e.appointment_id for e in cal.listing(cal.engineer_urls["E001"]).values()}


def _organizer_moves(cal: Cal, ap_id: int, start: str, end: str, sequence: int = 0) -> None:
    href = cal.href(ap_id)
    etag, data = cal.raw(cal.organizer_url, href)
    text = data.decode()
    ev = ical.parse(data)
    moved = ical.EventData(**{**{f: getattr(ev, f) for f in ev.__dataclass_fields__},
                              "start": at(start), "end": at(end),
                              "sequence": max(sequence, ev.sequence)})
    body = ical.to_ics(moved, dtstamp=at("2026-12-01 10:00"))
    assert "SUMMARY" in text
    assert cal.put_raw(cal.organizer_url, href, body, etag) == 204


def test_organizer_move_with_p4_off_moves_only_the_appointment(cal: Cal) -> None:
    ids = _one_order(cal)
    cal.sync()
    _organizer_moves(cal, ids[0], "2026-12-10 14:00", "2026-12-10 16:00")
    report = cal.sync()
    assert report.moved == 1 and report.reverted == 0, report.summary()
    with read_connection(cal.engine) as conn:
        ap = conn.execute(select(m.Appointment.__table__).where(
            m.Appointment.id == ids[0])).one()
        asg = conn.execute(select(m.Assignment.__table__).where(
            m.Assignment.id == ap.assignment_id)).one()
    assert (ap.start, ap.end) == (at("2026-12-10 14:00"), at("2026-12-10 16:00"))
    assert asg.planned_start == at("2026-12-07 08:00")  # P4 off: the assignment stays
    assert any("moved in the organizer's calendar" in d for d in cal.journal())
    ev = cal.listing()[cal.href(ids[0])]
    assert ev.start == at("2026-12-10 14:00") and ev.sequence == 1  # pushed back, SEQUENCE up
    # E001's calendar follows the organizer's move.
    mine = cal.listing(cal.engineer_urls["E001"])
    assert [e.start for e in mine.values()] == [at("2026-12-10 14:00")]
    assert cal.sync().moved == 0  # our own write coming back is not a move


def test_organizer_move_with_p4_on_moves_the_assignment(cal: Cal) -> None:
    cal.coord.execute(c.SetParameters(update_assignments_from_appointment_dates=True),
                      DISPATCHER)
    ids = _one_order(cal)
    cal.sync()
    _organizer_moves(cal, ids[0], "2026-12-11 08:30", "2026-12-11 12:30", sequence=4)
    assert cal.sync().moved == 1
    assert cal.listing()[cal.href(ids[0])].sequence == 5  # above the client's own SEQUENCE
    with read_connection(cal.engine) as conn:
        ap = conn.execute(select(m.Appointment.__table__).where(
            m.Appointment.id == ids[0])).one()
        asg = conn.execute(select(m.Assignment.__table__).where(
            m.Assignment.id == ap.assignment_id)).one()
    assert (asg.planned_start, asg.planned_end) == (at("2026-12-11 08:30"),
                                                     at("2026-12-11 12:30"))
    assert any("(P4)" in d for d in cal.journal())


def test_other_edits_and_engineer_edits_are_reverted(cal: Cal) -> None:
    ids = _one_order(cal)
    cal.sync()
    href = cal.href(ids[0])
    # The organizer renames the event: not a move, so the service side puts it back.
    etag, data = cal.raw(cal.organizer_url, href)
    edited = data.replace(b"SUMMARY:SO-1001", b"SUMMARY:Lunch instead of SO-1001")
    assert cal.put_raw(cal.organizer_url, href, edited, etag) == 204
    # The engineer moves it in their own calendar: only the organizer may move (R15).
    url = cal.engineer_urls["E001"]
    etag, data = cal.raw(url, href)
    ev = ical.parse(data)
    moved = ical.to_ics(ical.EventData(**{**{f: getattr(ev, f) for f in ev.__dataclass_fields__},
                                          "start": at("2026-12-12 08:00"),
                                          "end": at("2026-12-12 09:00")}),
                        dtstamp=at("2026-12-01 10:00"))
    assert cal.put_raw(url, href, moved, etag) == 204
    report = cal.sync()
    assert report.reverted == 2 and report.moved == 0, report.summary()
    assert cal.listing()[href].subject.startswith("SO-1001")
    assert cal.listing(url)[href].start == at("2026-12-07 08:00")
    notes = [d for d in cal.journal() if d.startswith("calendar:")]
    assert any("summary edited in the organizer's calendar; reverted" in d for d in notes)
    assert any("start, end edited in engineer E001's calendar; reverted" in d for d in notes)


def test_deleted_event_is_recreated(cal: Cal) -> None:
    ids = _one_order(cal)
    cal.sync()
    href = cal.href(ids[0])
    gw = cal.gateway()
    try:
        etag = cal.raw(cal.organizer_url, href)[0]
        assert gw.delete(cal.organizer_url + href, etag) in (200, 204)
    finally:
        gw.close()
    report = cal.sync()
    assert report.recreated == 1, report.summary()
    assert href in cal.listing()
    assert any("deleted in the organizer's calendar; recreated" in d for d in cal.journal())
