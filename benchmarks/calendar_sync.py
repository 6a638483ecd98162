"""Calendar sync overhead over the server (issue 4): ours beside raw HTTP for the same work.

- push: 200 appointments into an empty collection; ours = `sync_once(push only)` (load,
  render iCalendar, PUT with If-None-Match, record ETags); raw = the same 200 PUT requests with
  the same bodies, pre-rendered, over one keep-alive `http.client` connection.
- pull: 10 events among 200 moved on the server; ours = `sync_once(pull only)` (sync-collection
  REPORT, multiget, parse, compare, 10 `CalendarMove` commands); raw = the same sync-collection
  REPORT with the same token and one calendar-multiget REPORT of the 10 changed objects.

Against a real Radicale started here. Prints one JSON line per figure; `ratio` = ours / raw
(target <= 1.3). Each measure runs `--rounds` times (fresh collections for the push); the
median is reported. The server's answer times vary a lot on a busy machine, so each line also
gives `ours_local`: our time outside the HTTP calls (loading, rendering or parsing, the database,
the coordinator), and `ratio_own_work` = (raw + ours_local) / raw, the ratio with the server's
share taken as equal on both sides.
"""

from __future__ import annotations

import argparse  # noqa: E402
import base64  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import os
import statistics  # noqa: E402
import sys
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import pendulum  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "calendar"))

from radicale_server import PASSWORD, USER, Radicale  # noqa: E402
from sqlalchemy import Engine, select  # noqa: E402

from app.calendar import ical  # noqa: E402
from app.calendar import sync as calsync  # noqa: E402
from app.calendar.caldav_gateway import Gateway  # noqa: E402
from app.db import models as m  # noqa: E402
from app.db.engine import open_database, read_connection  # noqa: E402
from app.sync import commands as c  # noqa: E402
from app.sync.coordinator import Coordinator  # noqa: E402

ENV = "DISPATCH_BENCH_CALDAV_PASSWORD"
AUTH = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
SYNC_BODY = ('<?xml version="1.0" encoding="utf-8"?><sync-collection xmlns="DAV:">'
             "<sync-token>{token}</sync-token><sync-level>1</sync-level>"
             "<prop><getetag/></prop></sync-collection>")
MULTIGET = ('<?xml version="1.0" encoding="utf-8"?><C:calendar-multiget xmlns:D="DAV:" '
            'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/><C:calendar-data/>'
            "</D:prop>{hrefs}</C:calendar-multiget>")


def world(coord: Coordinator, n: int) -> None:
    actor = c.Actor.dispatcher("bench")
    coord.execute_many([
        c.UpsertEmployee("E900", "Paola Neri", "paola.neri@example.com"),
        c.UpsertEmployee("E001", "Mario Rossi", "mario.rossi@example.com", engineer=True),
        c.UpsertEmployee("E002", "Luigi Verdi", "luigi.verdi@example.com", engineer=True),
        c.UpsertPartner("BP100", "Acme S.p.A."),
        c.UpsertContact("BP100", "C100", "Anna Bianchi", "anna@acme.example"),
        c.SetParameters(create_crm_appointments=True, organizer="E900",
                        include_sold_to_contact=True),
    ], actor)
    day = pendulum.datetime(2026, 12, 7, 8, tz="Europe/Rome")
    cmds: list[c.Command] = []
    for i in range(n // 2):
        start = day.add(days=i % 20, hours=i % 6)
        number = f"SO-{1000 + i}"
        cmds += [c.CreateOrder(number, "service_order", "BP100", "BP100",
                               f"Via Roma {i}, Milano", start, start.add(hours=3), contact="C100",
                               activities=(c.ActivitySpec(10, f"Job {i}", start,
                                                          start.add(hours=2),
                                                          ("E001", "E002")),)),
                 c.GenerateAssignments(number)]
    coord.execute_many(cmds, actor)


class TimedGateway(Gateway):
    """The real gateway, timing the HTTP calls: what is left of our time is our own work."""

    http_s = 0.0

    def _timed(self, fn: Any, *args: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.http_s += time.perf_counter() - t

    def _call(self, *args: Any, **kw: Any) -> Any:
        return self._timed(lambda: super(TimedGateway, self)._call(*args, **kw))

    def changes(self, *args: Any) -> Any:
        return self._timed(super().changes, *args)

    def fetch(self, *args: Any) -> Any:
        return self._timed(super().fetch, *args)


class Raw:
    """Plain HTTP on one keep-alive connection: the floor any client pays."""

    def __init__(self, base: str) -> None:
        parts = urlsplit(base)
        self.conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)

    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        self.conn.request(method, path, body, {"Authorization": AUTH, **(headers or {})})
        resp = self.conn.getresponse()
        return resp.status, resp.read()


def measure_push(server: Radicale, n: int, rounds: int) -> dict[str, object]:
    ours: list[float] = []
    raw: list[float] = []
    ours_cpu: list[float] = []
    ours_http: list[float] = []
    for k in range(rounds):
        tmp = Path(tempfile.mkdtemp())
        engine = open_database(f"sqlite:///{tmp / 'bench.db'}")
        coord = Coordinator(engine)
        world(coord, n)
        org = server.make_calendar(f"push-{uuid.uuid4().hex[:8]}")
        calsync.setup(engine, server_url=server.url, organizer_calendar=org, username=USER,
                      password_env=ENV, tzid="Europe/Rome")
        # The same bodies for the raw side, rendered beforehand (not timed).
        with read_connection(engine) as conn:
            uids = list(conn.scalars(select(m.CalendarItem.uid)))
            items = calsync._load_items(conn, uids, "Europe/Rome")
        now = pendulum.now("UTC")
        bodies = [(ical.href_for(u), ical.to_ics(items[u].desired, dtstamp=now))  # type: ignore[arg-type]
                  for u in uids]
        raw_coll = urlsplit(server.make_calendar(f"raw-{uuid.uuid4().hex[:8]}")).path
        client = Raw(server.url)

        def run_raw(bodies: list[tuple[str, bytes]] = bodies, client: Raw = client,
                    raw_coll: str = raw_coll) -> float:
            t = time.perf_counter()
            for href, body in bodies:
                status, _ = client.request("PUT", raw_coll + href, body, {
                    "Content-Type": "text/calendar; charset=utf-8", "If-None-Match": "*"})
                assert status == 201, status
            return time.perf_counter() - t

        def run_ours(engine: Engine = engine, coord: Coordinator = coord) -> float:
            gw = TimedGateway(server.url, USER, PASSWORD)
            t, cpu = time.perf_counter(), time.process_time()
            report = calsync.sync_once(engine, coord, gateway=gw, pull=False, force=True)
            took = time.perf_counter() - t
            ours_cpu.append(time.process_time() - cpu)
            ours_http.append(gw.http_s)
            gw.close()
            assert report.pushed == n and not report.errors, report.summary()
            return took

        if k % 2 == 0:  # alternate who goes first: the server warms up as it works
            raw.append(run_raw())
            ours.append(run_ours())
        else:
            ours.append(run_ours())
            raw.append(run_raw())
        engine.dispose()
    o, r = statistics.median(ours), statistics.median(raw)
    local = statistics.median(a - h for a, h in zip(ours, ours_http, strict=True))
    return {"bench": "calendar_push", "appointments": n, "rounds": rounds, "ours_s": round(o, 3),
            "raw_s": round(r, 3), "ours_ms_per_event": round(1000 * o / n, 2),
            "raw_ms_per_event": round(1000 * r / n, 2), "ratio": round(o / r, 3),
            "ours_local_ms_per_event": round(1000 * local / n, 2),
            "ours_cpu_ms_per_event": round(1000 * statistics.median(ours_cpu) / n, 2),
            "ratio_own_work": round((r + local) / r, 3)}


def measure_pull(server: Radicale, n: int, changes: int, rounds: int) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp())
    engine = open_database(f"sqlite:///{tmp / 'bench.db'}")
    coord = Coordinator(engine)
    world(coord, n)
    org = server.make_calendar(f"pull-{uuid.uuid4().hex[:8]}")
    calsync.setup(engine, server_url=server.url, organizer_calendar=org, username=USER,
                  password_env=ENV, tzid="Europe/Rome")
    calsync.sync_once(engine, coord, force=True)  # push all, then a first (full) pull
    calsync.sync_once(engine, coord, force=True)
    path = urlsplit(org).path
    client = Raw(server.url)
    ours: list[float] = []
    raw: list[float] = []
    ours_http: list[float] = []
    for k in range(rounds):
        status, body = client.request("REPORT", path, SYNC_BODY.format(token="").encode(),
                                      {"Depth": "1", "Content-Type": "application/xml"})
        token = body.split(b"<sync-token>")[1].split(b"</sync-token>")[0].decode()
        with read_connection(engine) as conn:
            rows = conn.execute(select(m.CalendarEvent.href, m.CalendarEvent.etag).order_by(
                m.CalendarEvent.href).offset(k * changes).limit(changes)).all()
        moved = []
        for href, etag in rows:  # the organizer moves 10 events by an hour
            _, data = client.request("GET", path + href)
            ev = ical.parse(data)
            ev2 = ical.EventData(**{**{f: getattr(ev, f) for f in ev.__dataclass_fields__},
                                    "start": ev.start + pendulum.duration(hours=1),
                                    "end": ev.end + pendulum.duration(hours=1)})
            status, _ = client.request("PUT", path + href, ical.to_ics(
                ev2, dtstamp=pendulum.now("UTC")), {"Content-Type": "text/calendar",
                                                    "If-Match": etag})
            assert status in (201, 204), status
            moved.append(href)
        t = time.perf_counter()
        status, body = client.request("REPORT", path, SYNC_BODY.format(token=token).encode(),
                                      {"Depth": "1", "Content-Type": "application/xml"})
        assert status == 207 and body.count(b"<response>") + body.count(b":response>") >= changes
        hrefs = "".join(f"<D:href>{path}{h}</D:href>" for h in moved)
        status, body = client.request("REPORT", path, MULTIGET.format(hrefs=hrefs).encode(),
                                      {"Depth": "1", "Content-Type": "application/xml"})
        assert status == 207 and body.count(b"BEGIN:VEVENT") == changes
        raw.append(time.perf_counter() - t)
        gw = TimedGateway(server.url, USER, PASSWORD)
        t = time.perf_counter()
        report = calsync.sync_once(engine, coord, gateway=gw, push=False)
        ours.append(time.perf_counter() - t)
        ours_http.append(gw.http_s)
        gw.close()
        assert report.moved == changes, report.summary()
        calsync.sync_once(engine, coord, pull=False, force=True)  # write the moves back
        calsync.sync_once(engine, coord, push=False)  # and see our echo once
    o, r = statistics.median(ours), statistics.median(raw)
    local = statistics.median(a - h for a, h in zip(ours, ours_http, strict=True))
    return {"bench": "calendar_incremental_pull", "appointments": n, "changed": changes,
            "rounds": rounds, "ours_s": round(o, 4), "raw_s": round(r, 4),
            "ratio": round(o / r, 3), "ours_local_s": round(local, 4),
            "ratio_own_work": round((r + local) / r, 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--appointments", type=int, default=200)
    p.add_argument("--changes", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    os.environ[ENV] = PASSWORD
    server = Radicale(Path(tempfile.mkdtemp()) / "radicale")
    server.start()
    try:
        print(json.dumps(measure_push(server, args.appointments, args.rounds)), flush=True)
        print(json.dumps(measure_pull(server, args.appointments, args.changes, args.rounds)),
              flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
