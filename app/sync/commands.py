"""Commands: small immutable requests that the coordinator carries out, one transaction each.

Every writer (console, command line, calendar sync, tests) builds these; nothing else writes.
`None` in an optional field means "leave as it is". `version` fields carry the version the user
saw; when given and stale, the command is refused as a conflict instead of overwriting.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from app.db.models import Role


@dataclass(frozen=True)
class Actor:
    """Who issues a command: a user name, a role, and for technicians their employee code."""

    name: str
    role: Role
    employee: str | None = None

    @classmethod
    def dispatcher(cls, name: str = "dispatcher") -> Actor:
        return cls(name, Role.DISPATCHER)

    @classmethod
    def calendar(cls) -> Actor:
        return cls("calendar", Role.CALENDAR)


@dataclass(frozen=True)
class AssignmentRef:
    order: str
    line: int
    assignment: int

    def __str__(self) -> str:
        return f"{self.order}/{self.line}/{self.assignment}"

    @classmethod
    def parse(cls, text: str) -> AssignmentRef:
        """`ORDER/LINE/NO`; the order number may itself contain slashes."""
        parts = text.rsplit("/", 2)
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            raise ValueError(f"{text!r} is not ORDER/LINE/NO (for example SO-1001/10/1)")
        return cls(parts[0], int(parts[1]), int(parts[2]))


class Command:
    """Base of all commands; `op` is the name used in `dispatch apply` files."""

    op: str = ""


@dataclass(frozen=True)
class UpsertEmployee(Command):
    op = "upsert_employee"
    code: str
    name: str
    email: str | None = None
    engineer: bool = False


@dataclass(frozen=True)
class UpsertPartner(Command):
    op = "upsert_partner"
    code: str
    name: str


@dataclass(frozen=True)
class UpsertContact(Command):
    op = "upsert_contact"
    partner: str
    code: str
    name: str
    email: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class SetParameters(Command):
    op = "set_parameters"
    create_crm_appointments: bool | None = None  # P1
    organizer: str | None = None  # P2
    include_sold_to_contact: bool | None = None  # P3
    update_assignments_from_appointment_dates: bool | None = None  # P4
    version: int | None = None


@dataclass(frozen=True)
class ActivitySpec:
    line: int
    description: str
    planned_start: dt.datetime
    planned_end: dt.datetime
    engineers: tuple[str, ...] = ()


@dataclass(frozen=True)
class CreateOrder(Command):
    op = "create_order"
    order: str
    kind: str
    sold_to: str
    ship_to: str
    address: str
    planned_start: dt.datetime
    planned_end: dt.datetime
    contact: str | None = None
    status: str = "Free"
    activities: tuple[ActivitySpec, ...] = ()


@dataclass(frozen=True)
class UpdateOrder(Command):
    op = "update_order"
    order: str
    sold_to: str | None = None
    ship_to: str | None = None
    contact: str | None = None
    address: str | None = None
    planned_start: dt.datetime | None = None
    planned_end: dt.datetime | None = None
    version: int | None = None


@dataclass(frozen=True)
class SetOrderStatus(Command):
    op = "set_order_status"
    order: str
    status: str
    version: int | None = None


@dataclass(frozen=True)
class AddActivity(Command):
    op = "add_activity"
    order: str
    line: int
    description: str
    planned_start: dt.datetime
    planned_end: dt.datetime
    engineers: tuple[str, ...] = ()


@dataclass(frozen=True)
class UpdateActivity(Command):
    op = "update_activity"
    order: str
    line: int
    description: str | None = None
    planned_start: dt.datetime | None = None
    planned_end: dt.datetime | None = None
    engineers: tuple[str, ...] | None = None
    version: int | None = None


@dataclass(frozen=True)
class GenerateAssignments(Command):
    """One assignment for every planned engineer of every activity who has none yet."""

    op = "generate_assignments"
    order: str


@dataclass(frozen=True)
class CreateAssignment(Command):
    op = "create_assignment"
    order: str
    line: int
    engineer: str
    planned_start: dt.datetime | None = None  # default: the activity's
    planned_end: dt.datetime | None = None


@dataclass(frozen=True)
class MoveAssignment(Command):
    op = "move_assignment"
    order: str
    line: int
    assignment: int
    planned_start: dt.datetime
    planned_end: dt.datetime
    version: int | None = None


@dataclass(frozen=True)
class Reassign(Command):
    op = "reassign"
    order: str
    line: int
    assignment: int
    engineer: str
    version: int | None = None


@dataclass(frozen=True)
class SetAssignmentStatus(Command):
    op = "set_assignment_status"
    order: str
    line: int
    assignment: int
    status: str
    version: int | None = None


@dataclass(frozen=True)
class DeleteAssignment(Command):
    op = "delete_assignment"
    order: str
    line: int
    assignment: int
    version: int | None = None


@dataclass(frozen=True)
class EditAppointment(Command):
    """A CRM-side edit. Refused for mirrored fields of an appointment that mirrors (R9)."""

    op = "edit_appointment"
    appointment: int
    changes: dict[str, Any] = field(default_factory=dict)
    version: int | None = None


@dataclass(frozen=True)
class CalendarMove(Command):
    """The organizer moved the event in their calendar (R15); only the calendar may say so."""

    op = "calendar_move"
    appointment: int
    start: dt.datetime
    end: dt.datetime


@dataclass(frozen=True)
class CalendarNote(Command):
    """The calendar sync reports what it did to an appointment's event (reverted an edit, recreated
    a deleted event, could not read one); with `resend` the event is queued to be written again.
    Only the calendar actor issues it, so the journal says so in the coordinator's transaction."""

    op = "calendar_note"
    appointment: int
    detail: str
    resend: bool = True


@dataclass(frozen=True)
class AddUser(Command):
    op = "add_user"
    name: str
    role: str
    employee: str | None = None


ASSIGNMENT_COMMANDS = (MoveAssignment, Reassign, SetAssignmentStatus, DeleteAssignment)


@dataclass(frozen=True)
class AddUserKey(Command):
    """Register an SSH public key (the text of a `.pub` file) as one user's login (issue 5)."""

    op = "add_user_key"
    user: str
    public_key: str


@dataclass(frozen=True)
class RemoveUserKey(Command):
    """Withdraw a key: `key` is its fingerprint (`SHA256:...`) or its comment."""

    op = "remove_user_key"
    user: str
    key: str
