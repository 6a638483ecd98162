"""Crashes: SIGKILL `dispatch apply` at random points of a large write, then prove nothing is half.

    python benchmarks/crash.py [--db sqlite|postgres|both] [--fanout-runs 30] [--apply-runs 12]

Two writes, each killed many times at a random moment between process start and its end:
- fan-out: one `update_order` line changing the header of an order with 10,000 assignments, so
  10,000 appointments are rewritten in one transaction (R12);
- feed: a `dispatch apply` of 50,000 lines (25,000 partners and 25,000 contacts), one
  transaction.
Every run starts from a fresh copy of a database built once (SQLite: a file copy; PostgreSQL:
`CREATE DATABASE ... TEMPLATE`). After the kill the database must open (migrations run), `check`
must be clean, and the write must be wholly there or wholly absent. The tests in
`tests/robust/test_crash.py` use these functions with a few runs; this script does many and
prints one JSON line per (database, write): runs attempted, survived, how many ended with the
write kept or absent.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pendulum
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.db import models as m  # noqa: E402
from app.db.engine import make_engine, open_database, read_connection, upgrade  # noqa: E402
from app.sync import commands as c  # noqa: E402
from app.sync import demo  # noqa: E402
from app.sync.check import violations  # noqa: E402
from app.sync.coordinator import Coordinator  # noqa: E402

O = m.Order.__table__  # noqa: E741
AP = m.Appointment.__table__
BP = m.Partner.__table__
CT = m.Contact.__table__
J = m.JournalEntry.__table__
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BIG = "BIG-1"
OLD_ADDRESS = "Via Grande 1, 20121 Milano"
NEW_ADDRESS = "Viale Nuovo 99, 20100 Milano"
FEED_PAIRS = 25_000
ACTOR = c.Actor.dispatcher("crash-setup")


# ---- the databases, built once ---------------------------------------------------------------

def build_fanout(url: str, activities: int = 5000) -> None:
    """Master data and one order whose `activities` activities have two engineers each:
    2 x `activities` assignments, each mirrored by an appointment."""
    upgrade(url)
    engine = make_engine(url)
    coord = Coordinator(engine)
    coord.execute_many(demo.master_data(), ACTOR)
    start = pendulum.datetime(2026, 12, 7, 8, tz="Europe/Rome")
    engs = [code for code, _ in demo.ENGINEERS]
    acts = tuple(
        c.ActivitySpec(i + 1, f"Visit {i + 1}", start.add(minutes=30 * i),
                       start.add(minutes=30 * i + 60), (engs[i % 12], engs[(i + 5) % 12]))
        for i in range(activities))
    coord.execute(c.CreateOrder(BIG, "service_order", "BP100", "BP100", OLD_ADDRESS, start,
                                start.add(days=200), contact="C1000", activities=acts), ACTOR)
    coord.execute(c.GenerateAssignments(BIG), ACTOR)
    engine.dispose()


def build_small(url: str) -> None:
    """The demo (20 orders): what the feed is applied to."""
    upgrade(url)
    engine = make_engine(url)
    demo.load(Coordinator(engine), n_orders=20, seed=3,
              start=pendulum.datetime(2026, 12, 7, tz="Europe/Rome"))
    engine.dispose()


def write_feed(path: Path, pairs: int = FEED_PAIRS) -> None:
    with path.open("w") as f:
        for i in range(pairs):
            f.write(json.dumps({"op": "upsert_partner", "code": f"F{i}",
                                "name": f"Feed partner {i}"}) + "\n")
            f.write(json.dumps({"op": "upsert_contact", "partner": f"F{i}", "code": f"FC{i}",
                                "name": f"Feed contact {i}", "email": f"c{i}@feed.example"})
                    + "\n")


def write_fanout_line(path: Path) -> None:
    path.write_text(json.dumps({"op": "update_order", "order": BIG, "address": NEW_ADDRESS})
                    + "\n")


class Template:
    """A database built once; `copy()` gives a fresh URL for one run, `drop()` cleans up."""

    def __init__(self, kind: str, build: Any, pg_base: str = PG_DEFAULT,
                 folder: Path | None = None) -> None:
        self.kind = kind
        self.pg_base = pg_base
        self.copies: list[str] = []
        if kind == "sqlite":
            self.folder = folder or Path(tempfile.mkdtemp(prefix="dispatch-crash-"))
            self.path = self.folder / f"template-{uuid.uuid4().hex[:6]}.db"
            self.url = f"sqlite:///{self.path}"
        else:
            self.name = f"dispatch_crash_{uuid.uuid4().hex[:10]}"
            self._admin(f'CREATE DATABASE "{self.name}"')
            self.url = self._url(self.name)
        build(self.url)

    def _url(self, name: str) -> str:
        return make_url(self.pg_base).set(database=name).render_as_string(hide_password=False)

    def _admin(self, sql: str, params: dict[str, Any] | None = None) -> None:
        admin = create_engine(self.pg_base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(sql), params or {})
        admin.dispose()

    def copy(self) -> str:
        if self.kind == "sqlite":
            dest = self.folder / f"run-{uuid.uuid4().hex[:8]}.db"
            shutil.copy(self.path, dest)
            url = f"sqlite:///{dest}"
        else:
            name = f"dispatch_crashrun_{uuid.uuid4().hex[:10]}"
            self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.name}"')
            url = self._url(name)
        self.copies.append(url)
        return url

    def discard(self, url: str) -> None:
        if self.kind == "sqlite":
            path = Path(url.split("///", 1)[1])
            for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                p.unlink(missing_ok=True)
        else:
            name = make_url(url).database
            self._admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = :n", {"n": name})
            self._admin(f'DROP DATABASE IF EXISTS "{name}"')

    def drop(self) -> None:
        for url in self.copies:
            self.discard(url)
        if self.kind == "sqlite":
            self.discard(self.url)
        else:
            self.discard(self.url)


# ---- one run ---------------------------------------------------------------------------------

@dataclass
class Outcome:
    killed_at: float
    exit_code: int | None
    state: str  # "kept", "absent" or "HALF: ..."
    problems: list[str]


def apply_process(url: str, file: Path) -> subprocess.Popen[bytes]:
    """A real `dispatch apply`, in its own process."""
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "--db", url, "apply", str(file)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)})


def kill_after(url: str, file: Path, delay: float) -> int | None:
    """Start the apply, SIGKILL it after `delay` seconds (if still running); its exit code."""
    proc = apply_process(url, file)
    try:
        proc.wait(delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return None
    return proc.returncode


def timed_run(url: str, file: Path) -> float:
    """Seconds a complete, unkilled apply takes (the window the kills are drawn from)."""
    t0 = time.monotonic()
    proc = apply_process(url, file)
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the reference apply failed: {err.decode()[-500:]}")
    return time.monotonic() - t0


def inspect_fanout(url: str, journal_before: int) -> tuple[str, list[str]]:
    """Open the database like a user would, check it, and say whether the change is whole."""
    engine = open_database(url)
    problems: list[str] = []
    try:
        with read_connection(engine) as conn:
            problems += list(violations(conn))[:5]
            address = conn.scalar(select(O.c.address).where(O.c.number == BIG))
            locations = dict(conn.execute(
                select(AP.c.location, func.count()).where(AP.c.origin_order == BIG)
                .group_by(AP.c.location)).all())
            journal = conn.scalar(select(func.count()).select_from(J).where(
                J.c.id > journal_before)) or 0
    finally:
        engine.dispose()
    n_ap = sum(locations.values())
    if address == OLD_ADDRESS and set(locations) == {OLD_ADDRESS} and journal == 0:
        return "absent", problems
    if address == NEW_ADDRESS and set(locations) == {NEW_ADDRESS} and journal == n_ap + 1:
        return "kept", problems
    return (f"HALF: address {address!r}, appointment locations {locations}, "
            f"{journal} new journal rows"), problems


def inspect_feed(url: str, journal_before: int, pairs: int = FEED_PAIRS
                 ) -> tuple[str, list[str]]:
    engine = open_database(url)
    problems: list[str] = []
    try:
        with read_connection(engine) as conn:
            problems += list(violations(conn))[:5]
            partners = conn.scalar(select(func.count()).select_from(BP).where(
                BP.c.code.like("F%"))) or 0
            contacts = conn.scalar(select(func.count()).select_from(CT).where(
                CT.c.code.like("FC%"))) or 0
            journal = conn.scalar(select(func.count()).select_from(J).where(
                J.c.id > journal_before)) or 0
    finally:
        engine.dispose()
    if (partners, contacts, journal) == (0, 0, 0):
        return "absent", problems
    if (partners, contacts, journal) == (pairs, pairs, 2 * pairs):
        return "kept", problems
    return f"HALF: {partners} partners, {contacts} contacts, {journal} journal rows", problems


def last_journal(url: str) -> int:
    engine = make_engine(url)
    with read_connection(engine) as conn:
        value = conn.scalar(select(func.max(J.c.id))) or 0
    engine.dispose()
    return int(value)


def crash_runs(template: Template, file: Path, inspect: Any, runs: int, window: float,
               rng: random.Random) -> list[Outcome]:
    """`runs` kills at uniform random moments in [0, window] seconds, each on a fresh copy."""
    before = last_journal(template.url)
    out: list[Outcome] = []
    for _ in range(runs):
        url = template.copy()
        delay = rng.uniform(0.0, window)
        code = kill_after(url, file, delay)
        state, problems = inspect(url, before)
        if code not in (None, 0):
            problems.append(f"the apply ended by itself with exit code {code}")
        if code == 0 and state != "kept":
            problems.append("the apply reported success but the change is not there")
        out.append(Outcome(delay, code, state, problems))
        template.discard(url)
    return out


def scenario(kind: str, name: str, runs: int, seed: int, pg_base: str) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="dispatch-crash-"))
    file = folder / f"{name}.jsonl"
    if name == "fanout":
        write_fanout_line(file)
        template = Template(kind, build_fanout, pg_base, folder)
        inspect = inspect_fanout
    else:
        write_feed(file)
        template = Template(kind, build_small, pg_base, folder)
        inspect = inspect_feed
    try:
        ref = template.copy()
        window = timed_run(ref, file)
        template.discard(ref)
        outcomes = crash_runs(template, file, inspect, runs, window * 1.05, random.Random(seed))
    finally:
        template.drop()
        shutil.rmtree(folder, ignore_errors=True)
    survived = [o for o in outcomes if not o.problems and not o.state.startswith("HALF")]
    return {
        "database": "sqlite" if kind == "sqlite" else "postgresql", "write": name,
        "full_apply_s": round(window, 2), "attempted": len(outcomes), "survived": len(survived),
        "killed": sum(o.exit_code is None for o in outcomes),
        "kept": sum(o.state == "kept" for o in outcomes),
        "absent": sum(o.state == "absent" for o in outcomes),
        "failures": [o.__dict__ for o in outcomes if o not in survived][:5],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--fanout-runs", type=int, default=30)
    ap.add_argument("--apply-runs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pg", default=os.environ.get("DISPATCH_LOAD_PG", PG_DEFAULT))
    args = ap.parse_args(argv)
    ok = True
    for kind in (["sqlite", "postgres"] if args.db == "both" else [args.db]):
        for name, runs in (("fanout", args.fanout_runs), ("feed", args.apply_runs)):
            figures = scenario(kind, name, runs, args.seed, args.pg)
            print(json.dumps(figures), flush=True)
            ok &= figures["survived"] == figures["attempted"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
