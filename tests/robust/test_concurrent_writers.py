"""Concurrent writers: a few processes of random commands against one database, then verified.

The workload and the verifier are `benchmarks/load.py` (which reports the figures at N = 2, 8,
32); here a short run must come out clean on every database the suite runs on.
"""

from __future__ import annotations

import pytest
from robust_support import bench
from sqlalchemy import update

from app.db import models as m
from app.db.engine import make_engine, upgrade, write_transaction
from app.sync.coordinator import RETRIES, Coordinator
from app.sync.errors import Busy

load = bench("load")


def test_concurrent_writers_leave_one_truth(db_url: str) -> None:
    load.prepare(db_url, n_orders=12, seed=5)
    # On PostgreSQL the workers connect as they would through pgbouncer (no server prepares).
    url = db_url + ("?prepare_threshold=none" if db_url.startswith("postgresql") else "")
    figures = load.run(url, workers=4, seconds=3.0, seed=2)
    assert figures["crashed_workers"] == 0
    assert figures["escaped_errors"] == 0, figures["error_sample"]
    assert figures["check_violations"] == 0, figures["violation_sample"]
    assert figures["verification_problems"] == 0, figures["problem_sample"]
    assert figures["commands"] >= 40
    # The mix really exercised both sides: kept changes, refusals and stale-version conflicts.
    assert figures["kept_with_changes"] > 0
    assert figures["refusals"] > 0
    assert figures["conflicts"] > 0


def test_verifier_sees_a_lost_update(db_url: str) -> None:
    """The verifier is not a rubber stamp: an accepted change whose version bump is lost, and a
    refused command with journal rows, are both reported."""
    load.prepare(db_url, n_orders=4, seed=5)
    before = load._state(db_url)
    key, row = next((k, r) for k, r in before["assignments"].items() if r["status"] == "Assigned"
                    and not k.startswith(("MSO-1003", "WO-1002")))
    order, line, number = key.rsplit("/", 2)
    engine = make_engine(db_url)
    cmds, meta = load.build("move", {**row, "order": order, "line": int(line),
                                     "assignment": int(number), "act_version": 1,
                                     "order_version": 1, "order_status": "Free",
                                     "sold_to": "BP100"}, load.random.Random(1), "0-1")
    Coordinator(engine).execute_many(cmds, load.c.Actor.dispatcher("load-0-1"))
    A = m.Assignment.__table__
    with write_transaction(engine) as conn:  # someone writes behind the coordinator's back
        conn.execute(update(A).where(A.c.version == row["version"] + 1, A.c.number == int(number))
                     .values(version=row["version"]))
    engine.dispose()
    records = [{**meta, "actor": "load-0-1", "outcome": "ok", "summary": "Moved"},
               {"actor": "load-0-2", "kind": "move", "key": key, "outcome": "conflict"}]
    result = load.verify(db_url, before, records)
    assert any("lost update" in p for p in result["problems"]), result["problems"]


def test_busy_database_gives_a_clear_error_and_no_change(db_url: str, monkeypatch:
                                                         pytest.MonkeyPatch) -> None:
    """A writer that holds the database longer than the retry bound: the command ends with
    `Busy` (never "database is locked" or a driver error), and nothing of it is kept.

    On PostgreSQL this used to hang for ever: a row lock has no timeout unless one is set
    (fixed by `SET LOCAL lock_timeout` in `write_transaction`, and 55P03 counted as transient).
    """
    import app.db.engine as engine_module

    upgrade(db_url)
    monkeypatch.setattr(engine_module, "BUSY_TIMEOUT_MS", 150)
    monkeypatch.setattr("app.sync.coordinator.RETRIES", 1)
    assert RETRIES >= 1
    holder = make_engine(db_url)
    engine = make_engine(db_url)
    P = m.Parameters.__table__
    from app.sync import commands as c

    with write_transaction(holder) as conn:
        conn.execute(update(P).where(P.c.id == 1).values(version=P.c.version))  # hold the lock
        with pytest.raises(Busy) as err:
            Coordinator(engine).execute(c.SetParameters(include_sold_to_contact=True),
                                        c.Actor.dispatcher("waiting"))
    assert "busy" in str(err.value) and "nothing was changed" in str(err.value)
    with write_transaction(engine) as conn:
        assert conn.execute(P.select()).mappings().one()["include_sold_to_contact"] is False
    holder.dispose()
    engine.dispose()


def test_prepare_threshold_in_a_postgresql_url_reaches_psycopg_as_a_number() -> None:
    """Behind pgbouncer < 1.21 in transaction mode psycopg's server-side prepares fail
    ("prepared statement _pg3_1 does not exist", measured with load.py --via-port); the URL
    option turns them off. Passed through as text it made psycopg raise a TypeError."""
    from app.db.engine import _pg_options, alembic_config

    base = "postgresql+psycopg://postgres@127.0.0.1:6432/dispatch"
    assert _pg_options(base) == (base, {})
    assert _pg_options(base + "?prepare_threshold=none") == (base, {"prepare_threshold": None})
    assert _pg_options(base + "?prepare_threshold=0&application_name=x") == (
        base + "?application_name=x", {"prepare_threshold": 0})
    assert "prepare_threshold" not in alembic_config(base + "?prepare_threshold=none"
                                                     ).get_main_option("sqlalchemy.url")
