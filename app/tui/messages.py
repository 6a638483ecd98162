"""What panes tell each other: one `DataChanged` for every change, whoever made it.

The app publishes it on its `changes` signal after its own edits and when the journal shows
edits of other processes; each pane decides for itself whether the change concerns it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

SHIFTING_OPS = frozenset({
    "create_order", "generate_assignments", "create_assignment", "move_assignment",
    "delete_assignment", "calendar_move", "update_order", "update_activity", "add_activity",
})
"""Operations that can add, remove or re-sort rows (by start), not only change them."""


@dataclass(frozen=True)
class DataChanged:
    """Assignments (ORDER/LINE/NO) and appointments (ids) that changed; `everything` when the
    console fell too far behind the journal to say which."""

    assignments: frozenset[str] = frozenset()
    appointments: frozenset[int] = frozenset()
    orders: frozenset[str] = frozenset()
    ops: frozenset[str] = frozenset()
    everything: bool = False
    summary: str | None = None

    @property
    def shifts_rows(self) -> bool:
        return self.everything or bool(self.ops & SHIFTING_OPS)

    def touches_assignment(self, key: str | None) -> bool:
        return self.everything or (key is not None and key in self.assignments)

    def touches_appointment(self, ap_id: int | None) -> bool:
        return self.everything or (ap_id is not None and ap_id in self.appointments)

    def touches_order(self, number: str | None) -> bool:
        return self.everything or (number is not None and (
            number in self.orders or any(k.rsplit("/", 2)[0] == number
                                         for k in self.assignments)))


@dataclass
class JournalNews(Message):
    """The journal poller saw new rows (posted from its thread)."""

    change: DataChanged
    last_id: int


@dataclass
class PageLoaded(Message):
    """A grid page arrived from a worker; `generation` drops answers to an old question."""

    generation: int
    page: int
    rows: list[dict[str, Any]]


@dataclass
class CountLoaded(Message):
    generation: int
    total: int
    overall: int
    cursor: int | None = None
    seq: int = 0


@dataclass
class DetailLoaded(Message):
    key: str
    detail: dict[str, Any] | None = field(default=None)
