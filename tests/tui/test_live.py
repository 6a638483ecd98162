"""Live refresh: changes of other processes reach a running console within a second, and the
console opens in a real terminal."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from tui_support import NOW, TZ, make_app, settle

from app.db import repositories as repo
from app.db.engine import read_connection
from app.sync import commands as c
from app.sync.coordinator import Coordinator
from app.tui.widgets.grid import PagedGrid

DISPATCH = str(Path(sys.executable).with_name("dispatch"))


async def wait_for(pilot: Any, check: Any, timeout: float = 3.0) -> float:
    """Seconds until `check()` holds (fails after `timeout`)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        await pilot.pause(0.02)
        if check():
            return time.monotonic() - t0
    raise AssertionError("the console did not show the change in time")


async def test_dispatch_apply_in_another_process_shows_within_a_second(
        demo_engine: Engine) -> None:
    app = make_app(demo_engine, poll_interval=0.4)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        grid = app.screen.query_one(PagedGrid)
        row = grid.current_row
        new_engineer = "E012" if row["engineer"] != "E012" else "E011"
        line = json.dumps({"op": "reassign", "order": row["order"], "line": row["line"],
                           "assignment": row["assignment"], "engineer": new_engineer})
        env = {**os.environ, "DISPATCH_DB": str(demo_engine.url)}
        done = subprocess.run([DISPATCH, "apply", "-"], input=line, text=True, env=env,
                              capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr
        applied = time.monotonic()

        def shown() -> bool:
            r = grid.current_row
            ap = app.screen.detail and app.screen.detail.get("appointment")
            return bool(r and r["key"] == row["key"] and r["engineer"] == new_engineer and ap
                        and any(p["code"] == new_engineer for p in ap["participants"]))

        await wait_for(pilot, shown)
        assert time.monotonic() - applied < 1.0 + 0.3  # poll 0.4 s + the reads, on 2 cores
        assert f"reassign {row['key']}" in str(app.screen.query_one("#statusline").render())


async def test_journal_changes_reach_the_console_on_each_backend(
        db_url: str, world: Coordinator) -> None:
    """SQLite: the 0.4 s journal poll. PostgreSQL: with the poll slowed to 5 s, the NOTIFY from
    the coordinator's transaction still brings the change within a second."""
    start = NOW.add(hours=1)
    world.execute_many([c.CreateOrder(
        "SO-9001", "service_order", "BP100", "BP100", "Via Roma 1, Milano", start,
        start.add(hours=8), contact="C100", activities=(c.ActivitySpec(
            10, "Replace pump", start, start.add(hours=2), ("E001", "E002")),)),
        c.GenerateAssignments("SO-9001")], c.Actor.dispatcher("t"))
    postgres = db_url.startswith("postgresql")
    app = make_app(world.engine, poll_interval=5.0 if postgres else 0.4)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        grid = app.screen.query_one(PagedGrid)
        await pilot.pause(0.5)  # the LISTEN connection is up
        assert grid.current_row["key"] == "SO-9001/10/1"
        other = Coordinator(world.engine, clock=lambda: NOW)
        other.execute(c.SetAssignmentStatus("SO-9001", 10, 1, "Accepted"),
                      c.Actor.dispatcher("elsewhere"))
        took = await wait_for(pilot, lambda: grid.current_row is not None
                              and grid.current_row["status"] == "Accepted")
        assert took < 1.0


def test_dispatch_opens_in_a_real_terminal(demo_template: Path, tmp_path: Path) -> None:
    if shutil.which("tmux") is None:
        raise AssertionError("tmux is needed for this test (apt-get install tmux)")
    db = tmp_path / "dispatch.db"
    shutil.copy(demo_template, db)
    session = f"dispatch-test-{uuid.uuid4().hex[:8]}"
    env = f"DISPATCH_DB=sqlite:///{db} DISPATCH_TZ={TZ} TERM=xterm-256color"
    # A shell first, sized, then the console: a command started by new-session itself may
    # see the 80x24 default before tmux applies -x/-y.
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "140", "-y", "40"],
                   check=True)
    subprocess.run(["tmux", "resize-window", "-t", session, "-x", "140", "-y", "40"],
                   check=True)
    subprocess.run(["tmux", "send-keys", "-t", session,
                    f"exec env {env} {DISPATCH} --user sam", "Enter"], check=True)
    try:
        screen = ""
        t0 = time.monotonic()
        while time.monotonic() - t0 < 20:
            time.sleep(0.3)
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                                    capture_output=True, text=True).stdout
            if "assignments" in screen and "Organizer" in screen:
                break
        with read_connection(_engine(db)) as conn:
            total = repo.count_assignments(conn, repo.GridFilter())
        assert "Board" in screen and "user sam (supervisor)" in screen, screen
        assert "dispatch.db" in screen and "Planned start" in screen, screen
        assert f"{total} assignments" in screen, screen
        assert "E900 Paola Neri" in screen, screen  # the panes of the selected row
        subprocess.run(["tmux", "send-keys", "-t", session, "C-q"], check=True)
        for _ in range(30):
            time.sleep(0.2)
            alive = subprocess.run(["tmux", "has-session", "-t", session],
                                   capture_output=True).returncode == 0
            if not alive:
                break
        assert not alive, "ctrl+q did not quit the console"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def _engine(path: Path) -> Engine:
    from app.db.engine import make_engine

    return make_engine(f"sqlite:///{path}")

