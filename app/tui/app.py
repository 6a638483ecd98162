"""The dispatch console: a full-screen Textual app over the coordinator.

`run_console` is what `dispatch` (no subcommand) calls. `DispatchApp` can be built in tests with
an engine, an actor, a frozen clock and a display zone. Every edit goes through the coordinator
in a thread worker; the result is published once on `app.changes` (a `Signal`), and so are the
changes of other processes, which the journal poller (and on PostgreSQL a LISTEN) brings in.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

import pendulum
from sqlalchemy import Engine
from textual import work
from textual.app import App
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.signal import Signal
from textual.worker import get_current_worker

from app.config import Settings
from app.db import repositories as repo
from app.db.engine import read_connection
from app.db.models import Role
from app.sync import commands as c
from app.sync.coordinator import Change, Coordinator
from app.sync.errors import Conflict, DispatchError
from app.tui.commands import DispatchCommands
from app.tui.messages import DataChanged, JournalNews

NOTIFY_CHANNEL = "dispatch_journal"
JOURNAL_BATCH = 2000


def db_label(engine: Engine) -> str:
    """The database for the header: a SQLite file's name, or a server URL without password."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return f"sqlite {(url.database or ':memory:').rsplit('/', 1)[-1]}"
    return f"{url.get_backend_name()} {url.username or ''}@{url.host or ''}/{url.database or ''}"


class DispatchApp(App[int]):
    """The console. Screens are modes; the order view and forms are pushed over them."""

    CSS_PATH = "app.tcss"
    TITLE = "Dispatch"
    COMMANDS = App.COMMANDS | {DispatchCommands}
    ENABLE_COMMAND_PALETTE = True

    BINDINGS = [
        Binding("f2", "show('board')", "Board", id="board", tooltip="The dispatch board"),
        Binding("f3", "show('appointments')", "Appointments", id="appointments",
                tooltip="The CRM view: every appointment"),
        Binding("f4", "show('mine')", "My assignments", id="mine",
                tooltip="Your own assignments by day"),
        Binding("f5", "show('parameters')", "Parameters", id="parameters",
                tooltip="Resource management parameters P1-P4"),
        Binding("question_mark", "help", "Help", id="help", tooltip="Every key"),
        Binding("ctrl+q", "quit", "Quit", id="quit", priority=True),
    ]

    def __init__(
        self, engine: Engine, actor: c.Actor, *, tz: str = "UTC",
        clock: Callable[[], pendulum.DateTime] | None = None, poll_interval: float = 0.4,
        cursor_blink: bool = True, listen: bool = True,
    ) -> None:
        from app.tui.screens.appointments import AppointmentsScreen
        from app.tui.screens.board import BoardScreen
        from app.tui.screens.mine import MyAssignmentsScreen
        from app.tui.screens.parameters import ParametersScreen

        self.MODES = {
            "board": BoardScreen, "appointments": AppointmentsScreen,
            "mine": MyAssignmentsScreen, "parameters": ParametersScreen,
        }
        super().__init__()
        self.engine = engine
        self.actor = actor
        self.tz = tz
        self.clock = clock or (lambda: pendulum.now("UTC"))
        self.coordinator = Coordinator(engine, clock=self.clock)
        self.poll_interval = poll_interval
        self.cursor_blink = cursor_blink
        self.listen = listen
        self.db_label = db_label(engine)
        self.changes: Signal[DataChanged] = Signal(self, "changes")
        self.engineers: list[dict[str, Any]] = []
        self.last_journal_id = 0
        self.last_news: str = ""
        self._polling = threading.Lock()

    # ---- roles --------------------------------------------------------------------------

    @property
    def role(self) -> Role:
        return self.actor.role

    @property
    def can_edit(self) -> bool:
        """Dispatchers edit everything; technicians only their own statuses; supervisors
        nothing (and the coordinator would refuse anyway)."""
        return self.role == Role.DISPATCHER

    def allowed_modes(self) -> set[str]:
        if self.role == Role.TECHNICIAN:
            return {"mine"}
        modes = {"board", "appointments", "parameters"}
        if self.actor.employee:
            modes.add("mine")
        return modes

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "show" and parameters:
            return str(parameters[0]) in self.allowed_modes()
        return True

    # ---- start --------------------------------------------------------------------------

    def on_mount(self) -> None:
        with read_connection(self.engine) as conn:
            self.last_journal_id = repo.last_journal_id(conn)
            self.engineers = repo.employees(conn, engineers_only=True)
        self.switch_mode("mine" if self.role == Role.TECHNICIAN else "board")
        if self.poll_interval > 0:
            self.set_interval(self.poll_interval, self.poll_journal)
        if self.listen and self.engine.dialect.name == "postgresql":
            self.listen_for_notifications()

    def action_show(self, mode: str) -> None:
        if mode in self.allowed_modes() and self.current_mode != mode:
            self.switch_mode(mode)

    def action_help(self) -> None:
        from app.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def now_local(self) -> pendulum.DateTime:
        return self.clock().in_timezone(self.tz)

    def today_key(self) -> tuple[Any, int]:
        """The grids open at the first row of today (in the user's zone)."""
        return (self.now_local().start_of("day").in_timezone("UTC"), 0)

    # ---- edits --------------------------------------------------------------------------

    def execute(self, command: c.Command, *, form: Any = None,
                on_done: Callable[[Change], None] | None = None) -> None:
        """Run one command through the coordinator in a worker; report on the main thread."""

        def run() -> None:
            try:
                change = self.coordinator.execute(command, self.actor)
            except DispatchError as exc:
                self.call_from_thread(self._failed, command, exc, form)
            else:
                self.call_from_thread(self._done, command, change, form, on_done)

        self.run_worker(run, thread=True, group="edit", name=f"edit {command.op}")

    def _done(self, command: c.Command, change: Change, form: Any,
              on_done: Callable[[Change], None] | None) -> None:
        if isinstance(form, ModalScreen) and form.is_attached:
            form.dismiss(None)
        self.notify(change.summary, title="Saved", timeout=6)
        order = getattr(command, "order", None)
        self.publish(DataChanged(
            assignments=frozenset(change.assignments),
            appointments=frozenset(change.appointments) | frozenset(change.deleted_appointments),
            orders=frozenset([order]) if isinstance(order, str) else frozenset(),
            ops=frozenset([command.op]), summary=change.summary))
        if on_done is not None:
            on_done(change)

    def _failed(self, command: c.Command, exc: DispatchError, form: Any) -> None:
        if isinstance(exc, Conflict):
            from app.tui.screens.forms import ConflictScreen

            if isinstance(form, ModalScreen) and form.is_attached:
                form.dismiss(None)  # it shows a version that is gone
            self.push_screen(ConflictScreen(command, exc))
            return
        if form is not None and form.is_attached:
            form.show_error(exc.field, str(exc))
        else:
            self.notify(str(exc), title="Refused", severity="error", timeout=8)

    def retry_over(self, command: c.Command, version: int) -> None:
        """After a conflict the user chose to apply their edit over the newer version."""
        self.execute(dataclasses.replace(command, version=version))  # type: ignore[type-var]

    def publish(self, change: DataChanged) -> None:
        self.changes.publish(change)

    # ---- live refresh -------------------------------------------------------------------

    def poll_journal(self) -> None:
        if self._polling.locked():
            return
        self._poll_worker()

    @work(thread=True, group="journal", exit_on_error=False)
    def _poll_worker(self) -> None:
        if not self._polling.acquire(blocking=False):
            return
        try:
            seen = self.last_journal_id
            with read_connection(self.engine) as conn:
                last = repo.last_journal_id(conn)
                if last <= seen:
                    return
                rows = repo.history(conn, after=seen, limit=JOURNAL_BATCH)
            everything = len(rows) >= JOURNAL_BATCH and rows[-1]["id"] < last
            change = DataChanged(
                assignments=frozenset(r["assignment"] for r in rows if r["assignment"]),
                appointments=frozenset(r["appointment_id"] for r in rows
                                       if r["appointment_id"] is not None),
                orders=frozenset(r["order_number"] for r in rows if r["order_number"]),
                ops=frozenset(r["op"] for r in rows), everything=everything,
                summary=_news(rows))
            self.post_message(JournalNews(change, last))
        finally:
            self._polling.release()

    def on_journal_news(self, msg: JournalNews) -> None:
        if msg.last_id <= self.last_journal_id:
            return
        self.last_journal_id = msg.last_id
        if msg.change.summary:
            self.last_news = msg.change.summary
        if "upsert_employee" in msg.change.ops or msg.change.everything:
            with read_connection(self.engine) as conn:
                self.engineers = repo.employees(conn, engineers_only=True)
        self.publish(msg.change)

    @work(thread=True, group="listen", exit_on_error=False)
    def listen_for_notifications(self) -> None:
        """PostgreSQL: a NOTIFY from the coordinator's transaction nudges the poller at once."""
        import psycopg

        url = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        worker = get_current_worker()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            while not worker.is_cancelled:
                for _ in conn.notifies(timeout=0.5, stop_after=1):
                    self.call_from_thread(self.poll_journal)


def _news(rows: list[dict[str, Any]]) -> str | None:
    """One line for the status bar: who did what to which row (the first of the batch)."""
    if not rows:
        return None
    last = rows[-1]
    first = next((r for r in rows if r["op"] == last["op"] and r["assignment"]), last)
    what = first["assignment"] or first["order_number"] or ""
    more = len({r["assignment"] for r in rows if r["assignment"]}) - 1
    at = last["at"].strftime("%H:%M:%S") if last.get("at") else ""
    return (f"{at} {last['actor']}: {last['op'].replace('_', ' ')} {what}"
            + (f" (+{more} more)" if more > 0 else "")).strip()


def resolve_user(engine: Engine, user: str | None) -> c.Actor:
    """`--user NAME` must be registered; without it the console is the local dispatcher."""
    import getpass

    if not user:
        try:
            name = getpass.getuser()
        except Exception:
            name = "dispatcher"
        return c.Actor(name, Role.DISPATCHER)
    with read_connection(engine) as conn:
        row = repo.user(conn, user)
    if row is None:
        raise DispatchError(f"unknown user {user!r}: add it with 'dispatch users add'")
    if row["role"] == Role.CALENDAR.value:
        raise DispatchError("the calendar is not a console user")
    return c.Actor(row["name"], Role(row["role"]), row["employee_code"])


def run_console(engine: Engine, settings: Settings, user: str | None) -> int:
    """Open the console; returns the exit status for `dispatch`."""
    actor = resolve_user(engine, user)
    app = DispatchApp(engine, actor, tz=settings.tz)
    result = app.run()
    return int(result or 0)
