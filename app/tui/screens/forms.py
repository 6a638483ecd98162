"""Modal forms. A form builds a command from its fields; nothing is saved until the fields are
valid, and an error the coordinator finds is shown on the field it names, the form stays open."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from app.sync import commands as c
from app.sync.errors import Conflict
from app.tui.format import parse_local, plain, when


class FieldError(ValueError):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


@dataclass
class Field:
    name: str
    label: str
    value: str = ""
    options: list[tuple[str, str]] | None = None  # (label, value): a Select
    placeholder: str = ""
    aliases: tuple[str, ...] = ()  # coordinator field names that mean this field


@dataclass
class FormSpec:
    title: str
    fields: list[Field] = field(default_factory=list)
    note: Text | str | None = None
    submit: str = "Save"
    danger: bool = False


class FormScreen(ModalScreen[None]):
    """A form over the current screen. `build(values)` returns the command or raises
    `FieldError`; the app runs the command and closes the form when it succeeded."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="form-cancel"),
                Binding("ctrl+s", "submit", "Save", id="form-save")]

    def __init__(self, spec: FormSpec, build: Callable[[dict[str, str]], c.Command]) -> None:
        super().__init__(classes="form")
        self.spec = spec
        self.build = build

    def compose(self) -> ComposeResult:
        blink = getattr(self.app, "cursor_blink", True)
        with Vertical(id="dialog", classes="-danger" if self.spec.danger else ""):
            yield Label(Text(self.spec.title, style="bold"), id="form-title")
            if self.spec.note:
                note = self.spec.note
                yield Static(note if isinstance(note, Text) else Text(note), id="form-note",
                             markup=False)
            with VerticalScroll(id="form-fields"):
                for f in self.spec.fields:
                    yield Label(Text(f.label), classes="form-label")
                    if f.options is not None:
                        yield Select([(Text(lbl), val) for lbl, val in f.options],
                                     value=f.value if f.value else Select.NULL,
                                     id=f"field-{f.name}", allow_blank=not f.value)
                    else:
                        field_ = Input(value=f.value, placeholder=f.placeholder,
                                       id=f"field-{f.name}")
                        field_.cursor_blink = blink
                        yield field_
                    yield Static("", id=f"error-{f.name}", classes="form-error", markup=False)
            yield Static("", id="error-form", classes="form-error", markup=False)
            with Horizontal(id="form-buttons"):
                yield Button(self.spec.submit, id="submit",
                             variant="error" if self.spec.danger else "primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        if self.spec.fields:
            self.query_one(f"#field-{self.spec.fields[0].name}").focus()
        else:
            self.query_one("#submit").focus()

    def values(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for f in self.spec.fields:
            w = self.query_one(f"#field-{f.name}")
            if isinstance(w, Select):
                out[f.name] = "" if w.value is Select.NULL else str(w.value)
            else:
                assert isinstance(w, Input)
                out[f.name] = w.value.strip()
        return out

    def clear_errors(self) -> None:
        for w in self.query(".form-error"):
            assert isinstance(w, Static)
            w.update("")
        for f in self.spec.fields:
            self.query_one(f"#field-{f.name}").remove_class("-invalid")

    def show_error(self, field_name: str | None, message: str) -> None:
        """Put the message under the field it concerns (or under the form)."""
        target = None
        for f in self.spec.fields:
            if field_name and (field_name == f.name or field_name in f.aliases
                               or field_name.endswith("." + f.name)):
                target = f.name
        self.query_one(f"#error-{target or 'form'}", Static).update(Text(message))
        if target:
            w = self.query_one(f"#field-{target}")
            w.add_class("-invalid")
            w.focus()

    def action_submit(self) -> None:
        self.clear_errors()
        try:
            command = self.build(self.values())
        except FieldError as exc:
            self.show_error(exc.field, str(exc))
            return
        self.app.execute(command, form=self)  # type: ignore[attr-defined]

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "submit":
            self.action_submit()
        else:
            self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()


def required(values: dict[str, str], name: str, label: str | None = None) -> str:
    v = values.get(name, "")
    if not v:
        raise FieldError(name, f"{label or name} is required")
    return v


def when_field(values: dict[str, str], name: str, tz: str, *, optional: bool = False) -> Any:
    raw = values.get(name, "")
    if not raw and optional:
        return None
    try:
        return parse_local(raw, tz)
    except ValueError as exc:
        raise FieldError(name, f"{name.replace('_', ' ')}: {exc}") from None


def int_field(values: dict[str, str], name: str) -> int:
    raw = required(values, name)
    if not raw.isdigit():
        raise FieldError(name, f"{name} must be a whole number, not {raw!r}")
    return int(raw)


class ConflictScreen(ModalScreen[None]):
    """Someone else changed the row first: show what you wanted and what is there now."""

    BINDINGS = [Binding("escape", "reload", "Keep theirs", id="conflict-keep")]

    def __init__(self, command: c.Command, error: Conflict) -> None:
        super().__init__(classes="form")
        self.command = command
        self.error = error

    def compose(self) -> ComposeResult:
        e = self.error
        with Vertical(id="dialog", classes="-conflict"):
            yield Label(Text(f"Conflict: {e.what} was changed by someone else", style="bold"),
                        id="form-title")
            yield Static(Text(str(e)), id="form-note", markup=False)
            with Horizontal(id="conflict-sides"):
                yield Static(self._mine(), id="conflict-mine", classes="conflict-side",
                             markup=False)
                yield Static(self._theirs(), id="conflict-theirs", classes="conflict-side",
                             markup=False)
            with Horizontal(id="form-buttons"):
                yield Button("Keep theirs (reload)", id="keep", variant="primary")
                yield Button("Apply mine over theirs", id="mine", variant="warning")

    def _mine(self) -> Text:
        out = Text(f"Your edit (you saw version {self.error.expected})\n", style="bold")
        for k, v in vars(self.command).items():
            if k == "version":
                continue
            out.append(f"{k:<14}", style="dim")
            out.append_text(plain(self._show(v)))
            out.append("\n")
        return out

    def _show(self, value: Any) -> str:
        if isinstance(value, dt.datetime):
            return when(value, getattr(self.app, "tz", "UTC"))
        return "-" if value is None else str(value)

    def _theirs(self) -> Text:
        out = Text(f"Now stored (version {self.error.actual})\n", style="bold")
        skip = {"id", "order_id", "activity_id", "version"}
        for k, v in self.error.current.items():
            if k in skip:
                continue
            out.append(f"{k:<14}", style="dim")
            out.append_text(plain(self._show(v)))
            out.append("\n")
        return out

    def on_mount(self) -> None:
        self.query_one("#keep").focus()

    def action_reload(self) -> None:
        self._close()

    def _close(self) -> None:
        from app.tui.messages import DataChanged

        self.dismiss(None)
        app: Any = self.app
        key = None
        if all(hasattr(self.command, a) for a in ("order", "line", "assignment")):
            cmd: Any = self.command
            key = f"{cmd.order}/{cmd.line}/{cmd.assignment}"
        app.publish(DataChanged(assignments=frozenset([key]) if key else frozenset(),
                                everything=key is None))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "mine":
            self.dismiss(None)
            self.app.retry_over(self.command, self.error.actual)  # type: ignore[attr-defined]
        else:
            self._close()
