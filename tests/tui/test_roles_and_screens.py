"""Roles, the other screens, help and the palette (Pilot)."""

from __future__ import annotations

from typing import Any

from textual.widgets import Footer, Static, Switch
from tui_support import make_app, settle

from app.db import repositories as repo
from app.db.engine import read_connection
from app.db.models import Role
from app.sync import commands as c
from app.tui.commands import DispatchCommands
from app.tui.screens.appointments import AppointmentsScreen
from app.tui.screens.board import BoardScreen
from app.tui.screens.help import HelpScreen
from app.tui.screens.mine import MyAssignmentsScreen
from app.tui.screens.parameters import ParametersScreen
from app.tui.widgets.grid import PagedGrid

EDITS = ["new", "move", "reassign", "status", "delete", "generate"]


async def palette_titles(app: Any) -> list[str]:
    provider = DispatchCommands(app.screen)
    return [hit.text async for hit in provider.discover()]  # type: ignore[attr-defined]


def footer_keys(app: Any) -> str:
    footer = app.screen.query_one(Footer)
    return " ".join(str(getattr(w, "description", "")) for w in footer.query("FooterKey"))


async def test_supervisor_console_is_read_only(demo_engine) -> None:
    app = make_app(demo_engine, c.Actor("sam", Role.SUPERVISOR))
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, BoardScreen)
        keys = footer_keys(app)
        assert "Filter" in keys and "Move" not in keys and "Delete" not in keys
        assert all(app.screen.check_action(a, ()) is False for a in EDITS)
        titles = await palette_titles(app)
        assert "Filter the grid" in titles and "Open the order" in titles
        assert not any(t in titles for t in ("Move the assignment", "Delete the assignment",
                                             "New assignment", "Reassign the assignment"))
        with read_connection(demo_engine) as conn:
            before = repo.last_journal_id(conn)
        await pilot.press("m", "x", "n")
        await settle(pilot)
        assert isinstance(app.screen, BoardScreen)  # no form opened
        header = str(app.screen.query_one("#topbar", Static).render())
        assert "sam (supervisor)" in header and "read-only" in header
        await pilot.press("o")
        await settle(pilot)
        assert "Edit header" not in footer_keys(app)
        await pilot.press("escape", "f5")
        await settle(pilot)
        assert isinstance(app.screen, ParametersScreen)
        assert all(s.disabled for s in app.screen.query(Switch))
        with read_connection(demo_engine) as conn:
            assert repo.last_journal_id(conn) == before


async def test_technician_sees_only_their_assignments_and_moves_them_on(demo_engine) -> None:
    app = make_app(demo_engine, c.Actor("tina", Role.TECHNICIAN, "E001"))
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, MyAssignmentsScreen)
        g = app.screen.query_one(PagedGrid)
        with read_connection(demo_engine) as conn:
            mine = repo.count_assignments(conn, repo.GridFilter(engineer="E001"))
        assert g.total == mine > 0
        assert all(g.row_at(i)["engineer"] == "E001" for i in range(g.total))
        titles = await palette_titles(app)
        assert "Accept the assignment" in titles and "Move the assignment" not in titles
        await pilot.press("f2", "f3")  # other screens are not theirs
        await settle(pilot)
        assert isinstance(app.screen, MyAssignmentsScreen)
        # Find one of theirs that is Assigned and take it through Accept, Start, Complete.
        for i in range(g.total):
            if g.row_at(i)["status"] == "Assigned" and g.row_at(i)["order_status"] not in (
                    "Canceled", "Completed", "Costed", "Closed"):
                g.move_cursor(i)
                break
        key = g.current_row["key"]
        for press, want in (("a", "Accepted"), ("s", "Started"), ("c", "Completed")):
            await pilot.press(press)
            await settle(pilot)
            assert g.current_row["key"] == key and g.current_row["status"] == want
        assert "Held" in str(app.screen.query_one("#pane-appointment", Static).render())


async def test_appointments_view_says_why_fields_are_read_only(demo_engine) -> None:
    app = make_app(demo_engine)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("f3")
        await settle(pilot)
        assert isinstance(app.screen, AppointmentsScreen)
        g = app.screen.query_one(PagedGrid)
        with read_connection(demo_engine) as conn:
            assert g.total == repo.count_appointments(conn, repo.GridFilter())
        text = str(app.screen.query_one("#pane-appointment", Static).render())
        assert "R9" in text
        # Enter on the related order jumps to the assignment on the board.
        origin = g.current_row["origin"]
        app.screen.query_one("#pane-related").focus()
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, BoardScreen)
        assert app.screen.query_one(PagedGrid).current_row["key"] == origin


async def test_parameters_saved_through_the_coordinator(demo_engine) -> None:
    app = make_app(demo_engine)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("f5")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ParametersScreen)
        p3 = screen.query_one("#param-include_sold_to_contact", Switch)
        assert p3.value is True
        p3.value = False
        await pilot.press("ctrl+s")
        await settle(pilot)
        with read_connection(demo_engine) as conn:
            params = repo.parameters(conn)
        assert params["include_sold_to_contact"] is False
        assert any("P3=False" in str(n.message) for n in app._notifications)
        # P4 without P1 is refused and said on the screen.
        screen.query_one("#param-create_crm_appointments", Switch).value = False
        screen.query_one("#param-update_assignments_from_appointment_dates", Switch).value = True
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "P4" in str(screen.query_one("#param-error", Static).render())


async def test_help_lists_every_key_of_the_screen(demo_engine) -> None:
    app = make_app(demo_engine)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        text = " ".join(f"{k} {w}" for k, w, _ in app.screen.rows)
        for what in ("Filter", "Today", "New", "Move", "Reassign", "Status", "Delete",
                     "Generate", "Order", "Appointments", "Parameters", "Command palette"):
            assert what in text, what
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        await settle(pilot)
        await pilot.press(*"reassign")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(pilot)
        from app.tui.screens.forms import FormScreen

        assert isinstance(app.screen, FormScreen) and "Reassign" in app.screen.spec.title
