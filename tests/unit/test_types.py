"""The one instant column type: UTC in the database, aware pendulum out, naive refused."""

from __future__ import annotations

import datetime as dt

import pendulum
import pytest
from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import StatementError

from app.db import models as m
from app.db.types import NaiveDatetimeError, UTCDateTime, to_utc
from tests.conftest import at

J = m.table(m.JournalEntry)


def test_round_trip_is_aware_utc_pendulum(engine: Engine) -> None:
    rome = at("2026-03-29 01:30")  # the night Rome moves to summer time
    with engine.begin() as conn:
        conn.execute(insert(J).values(at=rome, actor="t", op="x", detail=""))
        back = conn.execute(select(J.c.at)).scalar_one()
    assert isinstance(back, pendulum.DateTime)
    assert back.utcoffset() == dt.timedelta(0)
    assert back == rome
    # Durations across the DST change are computed in UTC: 2 hours are 2 hours.
    assert (back.add(hours=2) - back).in_hours() == 2
    assert back.add(hours=2).in_tz("Europe/Rome").hour == 4


def test_naive_values_are_refused_before_they_reach_the_database(engine: Engine) -> None:
    with pytest.raises(StatementError, match="naive datetime 2026-12-07T08:00:00") as info, \
            engine.begin() as conn:
        conn.execute(insert(J).values(at=dt.datetime(2026, 12, 7, 8), actor="t", op="x",
                                      detail=""))
    assert isinstance(info.value.orig, NaiveDatetimeError)
    with engine.connect() as conn:
        assert conn.execute(select(J.c.id)).first() is None


def test_naive_pendulum_trap_is_avoided() -> None:
    """`pendulum.instance(naive, tz=...)` ignores tz for naive pendulum values; we refuse them."""
    naive = pendulum.naive(2026, 12, 7, 8)
    with pytest.raises(NaiveDatetimeError):
        to_utc(naive)
    rome = pendulum.datetime(2026, 12, 7, 8, tz="Europe/Rome")
    assert to_utc(rome).hour == 7
    assert UTCDateTime().process_bind_param(rome, engine_dialect()) == dt.datetime(2026, 12, 7, 7)


def engine_dialect():  # type: ignore[no-untyped-def]
    from sqlalchemy.dialects import sqlite

    return sqlite.dialect()
