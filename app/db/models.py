"""Every object of DOMAIN.md as a typed SQLAlchemy 2 model.

Enumerations are stored as the words of DOMAIN.md (readable in any SQL client) and guarded by
CHECK constraints. Instants use `UTCDateTime`. Orders, activities, assignments and appointments
carry a `version` column for optimistic locking.
"""

from __future__ import annotations

from enum import StrEnum
from typing import cast

import pendulum
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base
from app.db.types import UTCDateTime


class OrderKind(StrEnum):
    SERVICE_ORDER = "service_order"
    WORK_ORDER = "work_order"
    MAINTENANCE_SALES_ORDER = "maintenance_sales_order"

    @property
    def label(self) -> str:
        return {
            "service_order": "Service order",
            "work_order": "Work order",
            "maintenance_sales_order": "Maintenance sales order",
        }[self.value]


class OrderStatus(StrEnum):
    FREE = "Free"
    PLANNED = "Planned"
    RELEASED = "Released"
    COMPLETED = "Completed"
    COSTED = "Costed"
    CLOSED = "Closed"
    CANCELED = "Canceled"


class AssignmentStatus(StrEnum):
    ASSIGNED = "Assigned"
    ACCEPTED = "Accepted"
    STARTED = "Started"
    COMPLETED = "Completed"
    REJECTED = "Rejected"


class AppointmentStatus(StrEnum):
    PLANNED = "Planned"
    HELD = "Held"
    NOT_HELD = "Not Held"


class ShowTimeAs(StrEnum):
    FREE = "Free"
    TENTATIVE = "Tentative"
    BUSY = "Busy"
    OUT_OF_OFFICE = "Out of Office"


class ParticipantType(StrEnum):
    EMPLOYEE = "Employee"
    CONTACT = "Contact"


class Attendance(StrEnum):
    MEETING_ORGANIZER = "Meeting Organizer"
    REQUIRED_ATTENDEE = "Required Attendee"
    OPTIONAL_ATTENDEE = "Optional Attendee"


class Role(StrEnum):
    DISPATCHER = "dispatcher"
    TECHNICIAN = "technician"
    SUPERVISOR = "supervisor"
    CALENDAR = "calendar"  # the organizer's calendar (R15), a system actor, never a login


def _in(column: str, enum: type[StrEnum]) -> str:
    words = ", ".join("'" + m.value.replace("'", "''") + "'" for m in enum)
    return f"{column} IN ({words})"


class Employee(Base):
    __tablename__ = "employees"

    code: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    email: Mapped[str | None] = mapped_column(String(120))
    is_engineer: Mapped[bool] = mapped_column(Boolean, default=False)


class Partner(Base):
    """A business partner (sold-to or ship-to of orders)."""

    __tablename__ = "partners"

    code: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))


class Contact(Base):
    __tablename__ = "contacts"

    code: Mapped[str] = mapped_column(String(20), primary_key=True)
    partner_code: Mapped[str] = mapped_column(ForeignKey("partners.code"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    email: Mapped[str | None] = mapped_column(String(120))
    phone: Mapped[str | None] = mapped_column(String(40))


class Parameters(Base):
    """The single "resource management parameters" record (P1-P4); always id 1."""

    __tablename__ = "parameters"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    create_crm_appointments: Mapped[bool] = mapped_column(Boolean, default=False)  # P1
    organizer_code: Mapped[str | None] = mapped_column(ForeignKey("employees.code"))  # P2
    include_sold_to_contact: Mapped[bool] = mapped_column(Boolean, default=False)  # P3
    update_assignments_from_appointment_dates: Mapped[bool] = mapped_column(  # P4
        Boolean, default=False
    )
    version: Mapped[int] = mapped_column(Integer, default=1)


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(_in("kind", OrderKind), name="kind"),
        CheckConstraint(_in("status", OrderStatus), name="status"),
        CheckConstraint("planned_end > planned_start", name="dates"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(30), unique=True)
    kind: Mapped[str] = mapped_column(String(30))
    sold_to: Mapped[str] = mapped_column(ForeignKey("partners.code"))
    ship_to: Mapped[str] = mapped_column(ForeignKey("partners.code"))
    contact: Mapped[str | None] = mapped_column(ForeignKey("contacts.code"))
    address: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default=OrderStatus.FREE.value)
    planned_start: Mapped[pendulum.DateTime] = mapped_column(UTCDateTime())
    planned_end: Mapped[pendulum.DateTime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class Activity(Base):
    """An order activity (order + line)."""

    __tablename__ = "activities"
    __table_args__ = (
        UniqueConstraint("order_id", "line"),
        CheckConstraint("planned_end > planned_start", name="dates"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    line: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(200))
    planned_start: Mapped[pendulum.DateTime] = mapped_column(UTCDateTime())
    planned_end: Mapped[pendulum.DateTime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class PlannedEngineer(Base):
    """An engineer planned on an activity; `generate_assignments` turns these into assignments."""

    __tablename__ = "planned_engineers"

    activity_id: Mapped[int] = mapped_column(
        ForeignKey("activities.id", ondelete="CASCADE"), primary_key=True
    )
    employee_code: Mapped[str] = mapped_column(ForeignKey("employees.code"), primary_key=True)


class Assignment(Base):
    """A service assignment (order + line + assignment number)."""

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("activity_id", "number"),
        CheckConstraint(_in("status", AssignmentStatus), name="status"),
        CheckConstraint("planned_end > planned_start", name="dates"),
        Index("ix_assignments_start_id", "planned_start", "id"),
        Index("ix_assignments_employee_start", "employee_code", "planned_start"),
        Index("ix_assignments_status_start", "status", "planned_start", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    activity_id: Mapped[int] = mapped_column(ForeignKey("activities.id"))
    number: Mapped[int] = mapped_column(Integer)
    employee_code: Mapped[str] = mapped_column(ForeignKey("employees.code"))
    planned_start: Mapped[pendulum.DateTime] = mapped_column(UTCDateTime())
    planned_end: Mapped[pendulum.DateTime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(20), default=AssignmentStatus.ASSIGNED.value)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class Appointment(Base):
    """A CRM activity of type Appointment.

    `assignment_id` is the origin while the assignment lives; an appointment kept as history
    (R14) loses it but keeps `origin_*`. `mirrored_start`/`mirrored_end` are the dates it last
    took from the assignment (R10): while the assignment still has them, the organizer's moves
    (R15) stand. `organizer_code` and `with_contact` are taken from P2/P3 when it is created.
    """

    __tablename__ = "appointments"
    __table_args__ = (
        CheckConstraint(_in("status", AppointmentStatus), name="status"),
        CheckConstraint(_in("show_time_as", ShowTimeAs), name="show_time_as"),
        CheckConstraint('"end" > start', name="dates"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assignment_id: Mapped[int | None] = mapped_column(
        ForeignKey("assignments.id", ondelete="SET NULL"), unique=True
    )
    origin_order: Mapped[str] = mapped_column(String(30), index=True)
    origin_line: Mapped[int] = mapped_column(Integer)
    origin_assignment: Mapped[int] = mapped_column(Integer)
    subject: Mapped[str] = mapped_column(String(300))
    location: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))
    start: Mapped[pendulum.DateTime] = mapped_column(UTCDateTime())
    end: Mapped[pendulum.DateTime] = mapped_column(UTCDateTime())
    due_date: Mapped[pendulum.DateTime] = mapped_column(UTCDateTime())
    show_time_as: Mapped[str] = mapped_column(String(20))
    information: Mapped[str] = mapped_column(Text)
    business_partner: Mapped[str] = mapped_column(ForeignKey("partners.code"))
    organizer_code: Mapped[str] = mapped_column(ForeignKey("employees.code"))
    with_contact: Mapped[bool] = mapped_column(Boolean, default=False)
    mirrored_start: Mapped[pendulum.DateTime] = mapped_column(UTCDateTime())
    mirrored_end: Mapped[pendulum.DateTime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class Participant(Base):
    __tablename__ = "participants"
    __table_args__ = (
        CheckConstraint(_in("type", ParticipantType), name="type"),
        CheckConstraint(_in("attendance", Attendance), name="attendance"),
    )

    appointment_id: Mapped[int] = mapped_column(
        ForeignKey("appointments.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    type: Mapped[str] = mapped_column(String(10))
    code: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(120))
    attendance: Mapped[str] = mapped_column(String(20))
    email: Mapped[str | None] = mapped_column(String(120))


class Reference(Base):
    __tablename__ = "appointment_references"

    appointment_id: Mapped[int] = mapped_column(
        ForeignKey("appointments.id", ondelete="CASCADE"), primary_key=True
    )
    sequence: Mapped[int] = mapped_column(Integer, primary_key=True)
    type: Mapped[str] = mapped_column(String(30))
    note: Mapped[str] = mapped_column(String(60))


class RelatedOrder(Base):
    """The related-order link (R7): browsable from the appointment and from the assignment."""

    __tablename__ = "related_orders"

    appointment_id: Mapped[int] = mapped_column(
        ForeignKey("appointments.id", ondelete="CASCADE"), primary_key=True
    )
    assignment_id: Mapped[int | None] = mapped_column(
        ForeignKey("assignments.id", ondelete="SET NULL"), unique=True
    )
    order_kind: Mapped[str] = mapped_column(String(30))
    order_number: Mapped[str] = mapped_column(String(30))
    line: Mapped[int] = mapped_column(Integer)
    assignment_number: Mapped[int] = mapped_column(Integer)


class OrderChange(Base):
    """A dated note of an order header or activity change, shown in Information (R12)."""

    __tablename__ = "order_changes"
    __table_args__ = (Index("ix_order_changes_order_id_id", "order_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    activity_id: Mapped[int | None] = mapped_column(
        ForeignKey("activities.id", ondelete="CASCADE")
    )
    at: Mapped[pendulum.DateTime] = mapped_column(UTCDateTime())
    text: Mapped[str] = mapped_column(String(300))


class JournalEntry(Base):
    """The change journal: one row per touched object, appended in the command's transaction."""

    __tablename__ = "journal"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[pendulum.DateTime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(60))
    op: Mapped[str] = mapped_column(String(40))
    order_number: Mapped[str | None] = mapped_column(String(30))
    assignment: Mapped[str | None] = mapped_column(String(60))
    appointment_id: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str] = mapped_column(Text)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_in("role", Role), name="role"),)

    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    role: Mapped[str] = mapped_column(String(20))
    employee_code: Mapped[str | None] = mapped_column(ForeignKey("employees.code"))


# ---- the calendar side (app/calendar): sync state, never domain data ---------------------


class CalendarSettings(Base):
    """Where the calendar server is (single row, id 1). The password is never stored: it is read
    from the environment variable or the file named here."""

    __tablename__ = "calendar_settings"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    server_url: Mapped[str] = mapped_column(String(300))
    username: Mapped[str | None] = mapped_column(String(120))
    password_env: Mapped[str | None] = mapped_column(String(120))
    password_file: Mapped[str | None] = mapped_column(String(500))
    tzid: Mapped[str] = mapped_column(String(60))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class CalendarCollection(Base):
    """A calendar collection we write to: the organizer's (pulled, R15) or an engineer's (R16)."""

    __tablename__ = "calendar_collections"
    __table_args__ = (
        CheckConstraint("kind IN ('organizer', 'engineer')", name="kind"),
        UniqueConstraint("kind", "employee_code"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))
    employee_code: Mapped[str | None] = mapped_column(String(20))
    url: Mapped[str] = mapped_column(String(500), unique=True)
    sync_token: Mapped[str | None] = mapped_column(Text)
    last_pull_at: Mapped[pendulum.DateTime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)


class CalendarItem(Base):
    """An appointment's calendar identity: its UID (random, never reused) and our SEQUENCE.

    Keyed by UID, not by appointment: when the appointment is deleted `appointment_id` becomes
    NULL and the row lives on until the events are deleted from the server."""

    __tablename__ = "calendar_items"

    uid: Mapped[str] = mapped_column(String(80), primary_key=True)
    appointment_id: Mapped[int | None] = mapped_column(Integer, unique=True)
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    significant_hash: Mapped[str | None] = mapped_column(String(64))


class CalendarEvent(Base):
    """One stored calendar object: where it is, its ETag, and what we last wrote there."""

    __tablename__ = "calendar_events"
    __table_args__ = (UniqueConstraint("collection_id", "href"),)

    uid: Mapped[str] = mapped_column(
        ForeignKey("calendar_items.uid", ondelete="CASCADE"), primary_key=True
    )
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("calendar_collections.id", ondelete="CASCADE"), primary_key=True
    )
    href: Mapped[str] = mapped_column(String(300))
    etag: Mapped[str | None] = mapped_column(String(200))
    synced_hash: Mapped[str | None] = mapped_column(String(64))
    synced_start: Mapped[pendulum.DateTime | None] = mapped_column(UTCDateTime())
    synced_end: Mapped[pendulum.DateTime | None] = mapped_column(UTCDateTime())
    synced_sequence: Mapped[int | None] = mapped_column(Integer)
    synced_at: Mapped[pendulum.DateTime | None] = mapped_column(UTCDateTime())


class CalendarOutbox(Base):
    """Work for the push: written in the transaction of the appointment change."""

    __tablename__ = "calendar_outbox"
    __table_args__ = (Index("ix_calendar_outbox_uid_id", "uid", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(String(80))
    enqueued_at: Mapped[pendulum.DateTime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[pendulum.DateTime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)



class UserKey(Base):
    """An SSH public key that identifies a user: whoever holds it logs in as them (issue 5).

    A key belongs to at most one user (unique fingerprint), so a key alone says who is logging in.
    """

    __tablename__ = "user_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_name: Mapped[str] = mapped_column(
        ForeignKey("users.name", ondelete="CASCADE"), index=True)
    key_type: Mapped[str] = mapped_column(String(60))
    key_data: Mapped[str] = mapped_column(Text)  # the base64 blob, as in authorized_keys
    comment: Mapped[str] = mapped_column(String(200), default="")
    fingerprint: Mapped[str] = mapped_column(String(60), unique=True)  # "SHA256:..."
    added_at: Mapped[pendulum.DateTime] = mapped_column(UTCDateTime())


def table(model: type[Base]) -> Table:
    """The Core table of a model, typed as such (for set-based statements)."""
    return cast(Table, model.__table__)
