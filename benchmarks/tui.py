"""The console with 1,000,000 assignments on SQLite: figures as JSON lines (not a timed test).

- start: wall time from spawning a fresh interpreter to the first painted grid row, against an
  empty Textual app spawned the same way in the same run (target <= 1.5x);
- keypress to repaint for cursor down and page down (median, p95; target p95 <= 30 ms);
- applying a filter (target <= 300 ms): an engineer, a status, a free text;
- peak memory of the console process (target <= 250 MB).

Run: `make bench-tui` (builds and caches the database under /tmp the first time, see bigdb.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SIZE = (120, 36)
RUNS = 3


def out(line: str) -> None:
    """Straight to the real stdout: inside `run_test` Textual captures `print`."""
    sys.__stdout__.write(line + "\n")
    sys.__stdout__.flush()


def emit(metric: str, value: float, unit: str, **extra: Any) -> None:
    out(json.dumps({"bench": "tui", "metric": metric, "value": round(value, 2), "unit": unit,
                    **extra}))


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


# ---- children: one fresh process per start measurement --------------------------------------

async def _empty_child() -> None:
    from textual.app import App, ComposeResult
    from textual.widgets import Static

    class Empty(App[None]):
        def compose(self) -> ComposeResult:
            yield Static("ready")

    app = Empty()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        out(json.dumps({"painted": time.time()}))


async def _console_child(db: str, measure: bool) -> None:
    import pendulum

    from app.db.engine import open_database
    from app.sync import commands as c
    from app.tui.app import DispatchApp
    from app.tui.widgets.grid import PagedGrid

    engine = open_database(f"sqlite:///{db}")
    now = pendulum.datetime(2026, 12, 3, 9, tz="UTC")
    app = DispatchApp(engine, c.Actor.dispatcher("bench"), tz="Europe/Rome",
                      clock=lambda: now, poll_interval=0.4, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        grid: PagedGrid | None = None
        while True:
            await pilot.pause(0.001)
            if grid is None and app.screen.query(PagedGrid):
                grid = app.screen.query_one(PagedGrid)
            if grid is not None and grid.total is not None and grid.current_row is not None:
                await pilot.pause()  # the repaint after the rows landed
                break
        out(json.dumps({"painted": time.time(), "rows": grid.total}))
        if not measure:
            return
        try:
            await _measure(app, pilot, grid)
        except BaseException:
            import traceback

            traceback.print_exc(file=sys.__stderr__)
            raise


async def _measure(app: Any, pilot: Any, grid: Any) -> None:
    from app.db.repositories import GridFilter

    if True:

        # Keypress to repaint, without Pilot (its idle waits alone take ~60 ms): the key goes
        # to the driver as a terminal would send it, and the time is taken at the first
        # screen update that shows the new cursor row. Keys come at a held key's repeat rate.
        from textual import events

        displays: list[float] = []
        screen = app.screen
        original = screen._compositor_refresh

        def refreshed(*a: Any, **kw: Any) -> Any:
            result = original(*a, **kw)  # the screen update is composed (headless: not sent)
            displays.append(time.perf_counter())
            return result

        screen._compositor_refresh = refreshed  # type: ignore[method-assign]
        driver = app._driver
        assert driver is not None

        moved: list[float] = []
        original_move = grid.move_cursor

        def move_cursor(index: int) -> None:
            original_move(index)
            moved.append(time.perf_counter())

        grid.move_cursor = move_cursor  # type: ignore[method-assign]

        async def press(key: str) -> float:
            before = grid.cursor
            moved.clear()
            t0 = time.perf_counter()
            event = events.Key(key, None)
            event.set_sender(app)
            driver.send_message(event)
            ready = None
            while True:
                await asyncio.sleep(0.0002)
                if time.perf_counter() - t0 > 2:
                    sys.__stderr__.write(f"stuck: {before}->{grid.cursor} moved={moved} "
                                         f"displays={len(displays)} focus={app.focused}\n")
                    raise SystemExit(3)
                if ready is None and moved and grid.cursor != before:
                    # The row was there when the cursor moved, or arrived with its page now.
                    ready = moved[0] if grid.current_row is not None else None
                    if ready is None:
                        while grid.current_row is None:
                            await asyncio.sleep(0.0002)
                        ready = time.perf_counter()
                if ready is not None:
                    after = [d for d in displays if d >= ready]
                    if after:
                        return (after[0] - t0) * 1000

        async def shown() -> None:
            while grid.current_row is None or any(
                    grid.row_at(i) is None for i in range(
                        round(grid.scroll_y), min(grid.total or 0, round(grid.scroll_y)
                                                   + grid._visible_rows))):
                await asyncio.sleep(0.001)
            await pilot.pause()

        grid.move_cursor(0)  # from the top: room below for every press
        await pilot.pause(0.2)
        for key, n in (("down", 300), ("pagedown", 150)):
            times = []
            for _ in range(n):
                times.append(await press(key))
                await asyncio.sleep(0.03)
            out(json.dumps({"key": key, "times": times}))
        await pilot.pause(0.3)
        # The panes follow once the cursor rests: key to panes showing the new row.
        panes = []
        for _ in range(20):
            t0 = time.perf_counter()
            await press("down")
            key = grid.current_row["key"]
            while app.screen.detail is None or app.screen.detail.get("key") != key:
                await asyncio.sleep(0.001)
            panes.append((time.perf_counter() - t0) * 1000)
            await asyncio.sleep(0.1)
        out(json.dumps({"panes": panes}))

        for name, f in (("engineer", GridFilter(engineer="E005")),
                        ("status", GridFilter(status="Started")),
                        ("text", GridFilter(text="pump")),
                        ("none", GridFilter())):
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                grid.set_filter(f)
                while grid.total is None:
                    await pilot.pause(0.001)
                await shown()
                times.append((time.perf_counter() - t0) * 1000)
            out(json.dumps({"filter": name, "times": times, "rows": grid.total}))
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out(json.dumps({"peak_mb": peak_kb / 1024, "cached_rows": grid.cached_rows()}))


def _spawn(*args: str) -> tuple[float, list[dict[str, Any]]]:
    t0 = time.time()
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True,
                         text=True, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(
                             ROOT)})
    lines = [json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")]
    return t0, lines


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bigdb import build

    db = Path(os.environ.get("DISPATCH_BENCH_DB", "/tmp/dispatch-bench-1m.db"))
    t = time.perf_counter()
    build(db)
    emit("database_ready", time.perf_counter() - t, "s", path=str(db))
    empty, console = [], []
    rows = 0
    for _ in range(RUNS):
        t0, lines = _spawn("empty")
        empty.append((lines[0]["painted"] - t0) * 1000)
        t0, lines = _spawn("console", db)
        console.append((lines[0]["painted"] - t0) * 1000)
        rows = lines[0]["rows"]
    e, cst = statistics.median(empty), statistics.median(console)
    emit("start_empty_textual_app", e, "ms", runs=RUNS)
    emit("start_to_first_painted_grid", cst, "ms", runs=RUNS, assignments=rows)
    emit("start_ratio", cst / e, "x", target=1.5)
    _, lines = _spawn("console", db, "measure")
    for line in lines[1:]:
        if "key" in line:
            ts = line["times"]
            emit(f"{line['key']}_median", statistics.median(ts), "ms", presses=len(ts))
            emit(f"{line['key']}_p95", p95(ts), "ms", presses=len(ts), target=30)
        elif "filter" in line:
            emit(f"filter_{line['filter']}", statistics.median(line["times"]), "ms",
                 rows=line["rows"], target=300)
        elif "panes" in line:
            emit("key_to_panes_median", statistics.median(line["panes"]), "ms",
                 note="panes wait 80 ms for the cursor to rest, then load and relayout")
        elif "peak_mb" in line:
            emit("peak_memory", line["peak_mb"], "MB", target=250,
                 cached_rows=line["cached_rows"])
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        if sys.argv[2] == "empty":
            asyncio.run(_empty_child())
        else:
            asyncio.run(_console_child(sys.argv[3], measure=len(sys.argv) > 4))
        raise SystemExit(0)
    raise SystemExit(main())
