"""Set-based writes for fan-outs: one `executemany` per statement, straight to the driver.

SQLAlchemy's executemany builds a parameter dictionary per row; for the thousands of rows of a
fan-out that costs more than the database's own work. These helpers build the SQL text once per
(dialect, table, columns), convert values with the columns' own bind processors (so UTC
datetimes are stored exactly as the ORM would store them) and hand tuples to the driver.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.engine import Dialect

Processor = Callable[[Any], Any] | None


def _placeholder(dialect: Dialect) -> str:
    return "?" if dialect.paramstyle == "qmark" else "%s"


@cache
def _processors(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> tuple[Processor, ...]:
    return tuple(table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
                 for name in columns)


def _convert(dialect: Dialect, table: Table, columns: tuple[str, ...],
             rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    procs = _processors(dialect, table, columns)
    if not any(procs):
        return [tuple(r) for r in rows]
    # Fan-outs repeat the same few values (one timestamp, one due date): convert each once.
    memo: dict[tuple[int, Any], Any] = {}

    def conv(i: int, p: Processor, v: Any) -> Any:
        if p is None or v is None:
            return v
        key = (i, v)
        if key not in memo:
            memo[key] = p(v)
        return memo[key]

    active = [(i, p) for i, p in enumerate(procs) if p is not None]
    out = []
    for row in rows:
        values = list(row)
        for i, p in active:
            values[i] = conv(i, p, values[i])
        out.append(tuple(values))
    return out


@cache
def _insert_sql(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> str:
    q = dialect.identifier_preparer.quote
    ph = _placeholder(dialect)
    return (f"INSERT INTO {q(table.name)} ({', '.join(q(c) for c in columns)}) "
            f"VALUES ({', '.join(ph for _ in columns)})")


@cache
def _update_sql(dialect: Dialect, table: Table, columns: tuple[str, ...], key: str,
                bump: str | None) -> str:
    q = dialect.identifier_preparer.quote
    ph = _placeholder(dialect)
    sets = [f"{q(c)} = {ph}" for c in columns]
    if bump:
        sets.append(f"{q(bump)} = {q(bump)} + 1")
    return f"UPDATE {q(table.name)} SET {', '.join(sets)} WHERE {q(key)} = {ph}"


def insert_rows(conn: Connection, table: Table, columns: Sequence[str],
                rows: Sequence[Sequence[Any]]) -> None:
    """INSERT every row (tuples in `columns` order) with one executemany."""
    if not rows:
        return
    cols = tuple(columns)
    dialect = conn.dialect
    conn.exec_driver_sql(_insert_sql(dialect, table, cols), _convert(dialect, table, cols, rows))


def update_rows(conn: Connection, table: Table, columns: Sequence[str],
                rows: Sequence[Sequence[Any]], *, key: str = "id",
                bump: str | None = "version") -> None:
    """UPDATE by `key`: each row is the new values in `columns` order, then the key value.

    `bump` names a counter column increased by one in the same statement (optimistic locking).
    """
    if not rows:
        return
    cols = tuple(columns)
    dialect = conn.dialect
    values = _convert(dialect, table, (*cols, key), rows)
    conn.exec_driver_sql(_update_sql(dialect, table, cols, key, bump), values)
