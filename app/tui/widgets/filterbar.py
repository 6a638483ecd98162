"""The filter bar (`/`): free text, engineer, status, order, date range. Enter applies it."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Input

from app.db.repositories import GridFilter
from app.tui.format import parse_local

FIELDS = [("text", "text", 16), ("engineer", "engineer E001", 14),
          ("status", "status", 11), ("order", "order", 12),
          ("from", "from 2026-12-07", 17), ("to", "to (excl.)", 17)]


class FilterBar(Horizontal):
    BINDINGS = [Binding("escape", "close", "Close filter", id="filter-close")]

    class Applied(Message):
        def __init__(self, f: GridFilter) -> None:
            super().__init__()
            self.filter = f

    class Closed(Message):
        pass

    def compose(self) -> ComposeResult:
        for name, placeholder, width in FIELDS:
            field = Input(placeholder=placeholder, id=f"filter-{name}", compact=True)
            field.styles.width = width
            yield field

    def on_mount(self) -> None:
        blink = getattr(self.app, "cursor_blink", True)
        for field in self.query(Input):
            field.cursor_blink = blink

    def value(self, name: str) -> str:
        return self.query_one(f"#filter-{name}", Input).value.strip()

    def build(self) -> GridFilter:
        tz: Any = getattr(self.app, "tz", "UTC")
        dates = {}
        for name in ("from", "to"):
            raw = self.value(name)
            field = self.query_one(f"#filter-{name}", Input)
            field.remove_class("-invalid")
            if raw:
                try:
                    dates[name] = parse_local(raw, tz).in_timezone("UTC")
                except ValueError as exc:
                    field.add_class("-invalid")
                    raise ValueError(f"{name}: {exc}") from None
        status = self.value("status")
        return GridFilter(
            text=self.value("text"), engineer=self.value("engineer").upper() or None,
            status=status.title() if status else None, order=self.value("order") or None,
            date_from=dates.get("from"), date_to=dates.get("to"))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            f = self.build()
        except ValueError as exc:
            self.app.notify(str(exc), title="Filter", severity="error")
            return
        self.post_message(self.Applied(f))

    def action_close(self) -> None:
        self.post_message(self.Closed())
