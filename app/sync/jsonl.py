"""JSON lines -> commands, for `dispatch apply`. Every error names the line and the field."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import types
import typing
from typing import Any

from app.sync import commands as c
from app.sync.errors import Invalid

OPS: dict[str, type[c.Command]] = {
    cls.op: cls
    for cls in (
        c.UpsertEmployee, c.UpsertPartner, c.UpsertContact, c.SetParameters, c.CreateOrder,
        c.UpdateOrder, c.SetOrderStatus, c.AddActivity, c.UpdateActivity, c.GenerateAssignments,
        c.CreateAssignment, c.MoveAssignment, c.Reassign, c.SetAssignmentStatus,
        c.DeleteAssignment, c.EditAppointment, c.CalendarMove, c.AddUser, c.AddUserKey,
        c.RemoveUserKey,
    )
}
MAX_LINE = 1_000_000
DATE_FIELDS_IN_CHANGES = {"start", "end", "due_date"}
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
"""Whole numbers outside a 32-bit INTEGER overflow SQLite's driver and PostgreSQL's columns."""


class ParseError(Invalid):
    """The input cannot be read as a command (exit code 2)."""

    def __init__(self, line: int, message: str, field: str | None = None) -> None:
        field = printable(field) if field is not None else None
        where = f"line {line}" + (f", field {field}" if field is not None else "")
        super().__init__(f"{where}: {message}", field=field)
        self.line = line


def printable(text: str) -> str:
    """A name from the input, safe to print: control characters (a newline, a terminal escape)
    and lone surrogates shown as escapes, so an error stays one harmless line."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text) or '""'


def parse_datetime(value: Any, field: str, line: int = 0) -> dt.datetime:
    """ISO 8601 with an offset: `2026-12-07T08:00:00+01:00` or `...Z`. Naive is refused."""
    if not isinstance(value, str):
        raise ParseError(line, f"expected an ISO 8601 date and time, got {_kind(value)}", field)
    if len(value) > 40:
        raise ParseError(line, "is too long to be a date and time", field)
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ParseError(
            line, f"{value!r} is not an ISO 8601 date and time "
            "(for example 2026-12-07T08:00:00+01:00)", field) from None
    if parsed.tzinfo is None:
        raise ParseError(line, f"{value!r} has no UTC offset (add +01:00 or Z)", field)
    try:
        parsed.astimezone(dt.UTC)  # year 1 at +01:00 or 9999 at -01:00 has no UTC instant
    except OverflowError:
        raise ParseError(line, f"{value!r} is out of range", field) from None
    return parsed


def _kind(value: Any) -> str:
    return {bool: "true/false", int: "a number", float: "a number", str: "text",
            list: "a list", dict: "an object", type(None): "null"}.get(type(value), "a value")


def _convert(value: Any, hint: Any, field: str, line: int) -> Any:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _convert(value, args[0], field, line)
    if hint is str:
        if not isinstance(value, str):
            raise ParseError(line, f"expected text, got {_kind(value)}", field)
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ParseError(line, f"expected true or false, got {_kind(value)}", field)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParseError(line, f"expected a whole number, got {_kind(value)}", field)
        return value
    if hint is dt.datetime:
        return parse_datetime(value, field, line)
    if origin is tuple:
        inner = typing.get_args(hint)[0]
        if not isinstance(value, list):
            raise ParseError(line, f"expected a list, got {_kind(value)}", field)
        return tuple(_convert(v, inner, f"{field}[{i}]", line) for i, v in enumerate(value))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ParseError(line, f"expected an object, got {_kind(value)}", field)
        return value
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, line, prefix=field + ".")
    raise ParseError(line, "cannot read this field", field)  # pragma: no cover


def _build(cls: Any, obj: Any, line: int, prefix: str = "") -> Any:
    if not isinstance(obj, dict):
        raise ParseError(line, f"expected an object, got {_kind(obj)}", prefix.rstrip(".") or None)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key in obj:
        if key not in fields:
            raise ParseError(line, f"unknown field for {getattr(cls, 'op', '') or cls.__name__}",
                             prefix + key)
    for name, f in fields.items():
        if name not in obj:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ParseError(line, "is required", prefix + name)
            continue
        kwargs[name] = _convert(obj[name], hints[name], prefix + name, line)
    return cls(**kwargs)


def _scan(obj: Any, line: int) -> None:
    """Refuse, naming the field, what JSON allows but no database stores: lone surrogates
    (`"\\ud800"`: not encodable), NUL characters (PostgreSQL text cannot hold them) and whole
    numbers beyond 32 bits. Iterative, so deeply nested input cannot exhaust the stack."""
    stack: list[tuple[Any, str | None]] = [(obj, None)]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, line, key)
                stack.append((item, key if path is None else f"{path}.{key}"))
        elif isinstance(value, list):
            stack.extend((item, f"{path or ''}[{i}]") for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_text(value, line, path)
        elif isinstance(value, int) and not isinstance(value, bool) and not (
                INT_MIN <= value <= INT_MAX):
            raise ParseError(line, "number is out of range", path)


def _check_text(value: str, line: int, field: str | None) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ParseError(line, "text is not valid Unicode (a lone surrogate escape)",
                         field) from None
    if "\x00" in value:
        raise ParseError(line, "text contains a NUL character", field)


def parse_command(obj: Any, line: int) -> c.Command:
    """One decoded JSON value -> a command."""
    if not isinstance(obj, dict):
        raise ParseError(line, f"expected a JSON object, got {_kind(obj)}")
    _scan(obj, line)
    op = obj.get("op")
    if not isinstance(op, str):
        raise ParseError(line, "every line needs an \"op\"", "op")
    cls = OPS.get(op)
    if cls is None:
        raise ParseError(line, f"unknown op {op!r}; one of {', '.join(sorted(OPS))}", "op")
    body = {k: v for k, v in obj.items() if k != "op"}
    if cls is c.EditAppointment:
        # Fields may come inside "changes" or beside "appointment"; dates are parsed here.
        changes = dict(body.pop("changes", {}) or {}) if isinstance(body.get("changes"),
                                                                    dict) else {}
        if "changes" in body:
            raise ParseError(line, "expected an object", "changes")
        for key in list(body):
            if key not in ("appointment", "version"):
                changes[key] = body.pop(key)
        for key in DATE_FIELDS_IN_CHANGES & set(changes):
            changes[key] = parse_datetime(changes[key], key, line)
        body["changes"] = changes
    return typing.cast(c.Command, _build(cls, body, line))


def parse_text(text: str, line: int) -> c.Command:
    if len(text) > MAX_LINE:
        raise ParseError(line, f"line is {len(text)} characters long; at most {MAX_LINE}")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(line, f"malformed JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise ParseError(line, "malformed JSON (nested too deeply)") from None
    return parse_command(obj, line)
