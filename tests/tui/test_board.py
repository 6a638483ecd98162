"""The board: rows, panes, filter, paging, and every edit through a form (Pilot)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from textual.widgets import Input, Select, Static
from tui_support import make_app, settle

from app.db import models as m
from app.db import repositories as repo
from app.db.engine import read_connection
from app.sync import commands as c
from app.sync.coordinator import Coordinator
from app.tui.screens.forms import ConflictScreen, FormScreen
from app.tui.widgets import grid as grid_mod
from app.tui.widgets.grid import PagedGrid


def pane_text(app: Any, pane: str) -> str:
    widget = app.screen.query_one(f"#pane-{pane}", Static)
    content = widget.render()
    return str(getattr(content, "plain", content))


def grid(app: Any) -> PagedGrid:
    return app.screen.query_one(PagedGrid)


def row_keys(app: Any) -> list[str]:
    g = grid(app)
    return [r["key"] for i in range(g.total or 0) if (r := g.row_at(i)) is not None]


async def test_board_opens_at_today_with_the_panes_of_the_row(demo_engine) -> None:
    app = make_app(demo_engine)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        g = grid(app)
        with read_connection(demo_engine) as conn:
            total = conn.scalar(select(func.count()).select_from(m.Assignment))
            first_today = repo.assignment_page(conn, repo.GridFilter(), at=app.today_key(),
                                               limit=1)[0]
        assert g.total == total
        row = g.current_row
        assert row is not None and row["key"] == first_today["key"]
        assert f"Origin    {row['key']}" in pane_text(app, "appointment")
        assert "Organizer E900 Paola Neri" in pane_text(app, "participants")
        refs = pane_text(app, "references")
        assert row["order"] in refs and "Activity line" in refs or str(row["line"]) in refs
        header = str(app.screen.query_one("#topbar", Static).render())
        assert "user anna" in header and "dispatcher" in header and "dispatch.db" in header
        await pilot.press("down")
        await settle(pilot)
        assert g.cursor == g.cursor and app.screen.detail_key == g.current_row["key"]


async def test_filter_by_engineer_and_status_counts(demo_engine) -> None:
    app = make_app(demo_engine)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        app.screen.query_one("#filter-engineer", Input).value = "e001"
        app.screen.query_one("#filter-status", Input).value = "assigned"
        app.screen.query_one("#filter-engineer", Input).focus()
        await pilot.press("enter")
        await settle(pilot)
        with read_connection(demo_engine) as conn:
            want = repo.count_assignments(conn, repo.GridFilter(engineer="E001",
                                                                status="Assigned"))
        g = grid(app)
        assert g.total == want > 0
        rows = [g.row_at(i) for i in range(g.total)]
        assert all(r and r["engineer"] == "E001" and r["status"] == "Assigned" for r in rows)
        status = str(app.screen.query_one("#statusline", Static).render())
        assert f"{want} of " in status and "engineer=E001" in status
        # A bad date stays in the bar, marked, and the grid keeps its rows.
        await pilot.press("slash")
        app.screen.query_one("#filter-from", Input).value = "next tuesday"
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen.query_one("#filter-from", Input).has_class("-invalid")
        assert g.total == want


async def test_grid_holds_pages_not_rows(demo_engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grid_mod, "PAGE", 5)
    monkeypatch.setattr(grid_mod, "MAX_PAGES", 4)
    app = make_app(demo_engine)
    async with app.run_test(size=(120, 20)) as pilot:
        await settle(pilot)
        g = grid(app)
        await pilot.press("home")
        for _ in range(6):
            await pilot.press("pagedown")
            await settle(pilot)
        assert g.cached_rows() <= 4 * 5
        await pilot.press("end")
        await settle(pilot)
        with read_connection(demo_engine) as conn:
            last = repo.list_assignments(conn)[-1]
        assert g.current_row is not None and g.current_row["key"] == last["key"]
        # A change that does not re-sort drops only the page showing the row.
        kept = dict(g._pages)
        row = g.current_row
        Coordinator(demo_engine).execute(c.SetAssignmentStatus(
            row["order"], row["line"], row["assignment"], "Rejected"), c.Actor.dispatcher("x"))
        app.poll_journal()
        await settle(pilot)
        page = g.cursor // 5
        for p, rows in kept.items():
            if p != page and p in g._pages:
                assert g._pages[p] is rows
        assert g.current_row["status"] == "Rejected"



def _form(app: Any) -> FormScreen:
    assert isinstance(app.screen, FormScreen), app.screen
    return app.screen


async def _goto(pilot: Any, key: str) -> None:
    app = pilot.app
    with read_connection(app.engine) as conn:
        row = repo.assignment_detail(conn, key)
    assert row is not None
    grid(app).goto_key((row["planned_start"], row["id"]))
    await settle(pilot)
    assert grid(app).current_row["key"] == key


async def test_story_generate_move_reassign_complete_delete(demo_engine) -> None:
    from tui_support import DEMO_START

    coord = Coordinator(demo_engine)
    start = DEMO_START.add(days=2, hours=14)
    coord.execute(c.CreateOrder(
        "SO-7001", "service_order", "BP100", "BP100", "Via Roma 1, Milano", start,
        start.add(hours=6), contact="C1000", activities=(c.ActivitySpec(
            10, "Replace pump", start, start.add(hours=2), ("E002", "E003")),)),
        c.Actor.dispatcher("x"))
    app = make_app(demo_engine)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        # generate
        await pilot.press("g")
        await settle(pilot)
        _form(app).query_one("#field-order", Input).value = "SO-7001"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert not isinstance(app.screen, FormScreen)
        await _goto(pilot, "SO-7001/10/1")
        assert "E002 Luigi Verdi" in pane_text(app, "participants")
        assert "E003 Giorgio Neri" in pane_text(app, "participants")
        assert "not sent" in pane_text(app, "participants")  # the co-engineer (R4)
        # move
        await pilot.press("m")
        await settle(pilot)
        form = _form(app)
        form.query_one("#field-planned_start", Input).value = "2026-12-09 16:00"
        form.query_one("#field-planned_end", Input).value = "2026-12-09 18:30"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert grid(app).current_row["key"] == "SO-7001/10/1"
        text = pane_text(app, "appointment")
        assert "2026-12-09 16:00" in text and "2026-12-09 18:30" in text  # R10
        # reassign
        await pilot.press("r")
        await settle(pilot)
        _form(app).query_one("#field-engineer", Select).value = "E004"
        await pilot.press("ctrl+s")
        await settle(pilot)
        parts = pane_text(app, "participants")
        assert "E004 Franca Gialli" in parts and "E002" not in parts  # R11
        assert grid(app).current_row["engineer"] == "E004"
        # complete
        await pilot.press("s")
        await settle(pilot)
        _form(app).query_one("#field-status", Select).value = "Completed"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert grid(app).current_row["status"] == "Completed"
        assert "Status    Held" in pane_text(app, "appointment")  # R13
        # delete: the dialog says the appointment goes too (R14)
        ap_id = grid(app).current_row["appointment_id"]
        await pilot.press("x")
        await settle(pilot)
        note = str(_form(app).query_one("#form-note", Static).render())
        assert f"appointment {ap_id} is deleted too" in note
        await pilot.click("#submit")
        await settle(pilot)
        with read_connection(demo_engine) as conn:
            assert repo.assignment_detail(conn, "SO-7001/10/1") is None
            assert repo.appointment_json(conn, ap_id) is None
        assert all(k != "SO-7001/10/1" for k in row_keys(app))
        assert grid(app).current_row["key"] != "SO-7001/10/1"


async def test_invalid_date_stays_in_the_form_and_saves_nothing(demo_engine) -> None:
    app = make_app(demo_engine)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        with read_connection(demo_engine) as conn:
            before = repo.last_journal_id(conn)
        await pilot.press("m")
        await settle(pilot)
        form = _form(app)
        form.query_one("#field-planned_start", Input).value = "31/12/2026 8am"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is form
        assert "not an ISO date" in str(form.query_one("#error-planned_start", Static).render())
        # The coordinator's refusal lands on its field too: end before start.
        form.query_one("#field-planned_start", Input).value = "2026-12-09 10:00"
        form.query_one("#field-planned_end", Input).value = "2026-12-09 09:00"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "after" in str(form.query_one("#error-planned_end", Static).render())
        with read_connection(demo_engine) as conn:
            assert repo.last_journal_id(conn) == before


async def test_stale_edit_gets_the_conflict_dialog(demo_engine) -> None:
    app = make_app(demo_engine)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        row = grid(app).current_row
        await pilot.press("r")
        await settle(pilot)
        # Someone else moves it while the form is open.
        Coordinator(demo_engine).execute(c.MoveAssignment(
            row["order"], row["line"], row["assignment"], row["planned_start"].add(hours=1),
            row["planned_end"].add(hours=1)), c.Actor.dispatcher("bruno"))
        _form(app).query_one("#field-engineer", Select).value = "E009"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, ConflictScreen)
        mine = str(app.screen.query_one("#conflict-mine", Static).render())
        theirs = str(app.screen.query_one("#conflict-theirs", Static).render())
        assert "E009" in mine and f"version {row['version']}" in mine
        assert f"version {row['version'] + 1}" in theirs and row["engineer"] in theirs
        await pilot.click("#keep")
        await settle(pilot)
        with read_connection(demo_engine) as conn:
            now = repo.assignment_detail(conn, row["key"])
        assert now["engineer"] == row["engineer"]  # nothing overwritten
        assert grid(app).current_row["version"] == row["version"] + 1


async def test_database_text_is_never_markup(demo_engine) -> None:
    coord = Coordinator(demo_engine)
    actor = c.Actor.dispatcher("x")
    coord.execute_many([
        c.UpsertPartner("BP100", "[bold]Acme[/bold] [link=x]"),
        c.UpdateOrder("SO-1001", address="[red]Via Roma[/red] 1"),
    ], actor)
    app = make_app(demo_engine)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await _goto(pilot, "SO-1001/10/1")
        text = pane_text(app, "appointment")
        assert "[red]Via Roma[/red] 1" in text
        widget = app.screen.query_one("#pane-appointment", Static)
        rendered: Any = widget.render()
        start = rendered.plain.index("[red]Via")
        styled = [s for s in rendered.spans if s.start <= start + 6 < s.end]
        assert styled == []  # shown as typed: neither red nor with the brackets eaten
        await pilot.press("o")
        await settle(pilot)
        header = str(app.screen.query_one("#order-header", Static).render())
        assert "[red]Via Roma[/red] 1" in header


async def test_order_header_change_says_how_many_appointments(demo_engine) -> None:
    app = make_app(demo_engine)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await _goto(pilot, "SO-1001/10/1")
        await pilot.press("o")
        await settle(pilot)
        await pilot.press("e")
        await settle(pilot)
        _form(app).query_one("#field-address", Input).value = "Via Nuova 5, Milano"
        await pilot.press("ctrl+s")
        await settle(pilot)
        toasts = [str(n.message) for n in app._notifications]
        with read_connection(demo_engine) as conn:
            n = len(repo.list_appointments(conn, order="SO-1001"))
        assert any(f"; {n} appointment" in t and "address" in t for t in toasts), toasts
        assert "Via Nuova 5, Milano" in str(app.screen.query_one("#order-header",
                                                                 Static).render())
