"""A hypothesis state machine: random sequences of commands, refused ones included, leave
`dispatch check` clean after every step, and a refused command changes nothing."""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path

import pendulum
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from sqlalchemy import create_engine

from app.db.engine import make_engine, read_connection, upgrade
from app.sync import commands as c
from app.sync.check import violations
from app.sync.coordinator import Coordinator
from app.sync.errors import DispatchError
from tests.conftest import PG_ENV, Clock, _empty_pg
from tests.unit.test_bad_input import dump

ORDERS = ["SO-1", "WO-2", "MSO-3"]
LINES = [10, 20]
ENGINEERS = ["E001", "E002", "E003", "E004", "E900", "E777"]
CONTACTS = ["C100", "C101", "C200", "C999"]
BASE = pendulum.datetime(2026, 12, 7, 7, tz="UTC")
DISPATCHER = c.Actor.dispatcher("fuzz")
ACTORS = st.sampled_from([
    DISPATCHER, DISPATCHER, DISPATCHER,
    c.Actor("mario", c.Role.TECHNICIAN, "E001"),
    c.Actor("sam", c.Role.SUPERVISOR),
])


@functools.cache
def template() -> Path:
    path = Path(tempfile.mkdtemp(prefix="dispatch-sm-")) / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


def slot(i: int) -> pendulum.DateTime:
    return BASE.add(hours=3 * i)


dates = st.tuples(st.integers(0, 12), st.integers(-1, 3)).map(
    lambda t: (slot(t[0]), slot(t[0]).add(hours=t[1])))
refs = st.tuples(st.sampled_from(ORDERS), st.sampled_from(LINES), st.integers(1, 4))


class Dispatching(RuleBasedStateMachine):
    backend = "sqlite"
    pg_url: str | None = None

    def __init__(self) -> None:
        super().__init__()
        if self.backend == "sqlite":
            folder = Path(tempfile.mkdtemp(prefix="dispatch-sm-run-"))
            shutil.copy(template(), folder / "d.db")
            self.folder: Path | None = folder
            url = f"sqlite:///{folder / 'd.db'}"
        else:
            assert self.pg_url
            self.folder = None
            url = self.pg_url
            plain = create_engine(url)
            _empty_pg(plain)
            plain.dispose()
        self.engine = make_engine(url)
        self.clock = Clock()
        self.coord = Coordinator(self.engine, clock=self.clock)
        self.coord.execute_many([
            c.UpsertEmployee("E900", "Paola Neri", "paola@example.com"),
            c.UpsertEmployee("E001", "Mario Rossi", "mario@example.com", engineer=True),
            c.UpsertEmployee("E002", "Luigi Verdi", "luigi@example.com", engineer=True),
            c.UpsertEmployee("E003", "Giorgio Neri", "giorgio@example.com", engineer=True),
            c.UpsertEmployee("E004", "Franca Gialli", None, engineer=True),
            c.UpsertPartner("BP100", "Acme"), c.UpsertPartner("BP200", "Beta"),
            c.UpsertContact("BP100", "C100", "Anna", "anna@acme.example"),
            c.UpsertContact("BP100", "C101", "Bruno", None),
            c.UpsertContact("BP200", "C200", "Carla", "carla@beta.example"),
            c.SetParameters(create_crm_appointments=True, organizer="E900",
                            include_sold_to_contact=True),
            # One planned order from the start, so that most steps have something to change.
            c.CreateOrder("SO-1", "service_order", "BP100", "BP100", "Via Roma 1", slot(0),
                          slot(8), contact="C100", activities=tuple(
                              c.ActivitySpec(line, f"Job {line}", slot(i), slot(i).add(hours=2),
                                             ("E001", "E002")) for i, line in enumerate(LINES))),
            c.GenerateAssignments("SO-1"),
        ], DISPATCHER)

    def teardown(self) -> None:
        self.engine.dispose()
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def apply(self, command: c.Command, actor: c.Actor = DISPATCHER) -> None:
        self.clock.tick(minutes=7)
        before = dump(self.engine)
        try:
            self.coord.execute(command, actor)
        except DispatchError:
            assert dump(self.engine) == before, f"refused {command} left a trace"

    @rule(number=st.sampled_from(ORDERS), kind=st.sampled_from(
        ["service_order", "work_order", "maintenance_sales_order"]),
        engineers=st.lists(st.sampled_from(ENGINEERS[:4]), max_size=3),
        contact=st.sampled_from(CONTACTS), when=dates)
    def create_order(self, number: str, kind: str, engineers: list[str], contact: str,
                     when: tuple) -> None:
        acts = tuple(c.ActivitySpec(line, f"Job {line}", when[0], when[1], tuple(engineers))
                     for line in LINES)
        self.apply(c.CreateOrder(number, kind, "BP100", "BP100", "Via Roma 1", when[0],
                                 when[1].add(days=2), contact=contact, activities=acts))

    @rule(number=st.sampled_from(ORDERS))
    def generate(self, number: str) -> None:
        self.apply(c.GenerateAssignments(number))

    @rule(ref=refs, engineer=st.sampled_from(ENGINEERS), when=dates)
    def create_assignment(self, ref: tuple, engineer: str, when: tuple) -> None:
        self.apply(c.CreateAssignment(ref[0], ref[1], engineer, *when))

    @rule(ref=refs, when=dates)
    def move(self, ref: tuple, when: tuple) -> None:
        self.apply(c.MoveAssignment(*ref, *when))

    @rule(ref=refs, engineer=st.sampled_from(ENGINEERS))
    def reassign(self, ref: tuple, engineer: str) -> None:
        self.apply(c.Reassign(*ref, engineer))

    @rule(ref=refs, status=st.sampled_from(
        ["Assigned", "Accepted", "Started", "Completed", "Rejected"]), actor=ACTORS)
    def set_status(self, ref: tuple, status: str, actor: c.Actor) -> None:
        self.apply(c.SetAssignmentStatus(*ref, status), actor)

    @rule(ref=refs)
    def delete(self, ref: tuple) -> None:
        self.apply(c.DeleteAssignment(*ref))

    @rule(number=st.sampled_from(ORDERS), address=st.sampled_from(["Via Dante 2", "Corso 9"]),
          contact=st.sampled_from(CONTACTS + [None]),
          sold_to=st.sampled_from(["BP100", "BP200", None]))
    def header(self, number: str, address: str, contact: str | None,
               sold_to: str | None) -> None:
        self.apply(c.UpdateOrder(number, address=address, contact=contact, sold_to=sold_to))

    @rule(number=st.sampled_from(ORDERS), status=st.sampled_from(
        ["Free", "Planned", "Released", "Completed", "Costed", "Closed", "Canceled"]))
    def order_status(self, number: str, status: str) -> None:
        self.apply(c.SetOrderStatus(number, status))

    @rule(number=st.sampled_from(ORDERS), line=st.sampled_from(LINES),
          description=st.sampled_from(["Flush", "Replace", ""]),
          engineers=st.one_of(st.none(), st.lists(st.sampled_from(ENGINEERS), max_size=2)))
    def activity(self, number: str, line: int, description: str,
                 engineers: list[str] | None) -> None:
        self.apply(c.UpdateActivity(number, line, description=description,
                                    engineers=tuple(engineers) if engineers is not None
                                    else None))

    @rule(ap=st.integers(1, 12), when=dates, calendar=st.booleans())
    def calendar_move(self, ap: int, when: tuple, calendar: bool) -> None:
        self.apply(c.CalendarMove(ap, *when), c.Actor.calendar() if calendar else DISPATCHER)

    @rule(ap=st.integers(1, 12), field=st.sampled_from(["subject", "status", "information"]))
    def crm_edit(self, ap: int, field: str) -> None:
        value = {"subject": "Edited", "status": "Held", "information": "note"}[field]
        self.apply(c.EditAppointment(ap, {field: value}))

    @rule(p1=st.booleans(), p3=st.booleans(), p4=st.booleans(),
          organizer=st.sampled_from(["E900", "E001", "E004", None]))
    def parameters(self, p1: bool, p3: bool, p4: bool, organizer: str | None) -> None:
        self.apply(c.SetParameters(create_crm_appointments=p1, organizer=organizer,
                                   include_sold_to_contact=p3,
                                   update_assignments_from_appointment_dates=p4))

    @rule(code=st.sampled_from(ENGINEERS[:4]), name=st.sampled_from(["Renamed", "Mario Rossi"]),
          email=st.sampled_from([None, "x@example.com"]))
    def employee(self, code: str, name: str, email: str | None) -> None:
        self.apply(c.UpsertEmployee(code, name, email, engineer=True))

    @invariant()
    def check_is_clean(self) -> None:
        with read_connection(self.engine) as conn:
            found = list(violations(conn))
        assert found == []


Dispatching.TestCase.settings = settings(
    max_examples=int(os.environ.get("DISPATCH_SM_EXAMPLES", "30")), stateful_step_count=25,
    deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None,
)
test_random_command_sequences_keep_check_clean = Dispatching.TestCase


if os.environ.get(PG_ENV):
    class DispatchingPostgres(Dispatching):
        backend = "postgres"

    def test_random_command_sequences_keep_check_clean_on_postgres(pg_url: str) -> None:
        from hypothesis.stateful import run_state_machine_as_test

        DispatchingPostgres.pg_url = pg_url
        run_state_machine_as_test(DispatchingPostgres, settings=settings(
            max_examples=10, stateful_step_count=20, deadline=None, database=None,
            suppress_health_check=[HealthCheck.too_slow]))
