"""Engine benchmark: prints one JSON line per figure (targets from the engine issue).

(a) generating 100,000 assignments with their appointments through the coordinator;
(b) one order-header change fanning out to 2,000 appointments, median of 5, beside the floor:
    raw SQL writing the same rows with executemany;
(c) `dispatch check` over the 100,000 assignments.

Usage: python benchmarks/engine.py [--assignments N] [--fanout N] [--db URL]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pendulum

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.db.engine import make_engine, read_connection, upgrade, write_transaction  # noqa: E402
from app.sync import commands as c  # noqa: E402
from app.sync import demo  # noqa: E402
from app.sync.check import violations  # noqa: E402
from app.sync.coordinator import Coordinator  # noqa: E402

ACTOR = c.Actor.dispatcher("bench")
START = pendulum.datetime(2026, 12, 7, 8, tz="Europe/Rome")


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def big_order(number: str, activities: int, engineers: int) -> c.CreateOrder:
    codes = tuple(code for code, _ in demo.ENGINEERS[:engineers])
    acts = tuple(
        c.ActivitySpec(10 * (i + 1), f"Job {i + 1}", START.add(hours=i), START.add(hours=i + 2),
                       codes) for i in range(activities))
    return c.CreateOrder(number, "service_order", "BP100", "BP100", "Via Roma 1, Milano",
                         START, START.add(days=30), contact="C1000", activities=acts)


def generation(coord: Coordinator, total: int) -> float:
    """Orders of 5 activities x 4 engineers (20 assignments each), 25 orders a transaction."""
    per_order = 20
    orders = total // per_order
    t0 = time.perf_counter()
    batch: list[c.Command] = []
    for i in range(orders):
        number = f"GEN-{i:06d}"
        batch += [big_order(number, 5, 4), c.GenerateAssignments(number)]
        if len(batch) >= 50:
            coord.execute_many(batch, ACTOR)
            batch = []
    if batch:
        coord.execute_many(batch, ACTOR)
    return time.perf_counter() - t0


def fanout(coord: Coordinator, engine, n: int, repeats: int = 5) -> tuple[list[float], list[float]]:  # type: ignore[no-untyped-def]
    engineers = 10
    coord.execute_many([big_order("FAN-1", n // engineers, engineers),
                        c.GenerateAssignments("FAN-1")], ACTOR)
    ours: list[float] = []
    for i in range(repeats):
        t0 = time.perf_counter()
        change = coord.execute(c.UpdateOrder("FAN-1", address=f"Via Dante {i + 2}, Milano"), ACTOR)
        ours.append(time.perf_counter() - t0)
        assert len(change.appointments) == n, change.summary
    # The floor: the same rows and columns, written by raw executemany in one transaction.
    with read_connection(engine) as conn:
        ids = [r[0] for r in conn.exec_driver_sql(
            "SELECT ap.id FROM appointments ap JOIN assignments a ON a.id = ap.assignment_id "
            "JOIN orders o ON o.id = a.order_id WHERE o.number = 'FAN-1'")]
    floor: list[float] = []
    for i in range(repeats):
        rows = [(f"Via Floor {i}", f"info {i} {ap}", ap) for ap in ids]
        t0 = time.perf_counter()
        with write_transaction(engine) as conn:
            conn.exec_driver_sql(
                "UPDATE appointments SET location = ?, information = ?, version = version + 1 "
                "WHERE id = ?" if engine.dialect.name == "sqlite" else
                "UPDATE appointments SET location = %s, information = %s, version = version + 1"
                " WHERE id = %s", rows)
        floor.append(time.perf_counter() - t0)
    # Put the mirror back in step after the floor's vandalism.
    coord.execute(c.UpdateOrder("FAN-1", address="Via Dante 1, Milano"), ACTOR)
    return ours, floor


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--assignments", type=int, default=100_000)
    ap.add_argument("--fanout", type=int, default=2_000)
    ap.add_argument("--db", help="database URL (default: a fresh SQLite file)")
    args = ap.parse_args()
    url = args.db or f"sqlite:///{tempfile.mkdtemp(prefix='dispatch-bench-')}/bench.db"
    upgrade(url)
    engine = make_engine(url)
    coord = Coordinator(engine)
    coord.execute_many(demo.master_data(), ACTOR)
    backend = engine.dialect.name

    seconds = generation(coord, args.assignments)
    emit(bench="generate", db=backend, assignments=args.assignments, seconds=round(seconds, 2),
         assignments_per_s=round(args.assignments / seconds), target_per_s=5000)

    ours, floor = fanout(coord, engine, args.fanout)
    m_ours, m_floor = statistics.median(ours), statistics.median(floor)
    emit(bench="header_fanout", db=backend, appointments=args.fanout,
         median_s=round(m_ours, 4), runs=[round(x, 4) for x in ours], target_s=0.3,
         floor_median_s=round(m_floor, 4), ratio_to_floor=round(m_ours / m_floor, 2),
         target_ratio=3.0)

    t0 = time.perf_counter()
    with read_connection(engine) as conn:
        found = sum(1 for _ in violations(conn))
    seconds = time.perf_counter() - t0
    emit(bench="check", db=backend, assignments=args.assignments + args.fanout,
         seconds=round(seconds, 2), violations=found, target_s=10)


if __name__ == "__main__":
    main()
