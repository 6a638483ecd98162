"""A grid of any size: a line-API `ScrollView` over keyset pages fetched in thread workers.

The grid holds a count, the cursor and an LRU of pages (`PAGE` rows each); it renders only the
visible lines. Page `p` is fetched after the last key of page `p-1` when that page is cached
(keyset), otherwise by a seek to row `p * PAGE` on the sort index. A change drops only the pages
that show a touched row; a change that can add, remove or re-sort rows drops the pages and
counts again, and the cursor stays on its row wherever that row went.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from sqlalchemy import Connection, Engine
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from app.db.engine import read_connection
from app.db.repositories import GridFilter
from app.tui.messages import CountLoaded, DataChanged, PageLoaded

PAGE = 100
MAX_PAGES = 24


@dataclass(frozen=True)
class Column:
    title: str
    width: int  # 0: shares the room left
    cell: Callable[[dict[str, Any]], Text]
    justify: str = "left"


class GridSource(Protocol):
    """What a grid shows: counting, seeking and paging one kind of row in one order."""

    noun: str
    columns: list[Column]

    def count(self, conn: Connection, f: GridFilter) -> int: ...
    def position(self, conn: Connection, f: GridFilter, key: tuple[Any, int]) -> int: ...
    def key_at(self, conn: Connection, f: GridFilter, index: int) -> tuple[Any, int] | None: ...
    def page(self, conn: Connection, f: GridFilter, *, after: tuple[Any, int] | None = None,
             at: tuple[Any, int] | None = None, limit: int = PAGE) -> list[dict[str, Any]]: ...
    def sort_key(self, row: dict[str, Any]) -> tuple[Any, int]: ...
    def current_key(self, conn: Connection, row_id: int) -> tuple[Any, int] | None: ...
    def touched(self, row: dict[str, Any], change: DataChanged) -> bool: ...
    def row_style(self, row: dict[str, Any]) -> str: ...


class PagedGrid(ScrollView, can_focus=True):
    """The rows of a `GridSource`, one line each, with a sticky title line."""

    COMPONENT_CLASSES = {"grid--header", "grid--cursor", "grid--cursor-blur", "grid--loading"}

    DEFAULT_CSS = """
    PagedGrid { overflow-x: hidden; overflow-y: scroll; }
    PagedGrid > .grid--header { text-style: bold; background: $panel; color: $foreground; }
    PagedGrid > .grid--cursor { background: $block-cursor-background;
                                color: $block-cursor-foreground; text-style: bold; }
    PagedGrid > .grid--cursor-blur { background: $block-cursor-blurred-background; }
    PagedGrid > .grid--loading { color: $text-muted; }
    """

    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
        Binding("enter", "select", "Open", show=False),
    ]

    class Highlighted(Message):
        """The cursor rests on another row (or the row under it was reloaded)."""

        def __init__(self, grid: PagedGrid, row: dict[str, Any] | None) -> None:
            super().__init__()
            self.grid = grid
            self.row = row

    class Selected(Message):
        def __init__(self, grid: PagedGrid, row: dict[str, Any]) -> None:
            super().__init__()
            self.grid = grid
            self.row = row

    class Counted(Message):
        def __init__(self, grid: PagedGrid, total: int, overall: int) -> None:
            super().__init__()
            self.grid = grid
            self.total = total
            self.overall = overall

    def __init__(self, source: GridSource, engine: Engine, *, start_key: Callable[[], Any]
                 | None = None, filter: GridFilter | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.source = source
        self.engine = engine
        self.filter = filter or GridFilter()
        self.start_key = start_key
        self.total: int | None = None
        self.overall: int | None = None
        self.cursor = 0
        self.generation = 0
        self._count_seq = 0
        self._pages: OrderedDict[int, list[dict[str, Any]]] = OrderedDict()
        self._loading: set[tuple[int, int]] = set()
        self._posted: tuple[str, Any] | None = None
        self._widths: list[int] = []

    # ---- public -------------------------------------------------------------------------

    @property
    def current_row(self) -> dict[str, Any] | None:
        return self.row_at(self.cursor)

    def row_at(self, index: int) -> dict[str, Any] | None:
        page = self._pages.get(index // PAGE)
        if page is None or index % PAGE >= len(page):
            return None
        return page[index % PAGE]

    def cached_rows(self) -> int:
        return sum(len(p) for p in self._pages.values())

    def set_filter(self, f: GridFilter) -> None:
        """Show other rows: everything is asked again, the cursor goes to `start_key` (today)."""
        self.filter = f
        self._reset()
        self._recount(goto=self.start_key() if self.start_key else None)

    def goto_key(self, key: tuple[Any, int]) -> None:
        """Put the cursor on the row with this sort key (or the first after it)."""
        self._recount(goto=key)

    def reload(self) -> None:
        self._reset()
        self._recount(goto=self.start_key() if self.start_key else None)

    def apply_change(self, change: DataChanged) -> None:
        """Drop the pages the change touches; keep the cursor on its row."""
        if self.total is None:
            return
        if change.shifts_rows:
            row = self.current_row
            self._pages.clear()
            self._loading.clear()
            self.generation += 1
            self._recount(follow=row["id"] if row else None)
            return
        dropped = [p for p, rows in self._pages.items()
                   if any(self.source.touched(r, change) for r in rows)]
        for p in dropped:
            del self._pages[p]
        if dropped:
            self._posted = None
            self.refresh()

    # ---- loading ------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.reload()

    def _reset(self) -> None:
        self.generation += 1
        self._pages.clear()
        self._loading.clear()
        self.total = None
        self._posted = None
        self.refresh()

    def _recount(self, *, goto: Any = None, follow: int | None = None) -> None:
        """Count again; put the cursor on `goto` (a sort key) or on the row `follow` (an id)
        wherever it went; when that row is gone the cursor keeps its index."""
        self._count_seq += 1
        gen, f, source, seq = self.generation, self.filter, self.source, self._count_seq

        def work() -> None:
            with read_connection(self.engine) as conn:
                total = source.count(conn, f)
                overall = total if f.empty else source.count(conn, GridFilter())
                cursor = None
                key = goto
                if follow is not None:
                    key = source.current_key(conn, follow)
                    if key is not None:
                        rows = source.page(conn, f, at=key, limit=1)
                        if not rows or rows[0]["id"] != follow:
                            key = None  # filtered out now
                if key is not None:
                    cursor = source.position(conn, f, key)
            self.post_message(CountLoaded(gen, total, overall, cursor, seq))

        self.run_worker(work, thread=True, group=f"count-{id(self)}")

    def on_count_loaded(self, msg: CountLoaded) -> None:
        msg.stop()
        if msg.generation != self.generation or msg.seq != self._count_seq:
            return
        self.total, self.overall = msg.total, msg.overall
        self.virtual_size = Size(self.size.width, msg.total + 1)
        if msg.cursor is not None:
            self.cursor = msg.cursor
        self.cursor = max(0, min(self.cursor, msg.total - 1))
        self._posted = None
        self._scroll_cursor_into_view(center=msg.cursor is not None)
        self.post_message(self.Counted(self, msg.total, msg.overall))
        self.refresh()
        self._after_change()

    def _request(self, page: int) -> None:
        if (self.generation, page) in self._loading:
            return
        self._loading.add((self.generation, page))
        gen, f, source = self.generation, self.filter, self.source
        before = self._pages.get(page - 1)
        after_key = source.sort_key(before[-1]) if before and len(before) == PAGE else None

        def work() -> None:
            with read_connection(self.engine) as conn:
                if page == 0:
                    rows = source.page(conn, f, limit=PAGE)
                elif after_key is not None:
                    rows = source.page(conn, f, after=after_key, limit=PAGE)
                else:
                    key = source.key_at(conn, f, page * PAGE)
                    rows = source.page(conn, f, at=key, limit=PAGE) if key else []
            self.post_message(PageLoaded(gen, page, rows))

        self.run_worker(work, thread=True, group=f"page-{id(self)}")

    def on_page_loaded(self, msg: PageLoaded) -> None:
        msg.stop()
        self._loading.discard((msg.generation, msg.page))
        if msg.generation != self.generation:
            return
        self._pages[msg.page] = msg.rows
        self._pages.move_to_end(msg.page)
        while len(self._pages) > MAX_PAGES:
            self._pages.popitem(last=False)
        self.refresh()
        self._after_change()

    def _after_change(self) -> None:
        row = self.current_row
        key = (self.source.sort_key(row), row.get("version")) if row else None
        if row is not None and key != self._posted:
            self._posted = key
            self.post_message(self.Highlighted(self, row))
        elif self.total == 0 and self._posted != ("empty", None):
            self._posted = ("empty", None)
            self.post_message(self.Highlighted(self, None))

    # ---- moving -------------------------------------------------------------------------

    @property
    def _visible_rows(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def move_cursor(self, index: int) -> None:
        if not self.total:
            return
        old = self.cursor
        self.cursor = max(0, min(index, self.total - 1))
        if self.cursor == old:
            return
        self._scroll_cursor_into_view()
        self.refresh_line(old + 1)
        self.refresh_line(self.cursor + 1)
        self._after_change()

    def _scroll_cursor_into_view(self, center: bool = False) -> None:
        top = round(self.scroll_y)
        visible = self._visible_rows
        if center and not top <= self.cursor < top + visible:
            self.scroll_to(y=max(0, self.cursor - visible // 3), animate=False, force=True)
        elif self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, force=True)
        elif self.cursor >= top + visible:
            self.scroll_to(y=self.cursor - visible + 1, animate=False, force=True)

    def action_cursor(self, delta: int) -> None:
        self.move_cursor(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self.move_cursor(self.cursor + direction * self._visible_rows)

    def action_jump(self, where: int) -> None:
        self.move_cursor(0 if where == 0 else (self.total or 1) - 1)

    def action_select(self) -> None:
        row = self.current_row
        if row is not None:
            self.post_message(self.Selected(self, row))

    def on_click(self, event: events.Click) -> None:
        if event.y < 1:
            return
        index = round(self.scroll_y) + event.y - 1
        if self.total and index < self.total:
            self.move_cursor(index)
            if event.chain >= 2:
                self.action_select()

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)

    # ---- painting -----------------------------------------------------------------------

    def _layout(self, width: int) -> list[int]:
        cols = self.source.columns
        fixed = sum(c.width for c in cols if c.width) + len(cols) - 1
        flex = [c for c in cols if not c.width]
        room = max(len(flex) * 4, width - fixed)
        share = room // max(1, len(flex))
        widths = [c.width or share for c in cols]
        if flex:
            last_flex = max(i for i, c in enumerate(cols) if not c.width)
            widths[last_flex] += room - share * len(flex)
        return widths

    def _line(self, cells: list[Text], widths: list[int]) -> Text:
        out = Text(no_wrap=True, overflow="ellipsis")
        for i, (cell, w) in enumerate(zip(cells, widths, strict=True)):
            if i:
                out.append(" ")
            cell = cell.copy()
            cell.truncate(w, overflow="ellipsis", pad=True)
            out.append_text(cell)
        return out

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        widths = self._layout(width)
        if y == 0:
            style = self.get_component_rich_style("grid--header")
            titles = [Text(c.title, justify=c.justify) for c in self.source.columns]  # type: ignore[arg-type]
            return self._strip(self._line(titles, widths), width, style)
        index = round(self.scroll_y) + y - 1
        if self.total is None or index >= self.total:
            if self.total == 0 and y == 1:
                msg = f"No {self.source.noun} match." if not self.filter.empty else \
                    f"No {self.source.noun} yet."
                return self._strip(Text(msg), width, self.get_component_rich_style(
                    "grid--loading"))
            return Strip.blank(width, self.rich_style)
        row = self.row_at(index)
        if row is None:
            self._request(index // PAGE)
            return self._strip(Text("…"), width, self.get_component_rich_style("grid--loading"))
        self._pages.move_to_end(index // PAGE)
        text = self._line([c.cell(row) for c in self.source.columns], widths)
        base = self.rich_style
        if index == self.cursor:
            base = self.get_component_rich_style(
                "grid--cursor" if self.has_focus else "grid--cursor-blur")
            text.stylize(Style(bgcolor=base.bgcolor))
        return self._strip(text, width, base)

    def _strip(self, text: Text, width: int, style: Style) -> Strip:
        segments = [Segment(s.text, style + s.style if s.style else style, s.control)
                    for s in text.render(self.app.console)]
        return Strip(segments).adjust_cell_length(width, style)

    def on_resize(self) -> None:
        if self.total is not None:
            self.virtual_size = Size(self.size.width, self.total + 1)
