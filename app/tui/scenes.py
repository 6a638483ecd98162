"""Every screen of the console in a known state: what the snapshot tests compare and what
`make screenshots` draws. A scene is (name, terminal size, actor, steps before the picture)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from app.db.models import Role
from app.sync import commands as c

Steps = Callable[[Any], Awaitable[None]]


async def settle(pilot: Any, rounds: int = 3) -> None:
    """Let workers finish and their messages land (a page may ask for a detail, and so on)."""
    for _ in range(rounds):
        busy = [w for w in pilot.app.workers if w.group != "listen"]
        if busy:  # an empty list would mean "all"
            await pilot.app.workers.wait_for_complete(busy)
        await pilot.pause()


def keys(*pressed: str) -> Steps:
    async def run(pilot: Any) -> None:
        await settle(pilot)
        for k in pressed:
            await pilot.press(k)
            await settle(pilot)
        await pilot.pause(0.1)

    return run


async def _conflict(pilot: Any) -> None:
    from app.sync.coordinator import Coordinator
    from app.tui.widgets.grid import PagedGrid

    await settle(pilot)
    app = pilot.app
    row = app.screen.query_one(PagedGrid).current_row
    await pilot.press("r")
    await settle(pilot)
    Coordinator(app.engine, clock=app.clock).execute(c.MoveAssignment(
        row["order"], row["line"], row["assignment"], row["planned_start"].add(hours=1),
        row["planned_end"].add(hours=1)), c.Actor.dispatcher("bruno"))
    select = app.screen.query_one("#field-engineer")
    select.value = "E009"
    await pilot.press("ctrl+s")
    await settle(pilot)
    await pilot.pause(0.1)


async def _filtered(pilot: Any) -> None:
    from textual.widgets import Input

    await settle(pilot)
    await pilot.press("slash")
    app = pilot.app
    app.screen.query_one("#filter-engineer", Input).value = "E005"
    app.screen.query_one("#filter-from", Input).value = "2026-12-08"
    app.screen.query_one("#filter-engineer", Input).focus()
    await pilot.press("enter")
    await settle(pilot)
    await pilot.pause(0.1)


DISPATCHER = c.Actor.dispatcher("anna")
SUPERVISOR = c.Actor("sam", Role.SUPERVISOR)
TECHNICIAN = c.Actor("tina", Role.TECHNICIAN, "E001")


@dataclass(frozen=True)
class Scene:
    name: str
    size: tuple[int, int]
    actor: c.Actor
    steps: Steps


SCENES = [
    Scene("board", (120, 36), DISPATCHER, keys()),
    Scene("board-80x24", (80, 24), DISPATCHER, keys()),
    Scene("board-filtered", (120, 36), DISPATCHER, _filtered),
    Scene("board-supervisor", (120, 36), SUPERVISOR, keys()),
    Scene("appointments", (120, 36), DISPATCHER, keys("f3", "down", "down")),
    Scene("order", (120, 36), DISPATCHER, keys("o")),
    Scene("my-assignments", (120, 36), TECHNICIAN, keys()),
    Scene("parameters", (120, 36), DISPATCHER, keys("f5")),
    Scene("form-move", (120, 36), DISPATCHER, keys("m")),
    Scene("form-delete", (120, 36), DISPATCHER, keys("x")),
    Scene("conflict", (120, 36), DISPATCHER, _conflict),
    Scene("help", (120, 36), DISPATCHER, keys("question_mark")),
]
