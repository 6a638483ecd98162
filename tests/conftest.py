"""Shared fixtures: real databases (a SQLite file per test; PostgreSQL when asked), a fixed clock.

`DISPATCH_TEST_POSTGRES_URL` switches the PostgreSQL half on: the run creates its own database on
that server, migrates it once, empties it before each test and drops it at the end. If the server
cannot be reached the tests fail; they never skip.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pendulum
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from app.db.base import Base
from app.db.engine import make_engine, upgrade
from app.sync import commands as c
from app.sync.coordinator import Coordinator

PG_ENV = "DISPATCH_TEST_POSTGRES_URL"
BACKENDS = ["sqlite"] + (["postgres"] if os.environ.get(PG_ENV) else [])
T0 = pendulum.datetime(2026, 12, 3, 9, 0, tz="UTC")


class Clock:
    """A clock that moves only when told: journal and Information dates stay deterministic."""

    def __init__(self, now: pendulum.DateTime = T0) -> None:
        self.now = now

    def __call__(self) -> pendulum.DateTime:
        return self.now

    def tick(self, **kw: int) -> None:
        self.now = self.now.add(**kw)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    base = os.environ.get(PG_ENV)
    if not base:
        raise RuntimeError(f"{PG_ENV} is not set")
    if base.startswith("postgresql://"):
        base = "postgresql+psycopg://" + base[len("postgresql://"):]
    name = f"dispatch_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:  # fails loudly when the server is not there
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
            ), {"n": name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def _empty_pg(engine: Engine) -> None:
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        conn.execute(text(
            "INSERT INTO parameters (id, create_crm_appointments, include_sold_to_contact,"
            " update_assignments_from_appointment_dates, version) VALUES (1, false, false,"
            " false, 1)"))


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "dispatch.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("pg_url")
    engine = create_engine(url)
    _empty_pg(engine)
    engine.dispose()
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def coord(engine: Engine, clock: Clock) -> Coordinator:
    return Coordinator(engine, clock=clock)


DISPATCHER = c.Actor.dispatcher("tester")


def at(text_: str) -> pendulum.DateTime:
    """A Rome wall-clock time as an aware instant: `at("2026-12-07 08:00")`."""
    return pendulum.parse(text_, tz="Europe/Rome")  # type: ignore[return-value]


@pytest.fixture
def world(coord: Coordinator) -> Coordinator:
    """Master data and P1-P3 on: organizer E900, engineers E001-E004 (E004 without e-mail)."""
    coord.execute_many([
        c.UpsertEmployee("E900", "Paola Neri", "paola.neri@example.com"),
        c.UpsertEmployee("E001", "Mario Rossi", "mario.rossi@example.com", engineer=True),
        c.UpsertEmployee("E002", "Luigi Verdi", "luigi.verdi@example.com", engineer=True),
        c.UpsertEmployee("E003", "Giorgio Neri", "giorgio.neri@example.com", engineer=True),
        c.UpsertEmployee("E004", "Franca Gialli", None, engineer=True),
        c.UpsertEmployee("E901", "Ugo Planner", None),
        c.UpsertPartner("BP100", "Acme S.p.A."),
        c.UpsertPartner("BP200", "Beta S.r.l."),
        c.UpsertContact("BP100", "C100", "Anna Bianchi", "anna@acme.example"),
        c.UpsertContact("BP100", "C101", "Bruno Acme", "bruno@acme.example"),
        c.UpsertContact("BP200", "C200", "Carla Beta", "carla@beta.example"),
        c.SetParameters(create_crm_appointments=True, organizer="E900",
                        include_sold_to_contact=True),
    ], DISPATCHER)
    return coord


def order_cmd(number: str = "SO-1001", *, engineers: tuple[str, ...] = ("E001", "E002"),
              lines: int = 1, kind: str = "service_order") -> c.CreateOrder:
    acts = tuple(
        c.ActivitySpec(10 * (i + 1), f"Replace pump {i + 1}", at("2026-12-07 08:00").add(days=i),
                       at("2026-12-07 12:00").add(days=i), engineers)
        for i in range(lines)
    )
    return c.CreateOrder(number, kind, "BP100", "BP100", "Via Roma 1, 20121 Milano",
                         at("2026-12-07 08:00"), at("2026-12-09 18:00"), contact="C100",
                         activities=acts)


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The console tests' demo database (seed 7, fixed start), built once per run."""
    from tests.tui_support import build_demo

    return build_demo(tmp_path_factory.mktemp("demo") / "demo.db")


@pytest.fixture
def demo_engine(demo_template: Path, tmp_path: Path) -> Iterator[Engine]:
    from tests.tui_support import copy_demo

    engine = copy_demo(demo_template, tmp_path)
    yield engine
    engine.dispose()
