"""The mirror: a pure function from an assignment and its surroundings to the desired appointment.

No database, no clock: the coordinator loads the inputs, calls `desired_appointment`, diffs the
result against what is stored (`diff_fields`, compare participants/references/link) and writes
only the difference. `dispatch check` calls the same function, so "in step" has one meaning.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from app.db.models import (
    AppointmentStatus,
    AssignmentStatus,
    Attendance,
    OrderKind,
    ParticipantType,
    ShowTimeAs,
)

LATEST_CHANGES = 5
SUBJECT_MAX = 300


@dataclass(frozen=True, slots=True)
class Person:
    code: str
    name: str
    email: str | None


@dataclass(frozen=True, slots=True)
class OrderData:
    id: int
    number: str
    kind: str
    sold_to: str
    sold_to_name: str
    ship_to: str
    ship_to_name: str
    contact: Person | None
    address: str
    planned_end: dt.datetime


@dataclass(frozen=True, slots=True)
class ActivityData:
    id: int
    line: int
    description: str


@dataclass(frozen=True, slots=True)
class AssignmentData:
    id: int
    number: int
    engineer: Person
    planned_start: dt.datetime
    planned_end: dt.datetime
    status: str


@dataclass(frozen=True, slots=True)
class StoredDates:
    """What the stored appointment says about its dates (R10)."""

    start: dt.datetime
    end: dt.datetime
    mirrored_start: dt.datetime
    mirrored_end: dt.datetime


class ParticipantRow(NamedTuple):
    seq: int
    type: str
    code: str
    name: str
    attendance: str
    email: str | None


class ReferenceRow(NamedTuple):
    sequence: int
    type: str
    note: str


class LinkRow(NamedTuple):
    assignment_id: int
    order_kind: str
    order_number: str
    line: int
    assignment_number: int


@dataclass(frozen=True, slots=True)
class Desired:
    fields: dict[str, object]
    participants: tuple[ParticipantRow, ...]
    references: tuple[ReferenceRow, ...]
    link: LinkRow


MIRRORED_FIELDS = (
    "subject",
    "location",
    "status",
    "start",
    "end",
    "due_date",
    "show_time_as",
    "information",
    "business_partner",
)
"""Appointment fields that the service side owns (R9): the CRM side may not edit them."""


_STATUS = {
    AssignmentStatus.COMPLETED.value: AppointmentStatus.HELD.value,
    AssignmentStatus.REJECTED.value: AppointmentStatus.NOT_HELD.value,
}


def appointment_status(assignment_status: str) -> str:
    """R13 and our choice for the rest: Completed is Held, Rejected is Not Held, else Planned."""
    return _STATUS.get(assignment_status, AppointmentStatus.PLANNED.value)


def subject(order: OrderData, activity: ActivityData) -> str:
    """R2: order, line and activity description."""
    return f"{order.number} / {activity.line}: {activity.description}"[:SUBJECT_MAX]


@functools.lru_cache(maxsize=4096)
def _stamp(at: dt.datetime) -> str:
    """Dated in UTC: the text is shared by everyone, whatever zone they read it in. Cached: a
    fan-out formats the same few change dates for every activity of an order."""
    return f"{at:%Y-%m-%d %H:%M}"


def information(
    order: OrderData,
    activity: ActivityData,
    changes: Sequence[tuple[dt.datetime, str]],
) -> str:
    """R12: the header and activity data, then a short dated list of the latest changes."""
    lines = [
        f"{OrderKind(order.kind).label} {order.number}",
        f"Sold-to: {order.sold_to} {order.sold_to_name}",
        f"Ship-to: {order.ship_to} {order.ship_to_name}",
        f"Contact: {order.contact.code} {order.contact.name}" if order.contact else "Contact: -",
        f"Address: {order.address}",
        f"Activity {activity.line}: {activity.description}",
    ]
    latest = list(changes)[-LATEST_CHANGES:]
    if latest:
        lines.append("Latest changes:")
        for at, text in reversed(latest):
            lines.append(f"- {_stamp(at)} UTC {text}")
    return "\n".join(lines)


# Plain strings, looked up once: enum attribute access is slow in a loop of thousands.
_EMPLOYEE = ParticipantType.EMPLOYEE.value
_CONTACT = ParticipantType.CONTACT.value
_ORGANIZER = Attendance.MEETING_ORGANIZER.value
_REQUIRED = Attendance.REQUIRED_ATTENDEE.value
_OPTIONAL = Attendance.OPTIONAL_ATTENDEE.value
_BUSY = ShowTimeAs.BUSY.value


def participants(
    organizer: Person,
    engineer: Person,
    co_engineers: Sequence[Person],
    contact: Person | None,
) -> tuple[ParticipantRow, ...]:
    """R3, R4, R5: organizer, engineer, co-engineers without e-mail, and the sold-to contact.

    `co_engineers` must be sorted by code (the loader sorts each activity's list once).
    """
    rows = [ParticipantRow(1, _EMPLOYEE, organizer.code, organizer.name, _ORGANIZER,
                           organizer.email)]
    if engineer.code != organizer.code:
        # R3: when the engineer is the organizer there is one participant record only.
        rows.append(ParticipantRow(2, _EMPLOYEE, engineer.code, engineer.name, _REQUIRED,
                                   engineer.email))
    for co in co_engineers:
        if co.code == organizer.code or co.code == engineer.code:
            continue
        # R4: no e-mail on purpose, so the visit does not show twice in their calendar.
        rows.append(ParticipantRow(len(rows) + 1, _EMPLOYEE, co.code, co.name, _REQUIRED, None))
    if contact is not None:
        rows.append(ParticipantRow(len(rows) + 1, _CONTACT, contact.code, contact.name,
                                   _OPTIONAL, contact.email))
    return tuple(rows)


def references(order: OrderData, activity: ActivityData, number: int) -> tuple[ReferenceRow, ...]:
    """R6: order number, activity line and assignment number as Type / Sequence / Note."""
    return (
        ReferenceRow(1, "Order", order.number),
        ReferenceRow(2, "Activity line", str(activity.line)),
        ReferenceRow(3, "Assignment", str(number)),
    )


def activity_fields(order: OrderData, activity: ActivityData, info: str) -> dict[str, object]:
    """The fields every appointment of one activity shares: what R12's fan-outs rewrite."""
    return {
        "subject": subject(order, activity),
        "location": order.address,
        "due_date": order.planned_end,  # R8
        "information": info,
        "business_partner": order.sold_to,
    }


def desired_appointment(
    *,
    order: OrderData,
    activity: ActivityData,
    assignment: AssignmentData,
    co_engineers: Sequence[Person],
    organizer: Person,
    with_contact: bool,
    changes: Sequence[tuple[dt.datetime, str]],
    stored: StoredDates | None,
    info: str | None = None,
    with_participants: bool = True,
) -> Desired:
    """The appointment that `assignment` should have, given what is stored about its dates.

    R10: when the assignment's planned dates differ from the dates the appointment last took
    from it, they overwrite the appointment's dates; otherwise the stored dates stand, so a move
    by the organizer (R15) survives any other change. `info` lets a fan-out pass the Information
    text it computed once per activity; a fan-out that cannot change participants skips them
    (`with_participants=False`, the result then has none and must not be compared on them).
    """
    planned = (assignment.planned_start, assignment.planned_end)
    if stored is None or (stored.mirrored_start, stored.mirrored_end) != planned:
        start, end = planned
    else:
        start, end = stored.start, stored.end
    fields: dict[str, object] = {
        "assignment_id": assignment.id,
        "origin_order": order.number,
        "origin_line": activity.line,
        "origin_assignment": assignment.number,
        **activity_fields(order, activity, info if info is not None
                          else information(order, activity, changes)),
        "status": appointment_status(assignment.status),
        "start": start,
        "end": end,
        "show_time_as": _BUSY,
        "organizer_code": organizer.code,
        "with_contact": with_contact,
        "mirrored_start": planned[0],
        "mirrored_end": planned[1],
    }
    contact = order.contact if with_contact else None
    return Desired(
        fields=fields,
        participants=participants(organizer, assignment.engineer, co_engineers, contact)
        if with_participants else (),
        references=references(order, activity, assignment.number),
        link=LinkRow(assignment.id, order.kind, order.number, activity.line, assignment.number),
    )


def diff_fields(desired: dict[str, object], stored: dict[str, object]) -> dict[str, object]:
    """The fields whose stored value differs from the desired one."""
    return {k: v for k, v in desired.items() if stored.get(k) != v}
