"""One column type for every instant: stored in UTC, refused when naive, read back as pendulum."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pendulum
from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


def _utc(*parts: int) -> pendulum.DateTime:
    """A UTC pendulum instance, built directly (ten times cheaper than `pendulum.datetime`)."""
    return pendulum.DateTime(*parts, tzinfo=pendulum.UTC)


class NaiveDatetimeError(ValueError):
    """A datetime without a zone reached the database layer: we cannot know what it meant."""


def to_utc(value: dt.datetime) -> pendulum.DateTime:
    """Convert an aware datetime to a UTC pendulum instance; refuse naive ones.

    Goes through the stdlib's `astimezone`, not `pendulum.instance(x, tz=...)`, which ignores
    `tz` for naive pendulum instances (a measured pitfall).
    """
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise NaiveDatetimeError(f"naive datetime {value.isoformat()} has no time zone")
    std = dt.datetime(
        value.year, value.month, value.day, value.hour, value.minute, value.second,
        value.microsecond, tzinfo=value.tzinfo, fold=getattr(value, "fold", 0),
    ).astimezone(dt.UTC)
    return _utc(std.year, std.month, std.day, std.hour, std.minute, std.second, std.microsecond)


class UTCDateTime(TypeDecorator[pendulum.DateTime]):
    """Aware in, aware out. SQLite keeps naive UTC text (sortable); PostgreSQL a timestamptz."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        utc = to_utc(value)
        plain = dt.datetime(
            utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond
        )
        if dialect.name == "sqlite":
            return plain
        return plain.replace(tzinfo=dt.UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> pendulum.DateTime | None:
        if value is None:
            return None
        if isinstance(value, str):  # raw SQLite text, e.g. from a text() query
            value = dt.datetime.fromisoformat(value)
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return _utc(
            value.year, value.month, value.day, value.hour, value.minute, value.second,
            value.microsecond,
        )
