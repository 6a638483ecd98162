"""Shared by the console's Pilot and snapshot tests: a deterministic demo database (built once
per run, copied per test), a frozen "now", and an app factory."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pendulum
from sqlalchemy import Engine

from app.db.engine import make_engine, upgrade
from app.sync import commands as c
from app.sync import demo
from app.sync.coordinator import Coordinator

DEMO_START = pendulum.datetime(2026, 12, 7, tz="Europe/Rome")
NOW = pendulum.datetime(2026, 12, 9, 8, 30, tz="UTC")  # Wednesday of the demo week
TZ = "Europe/Rome"
N_ORDERS = 24


def frozen() -> pendulum.DateTime:
    return NOW


def build_demo(path: Path) -> Path:
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = make_engine(url)
    coord = Coordinator(engine, clock=frozen)
    demo.load(coord, n_orders=N_ORDERS, seed=7, start=DEMO_START, actor=c.Actor.dispatcher("demo"))
    coord.execute_many([
        c.UpsertEmployee("E500", "Tina Tecnica", "tina@example.com", engineer=True),
        c.AddUser("tina", "technician", "E001"),
        c.AddUser("sam", "supervisor"),
    ], c.Actor.dispatcher("demo"))
    engine.dispose()
    return path


def copy_demo(template: Path, dest_dir: Path) -> Engine:
    path = dest_dir / "dispatch.db"
    shutil.copy(template, path)
    return make_engine(f"sqlite:///{path}")


def make_app(engine: Engine, actor: c.Actor | None = None, **kw: Any) -> Any:
    from app.tui.app import DispatchApp

    kw.setdefault("tz", TZ)
    kw.setdefault("clock", frozen)
    kw.setdefault("cursor_blink", False)
    return DispatchApp(engine, actor or c.Actor.dispatcher("anna"), **kw)


from app.tui.scenes import settle  # noqa: E402,F401
