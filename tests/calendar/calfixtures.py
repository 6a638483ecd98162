"""Fixtures of the calendar tests (imported by name: a `conftest.py` here would clash with the
root one): a real Radicale server and a database with a calendar set up.

One Radicale serves the session (each test gets its own, small, calendar collections); tests
that stop the server start their own. If Radicale cannot start, the tests fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from radicale_server import PASSWORD, USER, Radicale
from sqlalchemy import Engine, select

from app.calendar import ical
from app.calendar import sync as calsync
from app.calendar.caldav_gateway import Gateway
from app.db import models as m
from app.sync.coordinator import Coordinator

PASSWORD_ENV = "DISPATCH_TEST_CALDAV_PASSWORD"

# The root conftest's helpers, imported under the package name (tests/ is a package).
from tests.conftest import DISPATCHER, at, order_cmd  # noqa: E402, F401


@pytest.fixture(scope="session")
def radicale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Radicale]:
    server = Radicale(tmp_path_factory.mktemp("radicale"))
    server.start()
    yield server
    server.stop()


@dataclass
class Cal:
    """A database whose calendar is set up against a Radicale: the organizer's collection and
    engineer E001's."""

    engine: Engine
    coord: Coordinator
    server: Radicale
    organizer_url: str
    engineer_urls: dict[str, str]

    def sync(self, **kw: Any) -> calsync.SyncReport:
        kw.setdefault("force", True)
        return calsync.sync_once(self.engine, self.coord, **kw)

    def gateway(self) -> Gateway:
        return Gateway(self.server.url, USER, PASSWORD)

    def listing(self, url: str | None = None) -> dict[str, ical.EventData]:
        """What the server holds in a collection: href name -> parsed event."""
        url = url or self.organizer_url
        gw = self.gateway()
        try:
            names = list(gw.changes(url, None).changed)
            return {n: ical.parse(data) for n, (_etag, data) in gw.fetch(url, names).items()}
        finally:
            gw.close()

    def raw(self, url: str, name: str) -> tuple[str | None, bytes]:
        gw = self.gateway()
        try:
            got = gw.get(url + name)
            assert got is not None, f"{name} is not on the server"
            return got
        finally:
            gw.close()

    def put_raw(self, url: str, name: str, body: bytes, etag: str | None) -> int:
        gw = self.gateway()
        try:
            return gw.put(url + name, body, etag)[0]
        finally:
            gw.close()

    def href(self, appointment_id: int) -> str:
        from app.db.engine import read_connection

        with read_connection(self.engine) as conn:
            uid = conn.scalar(select(m.CalendarItem.uid).where(
                m.CalendarItem.appointment_id == appointment_id))
        assert uid is not None, f"appointment {appointment_id} has no calendar UID"
        return ical.href_for(uid)

    def journal(self) -> list[str]:
        from app.db.engine import read_connection

        with read_connection(self.engine) as conn:
            return list(conn.scalars(select(m.JournalEntry.detail).order_by(m.JournalEntry.id)))


def make_cal(engine: Engine, coord: Coordinator, server: Radicale) -> Cal:
    os.environ[PASSWORD_ENV] = PASSWORD
    space = uuid.uuid4().hex[:10]
    org = server.make_calendar(f"org-{space}")
    eng = server.make_calendar(f"e001-{space}")
    calsync.setup(engine, server_url=server.url, organizer_calendar=org,
                  engineers={"E001": eng}, username=USER, password_env=PASSWORD_ENV,
                  tzid="Europe/Rome", check=True)
    return Cal(engine, coord, server, org, {"E001": eng})


@pytest.fixture
def cal(world: Coordinator, engine: Engine, radicale: Radicale) -> Cal:
    return make_cal(engine, world, radicale)


@pytest.fixture
def own_radicale(tmp_path: Path) -> Iterator[Radicale]:
    server = Radicale(tmp_path / "radicale")
    server.start()
    yield server
    server.stop()


__all__ = ["DISPATCHER", "Cal", "at", "make_cal", "order_cmd"]
