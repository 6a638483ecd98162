"""Turning database values into screen text. Everything returns `rich.text.Text` built from plain
strings, so nothing the database holds is ever read as markup."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pendulum
from rich.text import Text

STATUS_STYLE = {
    "Assigned": "bold #6ea8fe", "Accepted": "#3dd6d0", "Started": "bold #f5c542",
    "Completed": "#5fd068", "Rejected": "bold #ff6b6b",
    "Planned": "#6ea8fe", "Held": "#5fd068", "Not Held": "#ff6b6b",
}
KIND_SHORT = {"service_order": "SO", "work_order": "WO", "maintenance_sales_order": "MSO"}
KIND_LABEL = {"service_order": "Service order", "work_order": "Work order",
              "maintenance_sales_order": "Maintenance sales order"}


def local(value: dt.datetime | None, tz: str) -> dt.datetime | None:
    if value is None:
        return None
    return pendulum.instance(value).in_timezone(tz) if value.tzinfo else None


def when(value: dt.datetime | None, tz: str) -> str:
    """`2026-12-07 08:00` in the user's zone."""
    v = local(value, tz)
    return f"{v:%Y-%m-%d %H:%M}" if v else "-"


def until(start: dt.datetime, end: dt.datetime, tz: str) -> str:
    """The end next to its start: `10:00`, or `+1d 10:00` on a later day."""
    s, e = local(start, tz), local(end, tz)
    assert s is not None and e is not None
    days = (e.date() - s.date()).days
    return f"{e:%H:%M}" if days == 0 else f"+{days}d {e:%H:%M}"


def iso_or_none(value: Any) -> str:
    return value.isoformat() if isinstance(value, dt.datetime) else str(value)


def status(value: str | None) -> Text:
    if not value:
        return Text("-", style="dim")
    return Text(value, style=STATUS_STYLE.get(value, ""))


def plain(value: Any, style: str = "") -> Text:
    """Any value as literal text (never markup)."""
    return Text("-" if value is None or value == "" else str(value), style=style)


def parse_local(text: str, tz: str) -> pendulum.DateTime:
    """ISO input (`2026-12-07 08:00`, `2026-12-07T08:00`, with or without an offset) read in the
    user's zone; raises ValueError with a message for the form."""
    raw = text.strip()
    if not raw:
        raise ValueError("required")
    try:
        value = pendulum.parse(raw, tz=tz)
    except Exception:
        raise ValueError(f"{raw!r} is not an ISO date and time (2026-12-07 08:00)") from None
    if not isinstance(value, pendulum.DateTime):
        raise ValueError(f"{raw!r} is not a date and time (2026-12-07 08:00)")
    return value
