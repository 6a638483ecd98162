"""Errors a command can end with. Each carries a message meant for a person, naming the field."""

from __future__ import annotations


class DispatchError(Exception):
    """A command was refused; nothing it did was kept."""

    kind = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message


class NotFound(DispatchError):
    kind = "not_found"


class Invalid(DispatchError):
    """The input itself is wrong: a date, a length, a missing field."""

    kind = "invalid"


class Refused(DispatchError):
    """The input is well formed but a rule or a role forbids it."""

    kind = "refused"


class Conflict(DispatchError):
    """Someone else changed the object since the user read it (optimistic locking)."""

    kind = "conflict"

    def __init__(
        self, message: str, *, what: str, expected: int, actual: int, current: dict | None = None
    ) -> None:
        super().__init__(message, field="version")
        self.what = what
        self.expected = expected
        self.actual = actual
        self.current = current or {}


class Busy(DispatchError):
    """The database stayed locked by other writers beyond our retry bound."""

    kind = "busy"
