"""Migrations keep every row: demo data at the first migration, upgraded step by step to the head.

The demo is written by today's coordinator (at the head schema) and poured, column by column,
into a database at the first revision; then the database is upgraded one revision at a time.
After every step each row of the first schema is still there with the same values; at the head
the rules check is clean and the coordinator writes to it. With only 0001 today the upgrade is
empty; the test walks whatever `migrations/versions` holds, so a new migration is covered the
day it is added (a migration that adds a column must fill it for old rows, or the check fails).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pendulum
import pytest
from robust_support import pg_admin_url
from sqlalchemy import Engine, MetaData, create_engine, delete, insert, select, text
from sqlalchemy.engine import make_url

from app.db.engine import alembic_config, make_engine, read_connection, upgrade, write_transaction
from app.sync import commands as c
from app.sync import demo
from app.sync.check import violations
from app.sync.coordinator import Coordinator

SKIP = {"alembic_version"}


def revisions(url: str) -> list[str]:
    """Every revision, the first one first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(url))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


@pytest.fixture
def old_db(db_url: str, tmp_path: Any) -> Iterator[str]:
    """An empty database of the same kind as `db_url`, to be created at the first revision."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    admin = create_engine(pg_admin_url(), isolation_level="AUTOCOMMIT")
    name = f"dispatch_migrate_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(pg_admin_url()).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                              " WHERE datname = :n"), {"n": name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def reflect(engine: Engine) -> MetaData:
    meta = MetaData()
    meta.reflect(bind=engine)
    return meta


def pour(source: Engine, target: Engine) -> None:
    """Every row of `source` into `target`, for the columns `target` has."""
    src, dst = reflect(source), reflect(target)
    tables = [t for t in dst.sorted_tables if t.name not in SKIP]
    with write_transaction(target) as out:
        for table in reversed(tables):
            out.execute(delete(table))  # the migration's own rows (the parameters record)
        with read_connection(source) as conn:
            for table in tables:
                cols = [col.name for col in table.columns]
                rows = [dict(r._mapping) for r in conn.execute(
                    select(*(src.tables[table.name].c[n] for n in cols)))]
                if rows:
                    out.execute(insert(table), rows)
        if target.dialect.name == "postgresql":  # ids were given: move the sequences on
            for table in tables:
                if "id" in table.c:
                    out.execute(text(
                        f"SELECT setval(pg_get_serial_sequence('\"{table.name}\"', 'id'),"
                        f" COALESCE(MAX(id), 1)) FROM \"{table.name}\""))


def contents(engine: Engine, shape: dict[str, list[str]]) -> dict[str, list[tuple]]:
    """The rows of every table of `shape`, for its columns, in a stable order."""
    meta = reflect(engine)
    out: dict[str, list[tuple]] = {}
    with read_connection(engine) as conn:
        for name, cols in shape.items():
            table = meta.tables[name]
            out[name] = sorted((tuple(r) for r in conn.execute(
                select(*(table.c[n] for n in cols)))), key=repr)
    return out


def test_demo_data_survives_every_migration(db_url: str, old_db: str) -> None:
    source = make_engine(db_url)
    demo.load(Coordinator(source), n_orders=15, seed=4,
              start=pendulum.datetime(2026, 12, 7, tz="Europe/Rome"))
    revs = revisions(old_db)
    assert revs, "no migrations found"
    upgrade(old_db, revs[0])
    target = make_engine(old_db)
    pour(source, target)
    source.dispose()
    first = reflect(target)
    shape = {t.name: [col.name for col in t.columns] for t in first.sorted_tables
             if t.name not in SKIP}
    before = contents(target, shape)
    assert sum(map(len, before.values())) > 500 and before["appointments"], "demo too small"
    for rev in [*revs[1:], "head"]:
        upgrade(old_db, rev)
        target.dispose()
        assert contents(target, shape) == before, f"rows changed by migration {rev}"
    with read_connection(target) as conn:
        assert list(violations(conn)) == []
    # The upgraded database is a working database: the coordinator writes, the rules hold.
    change = Coordinator(target).execute(c.UpdateOrder("SO-1001", address="Via Migrata 1, Lodi"),
                                         c.Actor.dispatcher("after-upgrade"))
    assert change.appointments_touched > 0
    with read_connection(target) as conn:
        assert list(violations(conn)) == []
    target.dispose()
