"""Crashes: `dispatch apply` killed with SIGKILL in the middle of large writes.

The big databases are built once per session per backend and copied for each run (SQLite: the
file; PostgreSQL: `CREATE DATABASE ... TEMPLATE`). After each kill the database must open, the
rules check must be clean, and the write must be wholly there or wholly absent. The machinery is
`benchmarks/crash.py`, which does many more runs for the report; here a few keep the suite short.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from robust_support import bench, pg_admin_url

from tests.conftest import BACKENDS

crash = bench("crash")
FANOUT_RUNS = {"sqlite": 5, "postgres": 2}
FEED_RUNS = {"sqlite": 2, "postgres": 2}
FEED_WINDOW_S = 12.0
"""The feed takes ~25 s to apply in full; the tests kill it within its first 12 s (parsing
ends after ~3 s, so most kills land inside the transaction). The benchmark uses the full span."""


def _template(kind: str, build: object, folder: Path) -> Iterator[object]:
    pg = pg_admin_url() if kind == "postgres" else crash.PG_DEFAULT
    template = crash.Template(kind, build, pg, folder)
    try:
        yield template
    finally:
        template.drop()


@pytest.fixture(scope="session", params=BACKENDS)
def fanout_template(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[object]:
    yield from _template(request.param, crash.build_fanout, tmp_path_factory.mktemp("fanout"))


@pytest.fixture(scope="session", params=BACKENDS)
def feed_template(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[object]:
    yield from _template(request.param, crash.build_small, tmp_path_factory.mktemp("feed"))


def _check(outcomes: list) -> None:
    for o in outcomes:
        assert not o.state.startswith("HALF"), o
        assert not o.problems, o
    assert any(o.exit_code is None for o in outcomes), "no run was actually killed"


def test_kill_during_header_fanout(fanout_template: object, tmp_path: Path) -> None:
    """R12 fan-out: one header change rewrites 10,000 appointments in one transaction."""
    t = fanout_template
    line = tmp_path / "header.jsonl"
    crash.write_fanout_line(line)
    before = crash.last_journal(t.url)  # type: ignore[attr-defined]
    reference = t.copy()  # type: ignore[attr-defined]
    window = crash.timed_run(reference, line)
    state, problems = crash.inspect_fanout(reference, before)
    assert (state, problems) == ("kept", []), "an unkilled run must keep the whole change"
    t.discard(reference)  # type: ignore[attr-defined]
    outcomes = crash.crash_runs(t, line, crash.inspect_fanout, FANOUT_RUNS[t.kind],  # type: ignore[attr-defined]
                                window, random.Random(7))
    _check(outcomes)


def test_kill_during_50000_line_apply(feed_template: object, tmp_path: Path) -> None:
    """An import feed of 50,000 lines applied as one transaction: all of it, or none."""
    t = feed_template
    feed = tmp_path / "feed.jsonl"
    crash.write_feed(feed)
    assert sum(1 for _ in feed.open()) == 50_000
    outcomes = crash.crash_runs(t, feed, crash.inspect_feed, FEED_RUNS[t.kind],  # type: ignore[attr-defined]
                                FEED_WINDOW_S, random.Random(11))
    _check(outcomes)
