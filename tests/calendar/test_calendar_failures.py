# ruff: noqa: F811  (the fixtures are imported by name from calfixtures)
"""The calendar sync when things go wrong: stale ETags, a server that stops, hostile events."""

from __future__ import annotations

import datetime as dt

from calfixtures import DISPATCHER, Cal, at, cal, make_cal, order_cmd, own_radicale, radicale  # noqa: F401  (fixtures)
from radicale_server import Radicale
from sqlalchemy import Engine, delete, func, select, update

from app.calendar import ical
from app.calendar.caldav_gateway import Gateway
from app.calendar.outbox import enqueue_uids, sync_state, sync_states
from app.db import models as m
from app.db.engine import read_connection, write_transaction
from app.sync import commands as c
from app.sync.coordinator import Coordinator


def _ids(cal: Cal, number: str = "SO-1001", lines: int = 1,
         engineers: tuple[str, ...] = ("E001", "E002")) -> list[int]:
    out = cal.coord.execute_many([order_cmd(number, engineers=engineers, lines=lines),
                                  c.GenerateAssignments(number)], DISPATCHER)
    return sorted(out[1].appointments)


def _edit(ev: ical.EventData, **kw: object) -> ical.EventData:
    return ical.EventData(**{**{f: getattr(ev, f) for f in ev.__dataclass_fields__}, **kw})


def test_stale_etag_412_refetches_and_keeps_the_organizer_move(cal: Cal) -> None:
    ids = _ids(cal)
    cal.sync()
    href = cal.href(ids[0])
    etag, data = cal.raw(cal.organizer_url, href)
    moved = _edit(ical.parse(data), start=at("2026-12-14 10:00"), end=at("2026-12-14 12:00"))
    assert cal.put_raw(cal.organizer_url, href, ical.to_ics(moved, dtstamp=at("2026-12-01 09:00")),
                       etag) == 204
    # Meanwhile the service side changes the activity; the push (no pull first) meets a 412.
    cal.coord.execute(c.UpdateActivity("SO-1001", 10, description="Check the valves"), DISPATCHER)
    report = cal.sync(pull=False)
    assert report.moved == 1 and not report.errors, report.summary()
    ev = cal.listing()[href]
    assert "Check the valves" in ev.subject  # our change went through
    assert ev.start == at("2026-12-14 10:00")  # and the organizer's move was kept (R15)
    assert len(cal.listing()) == 2


def test_stale_etag_of_our_own_write_is_adopted_without_a_journal_entry(cal: Cal) -> None:
    ids = _ids(cal)
    cal.sync()
    with write_transaction(cal.engine) as conn:  # as if another round had written it unseen
        conn.execute(update(m.CalendarEvent.__table__).values(etag='"stale"'))
    before = len(cal.journal())
    cal.coord.execute(c.UpdateActivity("SO-1001", 10, description="New words"), DISPATCHER)
    report = cal.sync(pull=False)
    assert report.pushed == 3 and report.reverted == 0 and report.moved == 0, report.summary()
    assert all("New words" in e.subject for e in cal.listing().values())
    notes = [d for d in cal.journal()[before:] if d.startswith("calendar:")]
    assert notes == []
    assert ids


def test_written_but_not_recorded_is_not_sent_twice(cal: Cal) -> None:
    ids = _ids(cal)
    cal.sync()
    with write_transaction(cal.engine) as conn:  # a crash between the PUT and its record
        conn.execute(delete(m.CalendarEvent.__table__))
        uids = list(conn.scalars(select(m.CalendarItem.uid)))
        enqueue_uids(conn, uids)
    report = cal.sync()
    assert report.pushed == 0 and report.skipped == 3, report.summary()
    assert len(cal.listing()) == 2
    with read_connection(cal.engine) as conn:
        assert set(sync_states(conn, ids).values()) == {"synced"}


class StoppingGateway(Gateway):
    """Stops the real server after `after` successful PUTs: the next request finds it gone."""

    def __init__(self, server: Radicale, after: int, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.server, self.after = server, after

    def put(self, url: str, body: bytes, etag: str | None) -> tuple[int, str | None]:
        result = super().put(url, body, etag)
        self.after -= 1
        if self.after == 0:
            self.server.stop()
        return result


def test_server_stopped_mid_sync_then_restarted(world: Coordinator, engine: Engine,
                                                own_radicale: Radicale) -> None:
    cal = make_cal(engine, world, own_radicale)
    ids = _ids(cal, lines=3)  # 6 appointments, 3 of them E001's
    gw = StoppingGateway(own_radicale, 4, own_radicale.url, "dispatch", "s3cret-for-tests")
    report = cal.sync(gateway=gw, force=False)
    gw.close()
    assert report.unavailable and "connection refused" in report.unavailable, report.summary()
    with read_connection(engine) as conn:
        states = sync_states(conn, ids)
        queued = conn.scalar(select(func.count(func.distinct(m.CalendarOutbox.uid))))
    assert queued >= 3, states  # nothing lost: still queued
    assert any(s.startswith("retrying at") for s in states.values()), states
    # The background loop waits for the retry time ...
    own_radicale.start()
    assert cal.sync(force=False).pushed == 0
    # ... an explicit sync goes now: everything arrives once.
    report = cal.sync()
    assert not report.unavailable, report.summary()
    events = cal.listing()
    assert sorted(e.appointment_id for e in events.values()) == ids  # no duplicates
    mine = cal.listing(cal.engineer_urls["E001"])
    assert len(mine) == 3
    with read_connection(engine) as conn:
        assert set(sync_states(conn, ids).values()) == {"synced"}


def test_dst_crossing_appointment_keeps_its_length(cal: Cal) -> None:
    # 2026-10-25 03:00 CEST -> 02:00 CET: 01:00-05:00 Rome wall clock is five hours.
    start, end = at("2026-10-25 01:00"), at("2026-10-25 05:00")
    assert end - start == dt.timedelta(hours=5)
    cal.coord.execute_many([
        c.CreateOrder("SO-DST", "service_order", "BP100", "BP100", "Via Roma 1", start, end,
                      activities=(c.ActivitySpec(10, "Night shift", start, end, ("E001",)),)),
        c.GenerateAssignments("SO-DST")], DISPATCHER)
    cal.sync()
    [(href, ev)] = cal.listing().items()
    assert ev.end - ev.start == dt.timedelta(hours=5)
    assert (ev.start, ev.end) == (start, end)
    raw = cal.raw(cal.organizer_url, href)[1].decode()
    assert "DTSTART;TZID=Europe/Rome:20261025T010000" in raw
    assert "DTEND;TZID=Europe/Rome:20261025T050000" in raw
    assert "TZOFFSETTO:+0100" in raw and "TZOFFSETTO:+0200" in raw


def test_hostile_and_malformed_events_are_journaled_and_sync_goes_on(cal: Cal) -> None:
    ids = _ids(cal, lines=2)
    cal.sync()
    first, second = cal.href(ids[0]), cal.href(ids[2])
    # Our event turned into an all-day one by a calendar client.
    etag, data = cal.raw(cal.organizer_url, first)
    text = data.decode()
    hostile = text.replace("DTSTART;TZID=Europe/Rome:20261207T080000", "DTSTART;VALUE=DATE:20261207")
    hostile = hostile.replace("DTEND;TZID=Europe/Rome:20261207T120000", "DTEND;VALUE=DATE:20261208")
    assert hostile != text
    assert cal.put_raw(cal.organizer_url, first, hostile.encode(), etag) == 204
    # Another one made recurring (Radicale refuses a changed UID at the same href: 409).
    etag2, data2 = cal.raw(cal.organizer_url, second)
    uid = ical.parse(data2).uid
    bad = data2.decode().replace("END:VEVENT", "RRULE:FREQ=DAILY;COUNT=3\r\nEND:VEVENT")
    assert cal.put_raw(cal.organizer_url, second, bad.encode(), etag2) == 204
    # The organizer's own event, not ours: left alone.
    lunch = ical.to_ics(_edit(ical.parse(data), uid="lunch-1", appointment_id=0,
                              subject="[bold]Lunch[/bold]"), dtstamp=at("2026-12-01 09:00"))
    assert cal.put_raw(cal.organizer_url, "lunch-1.ics", lunch, None) == 201
    cal.coord.execute(c.UpdateActivity("SO-1001", 20, description="Still synced"), DISPATCHER)
    report = cal.sync()
    assert report.unreadable == 2 and report.unavailable is None, report.summary()
    notes = [d for d in cal.journal() if "could not be read" in d]
    assert any("whole day" in d for d in notes), notes
    assert any("recurring" in d for d in notes), notes
    events = cal.listing()
    assert events[first].start == at("2026-12-07 08:00")  # rewritten from the service side
    assert "lunch-1.ics" in events  # not ours: untouched
    assert "Still synced" in events[second].subject and events[second].uid == uid
    with read_connection(cal.engine) as conn:
        assert sync_state(conn, ids[0]) == "synced"


def test_outbox_is_written_in_the_change_transaction(cal: Cal) -> None:
    cal.sync()
    bad = [order_cmd("SO-2001"), c.GenerateAssignments("SO-2001"),
           c.MoveAssignment("SO-2001", 10, 1, at("2026-12-08 10:00"), at("2026-12-08 09:00"))]
    try:
        cal.coord.execute_many(bad, DISPATCHER)
    except Exception as exc:
        assert "must be after" in str(exc)
    else:
        raise AssertionError("the bad move was accepted")
    with read_connection(cal.engine) as conn:  # rolled back together with the change
        assert conn.scalar(select(func.count()).select_from(m.CalendarOutbox)) == 0
        assert conn.scalar(select(func.count()).select_from(m.CalendarItem)) == 0


def test_nothing_is_queued_without_a_calendar(world: Coordinator, engine: Engine) -> None:
    out = world.execute_many([order_cmd(), c.GenerateAssignments("SO-1001")], DISPATCHER)
    with read_connection(engine) as conn:
        assert conn.scalar(select(func.count()).select_from(m.CalendarOutbox)) == 0
        assert sync_state(conn, out[1].appointments[0]) == "off"


def test_a_refusing_calendar_shows_as_error_and_the_rest_goes_on(cal: Cal) -> None:
    from app.calendar import sync as calsync

    missing = cal.server.collection_url("nobody-" + cal.organizer_url.split("/")[-3])
    calsync.setup(cal.engine, server_url=cal.server.url, organizer_calendar=cal.organizer_url,
                  engineers={"E002": missing}, username="dispatch",
                  password_env="DISPATCH_TEST_CALDAV_PASSWORD")
    ids = _ids(cal, engineers=("E002", "E001"))
    report = cal.sync()
    assert report.errors and report.unavailable is None, report.summary()
    with read_connection(cal.engine) as conn:
        states = sync_states(conn, ids)
    errors = [s for s in states.values() if s.startswith("error: ")]
    assert len(errors) == 1 and "409" in errors[0], states  # E002's calendar is not there
    assert list(states.values()).count("synced") == 1, states  # E001's went through
    assert len(cal.listing()) == 2  # the organizer's calendar has both


def test_run_loop_runs_rounds_until_stopped(cal: Cal) -> None:
    import threading

    from app.calendar import sync as calsync

    _ids(cal)
    stop = threading.Event()
    reports: list[calsync.SyncReport] = []

    def on_report(report: calsync.SyncReport) -> None:
        reports.append(report)
        stop.set()

    worker = threading.Thread(target=calsync.run_loop, args=(cal.engine, stop),
                              kwargs={"interval": 0.05, "on_report": on_report})
    worker.start()
    worker.join(20)
    assert not worker.is_alive()
    assert reports and reports[0].pushed == 3, [r.summary() for r in reports]
