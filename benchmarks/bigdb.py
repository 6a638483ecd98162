"""Build (once) and cache the 1,000,000-assignment SQLite database the console benchmark uses.

Written through the coordinator like any other data: the demo's master data, then the demo's
orders in big transactions, each block of orders planned a week later than the one before, so
that engineers carry a realistic few visits a day over the years instead of a pile-up.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pendulum
from sqlalchemy import func, select

from app.db import models as m
from app.db.engine import open_database, read_connection
from app.sync import commands as c
from app.sync import demo
from app.sync.coordinator import Coordinator

DEFAULT_PATH = Path(os.environ.get("DISPATCH_BENCH_DB", "/tmp/dispatch-bench-1m.db"))
TARGET = 1_000_000
BLOCK = 60  # orders per simulated week
START = pendulum.datetime(2020, 1, 6, tz=demo.TZ)
CLOCK = pendulum.datetime(2026, 12, 3, 9, 0, tz="UTC")


def count(url: str) -> int:
    engine = open_database(url)
    with read_connection(engine) as conn:
        n = int(conn.scalar(select(func.count()).select_from(m.Assignment)) or 0)
    engine.dispose()
    return n


def build(path: Path = DEFAULT_PATH, target: int = TARGET) -> Path:
    """The cached database at `path`, built when missing or short of `target` assignments."""
    url = f"sqlite:///{path}"
    if path.exists() and count(url) >= target:
        return path
    tmp = path.with_suffix(".building")
    for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        p.unlink(missing_ok=True)
    engine = open_database(f"sqlite:///{tmp}")
    coord = Coordinator(engine, clock=lambda: CLOCK)
    actor = c.Actor.dispatcher("bench")
    coord.execute_many(demo.master_data(), actor)
    made, week, t0 = 0, 0, time.perf_counter()
    while made < target:
        start = START.add(weeks=week)
        pending: list[c.Command] = []
        n_assign = 0
        for cmds in demo.orders(BLOCK, seed=week, start=start, activities=(2, 4),
                                engineers=(2, 4)):
            # Each block reuses the demo's numbering; give every block its own numbers.
            first = cmds[0]
            assert isinstance(first, c.CreateOrder)
            number = f"{first.order}-{week:04d}"
            n_assign += sum(len(a.engineers) for a in first.activities)
            pending.extend(_renumber(cmd, number) for cmd in cmds)
        coord.execute_many(pending, actor)
        made += n_assign
        week += 1
        if week % 20 == 0:
            rate = made / (time.perf_counter() - t0)
            print(f"bigdb: {made} assignments, {rate:.0f}/s", file=sys.stderr, flush=True)
    engine.dispose()
    for suffix in ("-wal", "-shm"):
        Path(f"{tmp}{suffix}").unlink(missing_ok=True)
    tmp.rename(path)
    return path


def _renumber(cmd: c.Command, number: str) -> c.Command:
    from dataclasses import replace

    return replace(cmd, order=number)  # type: ignore[type-var]


if __name__ == "__main__":
    print(build())
