"""Concurrent writers: N processes issue random coordinator commands against one database.

    python benchmarks/load.py [--db sqlite|postgres|both] [--workers 2,8,32] [--seconds 20]

Each worker is a terminal: it reads a snapshot (an assignment, its order and activity), builds a
command from it and runs it through the coordinator, as fast as it can. The mix is realistic:
moves, reassignments, status changes, order header and status changes, activity edits, creates
(assignments and whole orders), deletes, some deliberately invalid or refused commands and some
with a deliberately stale version (which must end as `Conflict`, never as a silent overwrite).

Every command runs under its own actor name (`load-<worker>-<seq>`), so afterwards the journal
says exactly which commands were kept. `verify` then proves:
- `app.sync.check.violations` is empty;
- every accepted command that changed something has journal rows, every refused one has none;
- the last accepted command on each assignment, order and activity is what the data shows;
- every version equals its starting value plus the number of accepted changes (no lost update);
- no error other than the coordinator's own (`DispatchError`) reached a worker: no "database is
  locked", no traceback.
One JSON line per (database, N): commands/s, p50/p95/max latency, conflicts, refusals, busy,
check violations, verification problems.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pendulum
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.db import models as m  # noqa: E402
from app.db.engine import make_engine, read_connection, upgrade  # noqa: E402
from app.sync import commands as c  # noqa: E402
from app.sync import demo  # noqa: E402
from app.sync.check import violations  # noqa: E402
from app.sync.coordinator import Coordinator  # noqa: E402
from app.sync.errors import Busy, Conflict, DispatchError  # noqa: E402

A = m.Assignment.__table__
ACT = m.Activity.__table__
O = m.Order.__table__  # noqa: E741
J = m.JournalEntry.__table__
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
START = pendulum.datetime(2026, 12, 7, tz="Europe/Rome")
ENGINEERS = [code for code, _ in demo.ENGINEERS]
WORKABLE = ["Free", "Planned", "Released"]
STATUSES = ["Assigned", "Accepted", "Started", "Completed", "Rejected"]
VERSIONED_OPS = {"move_assignment", "reassign", "set_assignment_status"}

# (kind, weight): what a busy dispatch office does, roughly.
MIX = [
    ("move", 24), ("stale_move", 5), ("reassign", 11), ("status", 14), ("update_order", 9),
    ("update_activity", 5), ("order_status", 5), ("create_assignment", 9),
    ("delete_assignment", 6), ("create_order", 3), ("invalid", 6), ("technician", 3),
    ("rename_partner", 2), ("rename_engineer", 2),
]


# ---- databases -------------------------------------------------------------------------------

class Database:
    """A scratch database, SQLite file or PostgreSQL database, created here and dropped after."""

    def __init__(self, kind: str, pg_base: str = PG_DEFAULT) -> None:
        self.kind = kind
        self.pg_base = pg_base
        if kind == "sqlite":
            self.dir = tempfile.mkdtemp(prefix="dispatch-load-")
            self.url = f"sqlite:///{self.dir}/load.db"
        else:
            self.name = f"dispatch_load_{uuid.uuid4().hex[:10]}"
            admin = create_engine(pg_base, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{self.name}"'))
            admin.dispose()
            self.url = make_url(pg_base).set(database=self.name).render_as_string(
                hide_password=False)

    def drop(self) -> None:
        if self.kind == "sqlite":
            for f in Path(self.dir).glob("*"):
                f.unlink()
            os.rmdir(self.dir)
            return
        admin = create_engine(self.pg_base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                              " WHERE datname = :n"), {"n": self.name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}"'))
        admin.dispose()


def prepare(url: str, n_orders: int = 60, seed: int = 11) -> None:
    """Schema, demo data (orders of every status) and a technician user."""
    upgrade(url)
    engine = make_engine(url)
    demo.load(Coordinator(engine), n_orders=n_orders, seed=seed, start=START)
    engine.dispose()


# ---- one worker ------------------------------------------------------------------------------

def _snapshot(conn: Any, rng: random.Random) -> dict[str, Any] | None:
    """One assignment with its order and activity, as a terminal would have it on screen."""
    count = conn.scalar(select(func.count()).select_from(A))
    if not count:
        return None
    row = conn.execute(
        select(A.c.number.label("assignment"), A.c.version, A.c.status, A.c.employee_code,
               A.c.planned_start, A.c.planned_end, ACT.c.line, ACT.c.version.label("act_version"),
               O.c.number.label("order"), O.c.version.label("order_version"),
               O.c.status.label("order_status"), O.c.sold_to)
        .join(ACT, ACT.c.id == A.c.activity_id).join(O, O.c.id == A.c.order_id)
        .order_by(A.c.id).offset(rng.randrange(count)).limit(1)
    ).mappings().first()
    return dict(row) if row else None


def _when(rng: random.Random) -> tuple[pendulum.DateTime, pendulum.DateTime]:
    start = START.add(days=rng.randrange(14), hours=7 + rng.randrange(10),
                      minutes=15 * rng.randrange(4))
    return start, start.add(minutes=30 * rng.randint(1, 8))


def build(kind: str, s: dict[str, Any], rng: random.Random, tag: str
          ) -> tuple[list[c.Command], dict[str, Any]]:
    """The command(s) for `kind` from snapshot `s`, and what the verifier needs to know."""
    key = f"{s['order']}/{s['line']}/{s['assignment']}"
    meta: dict[str, Any] = {"kind": kind, "key": key, "order": s["order"], "line": s["line"]}
    o, ln, n = s["order"], s["line"], s["assignment"]
    if kind == "move":
        start, end = _when(rng)
        meta.update(start=start.isoformat(), end=end.isoformat())
        return [c.MoveAssignment(o, ln, n, start, end, version=s["version"])], meta
    if kind == "stale_move":
        start, end = _when(rng)
        meta["must_fail"] = "conflict"
        stale = s["version"] - 1 if s["version"] > 1 else s["version"] + 7
        return [c.MoveAssignment(o, ln, n, start, end, version=stale)], meta
    if kind == "reassign":
        eng = rng.choice(ENGINEERS)
        meta["engineer"] = eng
        return [c.Reassign(o, ln, n, eng, version=s["version"])], meta
    if kind == "status":
        status = rng.choice(STATUSES)
        meta["status"] = status
        return [c.SetAssignmentStatus(o, ln, n, status, version=s["version"])], meta
    if kind == "update_order":
        address = f"Via Carico {tag}, Milano"
        contact = f"C{s['sold_to'][2:]}{rng.randrange(2)}"
        meta.update(address=address, contact=contact)
        return [c.UpdateOrder(o, address=address, contact=contact,
                              version=s["order_version"])], meta
    if kind == "update_activity":
        meta["description"] = f"Work {tag}"
        return [c.UpdateActivity(o, ln, description=meta["description"],
                                 version=s["act_version"])], meta
    if kind == "order_status":
        status = rng.choice(WORKABLE)
        meta["status"] = status
        return [c.SetOrderStatus(o, status, version=s["order_version"])], meta
    if kind == "create_assignment":
        eng = rng.choice(ENGINEERS)
        meta["engineer"] = eng
        return [c.CreateAssignment(o, ln, eng)], meta
    if kind == "delete_assignment":
        return [c.DeleteAssignment(o, ln, n, version=s["version"])], meta
    if kind == "create_order":
        number = f"L-{tag}"
        start, end = _when(rng)
        bp = f"BP{100 + rng.randrange(len(demo.COMPANIES))}"
        engs = tuple(sorted(rng.sample(ENGINEERS, 2)))
        meta.update(order=number, key=None)
        return [c.CreateOrder(number, "service_order", bp, bp, f"Via Nuova {tag}, Lodi", start,
                              end.add(hours=4), contact=f"C{bp[2:]}0", activities=(
                                  c.ActivitySpec(10, "Load test visit", start, end, engs),)),
                c.GenerateAssignments(number)], meta
    if kind == "rename_partner":  # the import feed updates master data meanwhile
        i = rng.randrange(len(demo.COMPANIES))
        meta["name"] = f"{demo.COMPANIES[i][0]} ({tag})"
        return [c.UpsertPartner(f"BP{100 + i}", meta["name"])], meta
    if kind == "rename_engineer":
        code, name = rng.choice(demo.ENGINEERS)
        meta["name"] = f"{name} ({tag})"
        email = name.lower().replace(" ", ".") + "@example.com"
        return [c.UpsertEmployee(code, meta["name"], email, engineer=True)], meta
    if kind == "invalid":
        meta["must_fail"] = "refused"
        which = rng.randrange(4)
        if which == 0:
            return [c.MoveAssignment("NO-SUCH-ORDER", 10, 1, *_when(rng))], meta
        if which == 1:
            start, end = _when(rng)
            return [c.MoveAssignment(o, ln, n, end, start, version=s["version"])], meta
        if which == 2:
            return [c.Reassign(o, ln, n, "E900", version=s["version"])], meta  # a planner
        return [c.SetAssignmentStatus(o, ln, n, "Bogus", version=s["version"])], meta
    if kind == "technician":
        # E900 is nobody's engineer: the role check must refuse, whatever the status.
        meta["must_fail"] = "refused"
        meta["actor_role"] = "technician"
        return [c.SetAssignmentStatus(o, ln, n, "Accepted", version=s["version"])], meta
    raise ValueError(kind)


def worker(url: str, index: int, seed: int, go: Any, seconds: float, out: str) -> None:
    """Run commands until the time is up; write one record per command to `out` (JSON)."""
    engine = make_engine(url)
    coord = Coordinator(engine)
    rng = random.Random(seed * 1000 + index)
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    records: list[dict[str, Any]] = []
    go.wait()
    stop = time.monotonic() + seconds
    seq = 0
    while time.monotonic() < stop:
        seq += 1
        tag = f"{index}-{seq}"
        actor_name = f"load-{tag}"
        try:
            with read_connection(engine) as conn:
                snap = _snapshot(conn, rng)
        except Exception as exc:  # a read must never fail either
            records.append({"actor": actor_name, "kind": "read", "outcome": "error",
                            "error": f"{type(exc).__name__}: {exc}"[:300], "latency": 0.0})
            continue
        if snap is None:
            break
        kind = rng.choices(kinds, weights)[0]
        cmds, meta = build(kind, snap, rng, tag)
        if meta.get("actor_role") == "technician":
            actor = c.Actor(actor_name, m.Role.TECHNICIAN, "E900")
        else:
            actor = c.Actor(actor_name, m.Role.DISPATCHER)
        t0 = time.perf_counter()
        rec: dict[str, Any] = {"actor": actor_name, **meta}
        try:
            changes = coord.execute_many(cmds, actor)
            rec["outcome"] = "ok"
            rec["summary"] = changes[0].summary
            if kind == "create_assignment":
                rec["key"] = changes[0].assignments[0]
        except Conflict:
            rec["outcome"] = "conflict"
        except Busy as exc:
            rec["outcome"] = "busy"
            rec["error"] = str(exc)
        except DispatchError as exc:
            rec["outcome"] = "refused"
            rec["error_kind"] = exc.kind
            rec["error"] = str(exc)[:200]
        except Exception as exc:  # anything else escaped the coordinator: a defect
            rec["outcome"] = "error"
            rec["error"] = "".join(traceback.format_exception_only(exc)).strip()[:500]
        rec["latency"] = time.perf_counter() - t0
        records.append(rec)
    engine.dispose()
    Path(out).write_text(json.dumps(records))


# ---- the run and its verification -------------------------------------------------------------

def _state(url: str) -> dict[str, Any]:
    engine = make_engine(url)
    with read_connection(engine) as conn:
        assignments = {
            f"{r.order}/{r.line}/{r.number}": dict(r._mapping)
            for r in conn.execute(
                select(O.c.number.label("order"), ACT.c.line, A.c.number, A.c.version,
                       A.c.status, A.c.employee_code, A.c.planned_start, A.c.planned_end)
                .join(ACT, ACT.c.id == A.c.activity_id).join(O, O.c.id == A.c.order_id))
        }
        orders = {r.number: dict(r._mapping) for r in conn.execute(
            select(O.c.number, O.c.version, O.c.status, O.c.address, O.c.contact))}
        activities = {f"{r.number}/{r.line}": dict(r._mapping) for r in conn.execute(
            select(O.c.number, ACT.c.line, ACT.c.version, ACT.c.description)
            .join(O, O.c.id == ACT.c.order_id))}
        last_journal = conn.scalar(select(func.max(J.c.id))) or 0
    engine.dispose()
    return {"assignments": assignments, "orders": orders, "activities": activities,
            "journal": last_journal}


def verify(url: str, before: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    """Check the database against what the workers were told. Returns figures and problems."""
    engine = make_engine(url)
    with read_connection(engine) as conn:
        bad = list(violations(conn))
        journal = {actor: (first, n) for actor, first, n in conn.execute(
            select(J.c.actor, func.min(J.c.id), func.count())
            .where(J.c.id > before["journal"]).group_by(J.c.actor))}
    engine.dispose()
    after = _state(url)
    problems: list[str] = []
    names = {r["actor"] for r in records}
    for actor in journal:
        if actor not in names:
            problems.append(f"journal rows from an unknown actor {actor}")
    kept: list[dict[str, Any]] = []
    for r in records:
        in_journal = r["actor"] in journal
        if r["outcome"] == "ok":
            if r.get("must_fail"):
                problems.append(f"{r['actor']} {r['kind']} should have failed "
                                f"({r['must_fail']}) but was accepted: {r.get('summary')}")
            if in_journal:
                r["order_of_commit"] = journal[r["actor"]][0]
                kept.append(r)
            elif not any(w in r["summary"] for w in ("already", "unchanged", "so already")):
                problems.append(f"{r['actor']} {r['kind']} accepted ({r['summary']}) but not in"
                                " the journal")
        else:
            if in_journal:
                problems.append(f"{r['actor']} {r['kind']} was {r['outcome']} but left "
                                f"{journal[r['actor']][1]} journal rows")
            if r.get("must_fail") == "conflict" and r["outcome"] != "conflict" and r.get(
                    "error_kind") != "not_found":  # deleted meanwhile: also stale, also safe
                problems.append(f"{r['actor']} stale move ended {r['outcome']}, not conflict: "
                                f"{r.get('error')}")
    kept.sort(key=lambda r: r["order_of_commit"])
    problems += _effects(before, after, kept)
    outcomes = Counter(r["outcome"] for r in records)
    return {"violations": len(bad), "violation_sample": bad[:5], "problems": problems,
            "outcomes": outcomes, "kept": len(kept)}


def _effects(before: dict[str, Any], after: dict[str, Any], kept: list[dict[str, Any]]
             ) -> list[str]:
    """The last kept command on each object is what the data shows; versions add up."""
    problems: list[str] = []
    last_a: dict[str, dict[str, Any]] = {}
    bumps: Counter[str] = Counter()
    reborn: set[str] = set()
    last_o: dict[str, dict[str, Any]] = {}
    last_status: dict[str, dict[str, Any]] = {}
    order_bumps: Counter[str] = Counter()
    last_act: dict[str, dict[str, Any]] = {}
    act_bumps: Counter[str] = Counter()
    for r in kept:
        k = r["kind"]
        if k in ("move", "reassign", "status"):
            last_a[r["key"]] = r
            bumps[r["key"]] += 1
        elif k in ("create_assignment", "delete_assignment"):
            last_a[r["key"]] = r
            bumps[r["key"]] = 0
            reborn.add(r["key"])
        elif k == "update_order":
            last_o[r["order"]] = r
            order_bumps[r["order"]] += 1
        elif k == "order_status":
            last_status[r["order"]] = r
            order_bumps[r["order"]] += 1
        elif k == "update_activity":
            last_act[f"{r['order']}/{r['line']}"] = r
            act_bumps[f"{r['order']}/{r['line']}"] += 1
    have = after["assignments"]
    for key, r in last_a.items():
        row = have.get(key)
        if r["kind"] == "delete_assignment":
            if row is not None:
                problems.append(f"{key}: deleted by {r['actor']} but still there")
            continue
        if row is None:
            problems.append(f"{key}: missing after {r['actor']} {r['kind']}")
            continue
        if r["kind"] == "move" and (row["planned_start"].isoformat(), row["planned_end"]
                                    .isoformat()) != (pendulum.parse(r["start"]).in_tz("UTC")
                                                      .isoformat(), pendulum.parse(r["end"])
                                                      .in_tz("UTC").isoformat()):
            problems.append(f"{key}: planned {row['planned_start']} - {row['planned_end']},"
                            f" last kept move {r['actor']} said {r['start']} - {r['end']}")
        if r["kind"] in ("reassign", "create_assignment") and row["employee_code"] != r[
                "engineer"]:
            problems.append(f"{key}: engineer {row['employee_code']}, last kept {r['actor']}"
                            f" said {r['engineer']}")
        if r["kind"] == "status" and row["status"] != r["status"]:
            problems.append(f"{key}: status {row['status']}, last kept {r['actor']} said "
                            f"{r['status']}")
    for key, row in have.items():
        if key in reborn or key.rsplit("/", 2)[0] not in before["orders"]:
            base = 1  # created during the run
        elif key in before["assignments"]:
            base = before["assignments"][key]["version"]
        else:
            problems.append(f"{key}: appeared without a kept create")
            continue
        if row["version"] != base + bumps[key]:
            problems.append(f"{key}: version {row['version']}, expected {base} + "
                            f"{bumps[key]} kept changes (a lost update?)")
    for number, row in after["orders"].items():
        if number in last_o and (row["address"], row["contact"]) != (
                last_o[number]["address"], last_o[number]["contact"]):
            problems.append(f"order {number}: header {row['address']!r}/{row['contact']}, last"
                            f" kept {last_o[number]['actor']} said {last_o[number]['address']!r}")
        if number in last_status and row["status"] != last_status[number]["status"]:
            problems.append(f"order {number}: status {row['status']}, last kept said "
                            f"{last_status[number]['status']}")
        base = before["orders"].get(number, {}).get("version", 1)
        if row["version"] != base + order_bumps[number]:
            problems.append(f"order {number}: version {row['version']}, expected {base} + "
                            f"{order_bumps[number]}")
    for key, row in after["activities"].items():
        if key in last_act and row["description"] != last_act[key]["description"]:
            problems.append(f"activity {key}: {row['description']!r}, last kept said "
                            f"{last_act[key]['description']!r}")
        base = before["activities"].get(key, {}).get("version", 1)
        if row["version"] != base + act_bumps[key]:
            problems.append(f"activity {key}: version {row['version']}, expected {base} + "
                            f"{act_bumps[key]}")
    return problems


def run(url: str, workers: int, seconds: float, seed: int = 1) -> dict[str, Any]:
    """N worker processes for `seconds` against the prepared database at `url`; verified."""
    before = _state(url)
    ctx = mp.get_context("fork")
    go = ctx.Event()
    with tempfile.TemporaryDirectory(prefix="dispatch-load-out-") as tmp:
        outs = [f"{tmp}/w{i}.json" for i in range(workers)]
        procs = [ctx.Process(target=worker, args=(url, i, seed, go, seconds, outs[i]))
                 for i in range(workers)]
        for p in procs:
            p.start()
        time.sleep(0.5 + 0.05 * workers)  # let them import and connect
        t0 = time.monotonic()
        go.set()
        for p in procs:
            p.join(seconds + 120)
        elapsed = time.monotonic() - t0
        records: list[dict[str, Any]] = []
        crashed = 0
        for p, out in zip(procs, outs, strict=True):
            if p.exitcode != 0 or not Path(out).exists():
                crashed += 1
                continue
            records += json.loads(Path(out).read_text())
    result = verify(url, before, records)
    lat = sorted(r["latency"] for r in records if r["outcome"] != "error" and r["latency"])
    kinds: dict[str, Counter[str]] = defaultdict(Counter)
    for r in records:
        kinds[r["kind"]][r["outcome"]] += 1
    errors = [r["error"] for r in records if r["outcome"] == "error"]

    def pct(p: float) -> float:
        return round(1000 * lat[min(len(lat) - 1, int(p * len(lat)))], 1) if lat else 0.0

    out = result["outcomes"]
    return {
        "database": "sqlite" if url.startswith("sqlite") else "postgresql",
        "workers": workers, "seconds": round(elapsed, 1), "commands": len(records),
        "commands_per_s": round(len(records) / elapsed, 1), "kept_with_changes": result["kept"],
        "p50_ms": pct(0.50), "p95_ms": pct(0.95), "max_ms": pct(1.0),
        "accepted": out["ok"], "conflicts": out["conflict"], "refusals": out["refused"],
        "busy": out["busy"], "escaped_errors": len(errors), "error_sample": errors[:3],
        "crashed_workers": crashed, "check_violations": result["violations"],
        "violation_sample": result["violation_sample"],
        "verification_problems": len(result["problems"]), "problem_sample": result["problems"][:5],
        "by_kind": {k: dict(v) for k, v in sorted(kinds.items())},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--workers", default="2,8,32")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--orders", type=int, default=60)
    ap.add_argument("--pg", default=os.environ.get("DISPATCH_LOAD_PG", PG_DEFAULT),
                    help="an admin URL on the PostgreSQL server (the run makes its own database)")
    ap.add_argument("--via-port", type=int, help="PostgreSQL: the workers connect through this"
                    " port on the same host (a pgbouncer in transaction mode, say)")
    ap.add_argument("--no-prepare", action="store_true", help="PostgreSQL: add"
                    " ?prepare_threshold=none to the workers' URL (needed behind pgbouncer < 1.21"
                    " in transaction mode)")
    ap.add_argument("--verbose", action="store_true", help="also print the mix per kind")
    args = ap.parse_args(argv)
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    clean = True
    for kind in kinds:
        for n in (int(x) for x in args.workers.split(",")):
            db = Database(kind, args.pg)
            try:
                prepare(db.url, n_orders=args.orders)
                url = db.url
                if kind == "postgres" and args.via_port:
                    url = make_url(url).set(port=args.via_port).render_as_string(
                        hide_password=False)
                if kind == "postgres" and args.no_prepare:
                    url += "?prepare_threshold=none"
                figures = run(url, n, args.seconds)
                if url != db.url:
                    figures["url"] = make_url(url).set(database="...").render_as_string()
            finally:
                db.drop()
            if not args.verbose:
                figures.pop("by_kind")
            print(json.dumps(figures), flush=True)
            clean &= not (figures["check_violations"] or figures["verification_problems"]
                          or figures["escaped_errors"] or figures["crashed_workers"])
    return 0 if clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
