"""Section 5 of the engine issue: every bad input is refused with a clear message, and the
database is exactly as it was (each command is one transaction)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import Engine, select

from app.db.base import Base
from app.db.engine import read_connection
from app.sync import commands as c
from app.sync.coordinator import Coordinator
from app.sync.errors import Conflict, DispatchError, Invalid, NotFound, Refused
from tests.conftest import DISPATCHER, at, order_cmd


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table: the strongest meaning of "unchanged"."""
    with read_connection(engine) as conn:
        return {
            t.name: sorted(tuple(map(repr, r)) for r in conn.execute(select(t)))
            for t in Base.metadata.sorted_tables
        }


@pytest.fixture
def planned(world: Coordinator) -> Coordinator:
    world.execute_many([order_cmd(), c.GenerateAssignments("SO-1001")], DISPATCHER)
    return world


def refused(coord: Coordinator, engine: Engine, command: c.Command | list[c.Command],
            error: type[DispatchError], match: str, actor: c.Actor = DISPATCHER) -> None:
    before = dump(engine)
    commands = command if isinstance(command, list) else [command]
    with pytest.raises(error, match=match):
        coord.execute_many(commands, actor)
    assert dump(engine) == before


CASES: list[tuple[str, Any, type[DispatchError], str]] = [
    ("unknown order", c.MoveAssignment("SO-9", 10, 1, at("2026-12-07 08:00"),
                                       at("2026-12-07 09:00")), NotFound,
     "order 'SO-9' does not exist"),
    ("unknown line", c.CreateAssignment("SO-1001", 99, "E001"), NotFound,
     "order SO-1001 has no activity line 99"),
    ("unknown assignment", c.SetAssignmentStatus("SO-1001", 10, 7, "Accepted"), NotFound,
     "assignment SO-1001/10/7 does not exist"),
    ("unknown engineer", c.Reassign("SO-1001", 10, 1, "E777"), NotFound,
     "employee 'E777' does not exist"),
    ("not an engineer", c.Reassign("SO-1001", 10, 1, "E900"), Refused,
     "E900 .* is not an engineer"),
    ("unknown contact", c.UpdateOrder("SO-1001", contact="C999"), NotFound,
     "contact 'C999' does not exist"),
    ("contact of another partner", c.UpdateOrder("SO-1001", contact="C200"), Refused,
     "contact C200 belongs to BP200, not to the sold-to BP100"),
    ("end before start", c.MoveAssignment("SO-1001", 10, 1, at("2026-12-07 10:00"),
                                          at("2026-12-07 09:00")), Invalid,
     "planned_end .* must be after planned_start"),
    ("end equals start", c.MoveAssignment("SO-1001", 10, 1, at("2026-12-07 10:00"),
                                          at("2026-12-07 10:00")), Invalid, "must be after"),
    ("naive date", c.MoveAssignment("SO-1001", 10, 1, dt.datetime(2026, 12, 7, 8),
                                    dt.datetime(2026, 12, 7, 9)), Invalid,
     "planned_start has no time zone offset"),
    ("far future", c.MoveAssignment("SO-1001", 10, 1, at("2026-12-07 08:00"),
                                    at("2026-12-07 09:00").replace(year=2999)), Invalid,
     "planned_end 2999 is outside 1970-2200"),
    ("status not allowed", [c.SetAssignmentStatus("SO-1001", 10, 1, "Started"),
                            c.SetAssignmentStatus("SO-1001", 10, 1, "Accepted")], Refused,
     "assignment SO-1001/10/1 cannot go from Started to Accepted"),
    ("unknown status", c.SetAssignmentStatus("SO-1001", 10, 1, "Done"), Invalid,
     "status 'Done' is not one of"),
    ("order status backwards", [c.SetOrderStatus("SO-1001", "Canceled"),
                                c.SetOrderStatus("SO-1001", "Free")], Refused,
     "cannot go from Canceled to Free"),
    ("P2 without e-mail", c.SetParameters(organizer="E901"), Refused, "has no e-mail"),
    ("P4 while P1 off", c.SetParameters(create_crm_appointments=False,
                                        update_assignments_from_appointment_dates=True),
     Refused, "P4 .* needs P1"),
    ("over-long text", c.UpdateOrder("SO-1001", address="x" * 201), Invalid,
     "address is 201 characters long; at most 200"),
    ("empty text", c.UpdateActivity("SO-1001", 10, description="   "), Invalid,
     "description must not be empty"),
    ("control characters", c.UpsertPartner("BP300", "Evil\x1b[2J Corp"), Invalid,
     "name contains control characters"),
    ("wrong type", c.CreateAssignment("SO-1001", 10, 42), Invalid, "engineer must be text"),
    ("duplicate order", order_cmd(), Refused, "order SO-1001 exists already"),
    ("stale version", c.MoveAssignment("SO-1001", 10, 1, at("2026-12-08 08:00"),
                                       at("2026-12-08 09:00"), version=7), Conflict,
     r"assignment SO-1001/10/1 was changed by someone else \(version 1, you had 7\)"),
    ("frozen order", [c.SetOrderStatus("SO-1001", "Canceled"),
                      c.CreateAssignment("SO-1001", 10, "E003")], Refused,
     "order SO-1001 is Canceled: its planning can no longer change"),
    ("bad e-mail", c.UpsertEmployee("E050", "No Mail", "not-an-address"), Invalid,
     "email 'not-an-address' is not an e-mail address"),
    ("unknown kind", c.CreateOrder("X-1", "repair", "BP100", "BP100", "Via", at(
        "2026-12-07 08:00"), at("2026-12-07 09:00")), Invalid, "kind 'repair' is not one of"),
]


@pytest.mark.parametrize("name,command,error,match", CASES, ids=[x[0] for x in CASES])
def test_bad_input_is_refused_and_nothing_changes(
        planned: Coordinator, engine: Engine, name: str, command: Any,
        error: type[DispatchError], match: str) -> None:
    refused(planned, engine, command, error, match)


def test_a_refused_command_rolls_back_the_whole_batch(planned: Coordinator,
                                                     engine: Engine) -> None:
    """The first two commands are fine; the third fails; none of them is kept."""
    refused(planned, engine, [
        c.MoveAssignment("SO-1001", 10, 1, at("2026-12-08 08:00"), at("2026-12-08 09:00")),
        c.Reassign("SO-1001", 10, 2, "E003"),
        c.Reassign("SO-1001", 10, 2, "E777"),
    ], NotFound, "E777")


def test_supervisor_may_change_nothing(planned: Coordinator, engine: Engine) -> None:
    boss = c.Actor("sam", c.Role.SUPERVISOR)
    refused(planned, engine, c.SetAssignmentStatus("SO-1001", 10, 1, "Accepted"), Refused,
            "sam: a supervisor's console is read-only", actor=boss)
    refused(planned, engine, c.UpdateOrder("SO-1001", address="Elsewhere"), Refused,
            "read-only", actor=boss)


def test_technician_may_change_only_the_status_of_their_own(planned: Coordinator,
                                                           engine: Engine) -> None:
    mario = c.Actor("mario", c.Role.TECHNICIAN, "E001")
    refused(planned, engine, c.SetAssignmentStatus("SO-1001", 10, 2, "Completed"), Refused,
            "mario may change only their own assignments; SO-1001/10/2 is E002's", actor=mario)
    refused(planned, engine, c.MoveAssignment("SO-1001", 10, 1, at("2026-12-08 08:00"),
                                              at("2026-12-08 09:00")), Refused,
            "a technician may only change the status", actor=mario)
    change = planned.execute(c.SetAssignmentStatus("SO-1001", 10, 1, "Completed"), mario)
    assert change.summary.startswith("SO-1001/10/1 is Completed")
    refused(planned, engine, c.SetAssignmentStatus("SO-1001", 10, 1, "Started"), Refused,
            "only a dispatcher may take SO-1001/10/1 from Completed back", actor=mario)
