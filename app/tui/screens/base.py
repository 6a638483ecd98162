"""What the board, the appointments view and "my assignments" share: a top bar, a filter bar,
a paged grid with the detail panes beside it, a status line and the footer."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Static

from app.db import repositories as repo
from app.db.engine import read_connection
from app.db.repositories import GridFilter
from app.tui.messages import DataChanged, DetailLoaded
from app.tui.widgets.filterbar import FilterBar
from app.tui.widgets.grid import GridSource, PagedGrid
from app.tui.widgets.panes import DetailPanes, TopBar

EDIT_ACTIONS = {"new", "move", "reassign", "status", "delete", "generate", "edit_order",
                "save"}
TECH_ACTIONS = {"accept", "start", "complete"}


class GridScreen(Screen[None]):
    NAME = ""
    CRM = False

    BINDINGS = [
        Binding("slash", "filter", "Filter", id="filter", tooltip="Filter the grid"),
        Binding("t", "today", "Today", id="today", tooltip="Go to today's first row"),
        Binding("tab", "app.focus_next", "Next pane", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.detail_key: str | None = None
        self.detail: dict[str, Any] | None = None

    @property
    def dapp(self) -> Any:
        return self.app

    def make_source(self) -> GridSource:
        raise NotImplementedError

    def base_filter(self) -> GridFilter:
        return GridFilter()

    def compose(self) -> ComposeResult:
        yield TopBar(self.NAME)
        bar = FilterBar(id="filterbar")
        bar.display = False
        yield bar
        with Horizontal(id="main"):
            yield PagedGrid(self.make_source(), self.dapp.engine, start_key=self.dapp.today_key,
                            filter=self.base_filter(), id="grid")
            yield DetailPanes(crm=self.CRM, id="panes")
        yield Static(id="statusline", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(PagedGrid).focus()
        self.dapp.changes.subscribe(self, self.on_data_changed)

    def on_resize(self) -> None:
        self.set_class(self.size.width < 110, "-narrow")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in EDIT_ACTIONS:
            return self.dapp.can_edit
        return True

    # ---- grid -> panes ------------------------------------------------------------------

    @on(PagedGrid.Highlighted)
    def _highlighted(self, event: PagedGrid.Highlighted) -> None:
        row = event.row
        key = self.row_detail_key(row) if row else None
        self.detail_key = key
        if key is None:
            self.detail = None
            self.query_one(DetailPanes).show(None, None, empty="No rows.")
            return
        self.load_detail(key)

    def row_detail_key(self, row: dict[str, Any]) -> str:
        return str(row["key"])

    @work(thread=True, exclusive=True, group="detail")
    def load_detail(self, key: str) -> None:
        with read_connection(self.dapp.engine) as conn:
            detail = self.fetch_detail(conn, key)
        self.post_message(DetailLoaded(key, detail))

    def fetch_detail(self, conn: Any, key: str) -> dict[str, Any] | None:
        return repo.assignment_detail(conn, key)

    def on_detail_loaded(self, msg: DetailLoaded) -> None:
        if msg.key != self.detail_key:
            return
        self.detail = msg.detail
        self.show_detail(msg.detail)

    def show_detail(self, detail: dict[str, Any] | None) -> None:
        panes = self.query_one(DetailPanes)
        if detail is None:
            panes.show(None, None, empty="This row is gone.")
        else:
            panes.show(detail.get("appointment"), detail)

    @on(PagedGrid.Counted)
    def _counted(self, event: PagedGrid.Counted) -> None:
        self.update_status()

    def update_status(self) -> None:
        grid = self.query_one(PagedGrid)
        out = Text()
        if grid.total is None:
            out.append(" counting…", style="dim")
        else:
            out.append(f" {grid.total:,}", style="bold")
            if grid.overall is not None and grid.overall != grid.total:
                out.append(f" of {grid.overall:,}")
            out.append(f" {grid.source.noun}")
            out.append(" · sorted by start", style="dim")
            f = grid.filter
            parts = [f"{k}={v}" for k, v in (
                ("text", f.text), ("engineer", f.engineer), ("status", f.status),
                ("order", f.order)) if v]
            if f.date_from:
                parts.append("from " + f.date_from.in_timezone(self.dapp.tz).format(
                    "YYYY-MM-DD HH:mm"))
            if f.date_to:
                parts.append("to " + f.date_to.in_timezone(self.dapp.tz).format(
                    "YYYY-MM-DD HH:mm"))
            if parts:
                out.append(" · filter: ", style="dim")
                out.append(", ".join(parts), style="#f5c542")
            out.append(" · ")
            out.append("! = engineer double-booked", style="#ff6b6b")
        if self.dapp.last_news:
            out.append(" · last change: ", style="dim")
            out.append(self.dapp.last_news, style="italic")
        self.query_one("#statusline", Static).update(out)

    # ---- live refresh -------------------------------------------------------------------

    def on_data_changed(self, change: DataChanged) -> None:
        self.query_one(PagedGrid).apply_change(change)
        if self.detail_key is not None and self.detail_touched(change):
            self.load_detail(self.detail_key)
        self.update_status()

    def detail_touched(self, change: DataChanged) -> bool:
        ap = (self.detail or {}).get("appointment") or {}
        return change.touches_assignment(self.detail_key) or change.touches_appointment(
            ap.get("id")) or change.touches_order((self.detail or {}).get("order"))

    # ---- filter -------------------------------------------------------------------------

    def action_filter(self) -> None:
        bar = self.query_one(FilterBar)
        bar.display = True
        bar.query_one("#filter-text").focus()

    @on(FilterBar.Applied)
    def _apply_filter(self, event: FilterBar.Applied) -> None:
        f = event.filter
        base = self.base_filter()
        if base.engineer:
            f = GridFilter(text=f.text, engineer=base.engineer, status=f.status,
                           order=f.order, date_from=f.date_from, date_to=f.date_to)
        grid = self.query_one(PagedGrid)
        grid.set_filter(f)
        self.update_status()
        grid.focus()

    @on(FilterBar.Closed)
    def _close_filter(self) -> None:
        self.query_one(FilterBar).display = False
        self.query_one(PagedGrid).focus()

    def action_today(self) -> None:
        self.query_one(PagedGrid).goto_key(self.dapp.today_key())

    @property
    def current(self) -> dict[str, Any] | None:
        return self.query_one(PagedGrid).current_row
