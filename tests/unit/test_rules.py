"""One test per rule of DOMAIN.md (R1-R16) and parameter (P1-P4), named after it.

Each runs on a real SQLite file, and on PostgreSQL too when DISPATCH_TEST_POSTGRES_URL is set.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from app.db import models as m
from app.db import repositories as repo
from app.db.engine import read_connection
from app.sync import commands as c
from app.sync.check import violations
from app.sync.coordinator import Coordinator
from app.sync.errors import Refused
from tests.conftest import DISPATCHER, Clock, at, order_cmd

CALENDAR = c.Actor.calendar()


def assignment(engine: Engine, key: str) -> dict[str, Any]:
    ref = c.AssignmentRef.parse(key)
    with read_connection(engine) as conn:
        row = repo.find_assignment(conn, ref.order, ref.line, ref.assignment)
        assert row is not None, key
        return repo.assignment_json(conn, row)


def appointment(engine: Engine, key: str) -> dict[str, Any]:
    ap = assignment(engine, key)["appointment"]
    assert ap is not None, f"{key} has no appointment"
    return ap


def count(engine: Engine, model: type) -> int:
    with read_connection(engine) as conn:
        return int(conn.scalar(select(func.count()).select_from(model)) or 0)


def clean(engine: Engine) -> None:
    with read_connection(engine) as conn:
        assert list(violations(conn)) == []


def people(ap: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [(p["code"], p["attendance"], p["email"]) for p in ap["participants"]]


def generated(world: Coordinator, **kw: Any) -> Coordinator:
    world.execute_many([order_cmd(**kw), c.GenerateAssignments(kw.get("number", "SO-1001"))],
                       DISPATCHER)
    return world


# ---- creation ---------------------------------------------------------------------------


def test_r1_one_appointment_per_generated_and_manual_assignment(world: Coordinator,
                                                                engine: Engine) -> None:
    change = generated(world).execute(c.CreateAssignment("SO-1001", 10, "E003"), DISPATCHER)
    assert change.assignments[0] == "SO-1001/10/3"
    assert count(engine, m.Assignment) == 3
    assert count(engine, m.Appointment) == 3
    with read_connection(engine) as conn:
        ids = conn.scalars(select(m.Appointment.assignment_id)).all()
    assert len(set(ids)) == 3
    clean(engine)


def test_r1_p1_off_creates_no_appointment(world: Coordinator, engine: Engine) -> None:
    world.execute(c.SetParameters(create_crm_appointments=False), DISPATCHER)
    generated(world)
    assert count(engine, m.Assignment) == 2
    assert count(engine, m.Appointment) == 0
    assert assignment(engine, "SO-1001/10/1")["appointment"] is None
    clean(engine)


def test_r2_appointment_fields_mirror_the_assignment(world: Coordinator, engine: Engine) -> None:
    generated(world)
    ap = appointment(engine, "SO-1001/10/1")
    assert ap["subject"] == "SO-1001 / 10: Replace pump 1"
    assert ap["location"] == "Via Roma 1, 20121 Milano"
    assert ap["status"] == "Planned"
    assert ap["start"] == at("2026-12-07 08:00").in_tz("UTC").isoformat()
    assert ap["end"] == at("2026-12-07 12:00").in_tz("UTC").isoformat()
    assert ap["show_time_as"] == "Busy"
    assert ap["business_partner"]["code"] == "BP100"
    assert ap["organizer"]["code"] == "E900"
    assert "Sold-to: BP100 Acme S.p.A." in ap["information"]
    assert ap["origin"] == {"order": "SO-1001", "line": 10, "assignment": 1, "mirrors": True}


def test_r3_organizer_and_engineer_are_participants(world: Coordinator, engine: Engine) -> None:
    generated(world, engineers=("E001",))
    assert people(appointment(engine, "SO-1001/10/1"))[:2] == [
        ("E900", "Meeting Organizer", "paola.neri@example.com"),
        ("E001", "Required Attendee", "mario.rossi@example.com"),
    ]


def test_r3_engineer_who_is_the_organizer_is_one_participant(world: Coordinator,
                                                            engine: Engine) -> None:
    world.execute_many([
        c.UpsertEmployee("E001", "Mario Rossi", "mario.rossi@example.com", engineer=True),
        c.SetParameters(organizer="E001", include_sold_to_contact=False),
    ], DISPATCHER)
    generated(world, engineers=("E001",))
    assert people(appointment(engine, "SO-1001/10/1")) == [
        ("E001", "Meeting Organizer", "mario.rossi@example.com")]
    clean(engine)


def test_r4_co_engineers_are_participants_without_email(world: Coordinator,
                                                       engine: Engine) -> None:
    generated(world, engineers=("E001", "E002", "E003"))
    p = people(appointment(engine, "SO-1001/10/1"))
    assert ("E002", "Required Attendee", None) in p
    assert ("E003", "Required Attendee", None) in p
    assert ("E001", "Required Attendee", "mario.rossi@example.com") in p


def test_r4_siblings_follow_when_the_engineers_of_an_activity_change(
        world: Coordinator, engine: Engine) -> None:
    generated(world, engineers=("E001", "E002"))
    change = world.execute(c.CreateAssignment("SO-1001", 10, "E003"), DISPATCHER)
    assert len(change.appointments) == 3  # the new one and both siblings
    for key in ("SO-1001/10/1", "SO-1001/10/2"):
        assert ("E003", "Required Attendee", None) in people(appointment(engine, key))
    world.execute(c.DeleteAssignment("SO-1001", 10, 3), DISPATCHER)
    for key in ("SO-1001/10/1", "SO-1001/10/2"):
        assert "E003" not in [p[0] for p in people(appointment(engine, key))]
    clean(engine)


def test_r5_p3_sold_to_contact_is_a_participant(world: Coordinator, engine: Engine) -> None:
    generated(world, engineers=("E001",))
    assert people(appointment(engine, "SO-1001/10/1"))[-1] == (
        "C100", "Optional Attendee", "anna@acme.example")
    world.execute(c.SetParameters(include_sold_to_contact=False), DISPATCHER)
    world.execute(c.CreateAssignment("SO-1001", 10, "E002"), DISPATCHER)
    # P3 is taken when the appointment is created: the new one has no contact.
    assert "C100" not in [p[0] for p in people(appointment(engine, "SO-1001/10/2"))]
    assert "C100" in [p[0] for p in people(appointment(engine, "SO-1001/10/1"))]
    clean(engine)


def test_r6_references_identify_the_assignment(world: Coordinator, engine: Engine) -> None:
    generated(world)
    assert appointment(engine, "SO-1001/10/2")["references"] == [
        {"type": "Order", "sequence": 1, "note": "SO-1001"},
        {"type": "Activity line", "sequence": 2, "note": "10"},
        {"type": "Assignment", "sequence": 3, "note": "2"},
    ]


def test_r7_related_order_link_from_both_ends(world: Coordinator, engine: Engine) -> None:
    generated(world)
    ap = appointment(engine, "SO-1001/10/1")
    assert ap["related_orders"] == [{"kind": "service_order", "order": "SO-1001", "line": 10,
                                     "assignment": 1, "assignment_exists": True}]
    with read_connection(engine) as conn:
        links = conn.execute(select(m.RelatedOrder.__table__)).all()
        by_assignment = {row.assignment_id: row.appointment_id for row in links}
        a = repo.find_assignment(conn, "SO-1001", 10, 1)
    assert a is not None and by_assignment[a["id"]] == ap["id"]


def test_r8_due_date_is_the_orders_planned_end(world: Coordinator, engine: Engine) -> None:
    generated(world)
    assert appointment(engine, "SO-1001/10/1")["due_date"] == at(
        "2026-12-09 18:00").in_tz("UTC").isoformat()
    world.execute(c.UpdateOrder("SO-1001", planned_end=at("2026-12-10 18:00")), DISPATCHER)
    assert appointment(engine, "SO-1001/10/1")["due_date"] == at(
        "2026-12-10 18:00").in_tz("UTC").isoformat()
    clean(engine)


# ---- updates ----------------------------------------------------------------------------


def test_r9_mirrored_fields_refuse_crm_edits(world: Coordinator, engine: Engine) -> None:
    generated(world)
    ap = appointment(engine, "SO-1001/10/1")
    with pytest.raises(Refused, match=r"R9: subject of appointment \d+ mirrors assignment "
                                      r"SO-1001/10/1"):
        world.execute(c.EditAppointment(ap["id"], {"subject": "Coffee"}), DISPATCHER)
    with pytest.raises(Refused, match="R9"):
        world.execute(c.EditAppointment(ap["id"], {"start": at("2026-12-08 08:00")}), DISPATCHER)
    assert appointment(engine, "SO-1001/10/1") == ap


def test_r10_new_planned_dates_overwrite_appointment_dates(world: Coordinator,
                                                          engine: Engine) -> None:
    generated(world)
    ap = appointment(engine, "SO-1001/10/1")
    world.execute(c.CalendarMove(ap["id"], at("2026-12-07 14:00"), at("2026-12-07 16:00")),
                  CALENDAR)
    world.execute(c.MoveAssignment("SO-1001", 10, 1, at("2026-12-08 09:00"),
                                   at("2026-12-08 11:00")), DISPATCHER)
    ap = appointment(engine, "SO-1001/10/1")
    assert ap["start"] == at("2026-12-08 09:00").in_tz("UTC").isoformat()
    assert ap["end"] == at("2026-12-08 11:00").in_tz("UTC").isoformat()
    clean(engine)


def test_r10_other_changes_keep_dates_the_organizer_moved(world: Coordinator,
                                                         engine: Engine) -> None:
    generated(world)
    ap = appointment(engine, "SO-1001/10/1")
    world.execute(c.CalendarMove(ap["id"], at("2026-12-07 14:00"), at("2026-12-07 16:00")),
                  CALENDAR)
    world.execute_many([
        c.UpdateOrder("SO-1001", address="Via Dante 5, Milano", contact="C101"),
        c.UpdateActivity("SO-1001", 10, description="Replace two pumps"),
        c.SetAssignmentStatus("SO-1001", 10, 1, "Accepted"),
        c.CreateAssignment("SO-1001", 10, "E003"),
    ], DISPATCHER)
    ap = appointment(engine, "SO-1001/10/1")
    assert ap["location"] == "Via Dante 5, Milano"
    assert ap["start"] == at("2026-12-07 14:00").in_tz("UTC").isoformat()
    assert ap["end"] == at("2026-12-07 16:00").in_tz("UTC").isoformat()
    assert assignment(engine, "SO-1001/10/1")["planned_start"] == at(
        "2026-12-07 08:00").in_tz("UTC").isoformat()
    clean(engine)


def test_r11_reassign_swaps_engineer_and_siblings_follow(world: Coordinator,
                                                        engine: Engine) -> None:
    generated(world, engineers=("E001", "E002"))
    change = world.execute(c.Reassign("SO-1001", 10, 1, "E003"), DISPATCHER)
    assert change.summary == "Reassigned SO-1001/10/1 to E003; 2 appointments updated"
    p = people(appointment(engine, "SO-1001/10/1"))
    assert ("E003", "Required Attendee", "giorgio.neri@example.com") in p
    assert "E001" not in [x[0] for x in p]
    sibling = people(appointment(engine, "SO-1001/10/2"))
    assert ("E003", "Required Attendee", None) in sibling
    assert "E001" not in [x[0] for x in sibling]
    clean(engine)


def test_r12_header_change_updates_every_appointment_of_the_order(
        world: Coordinator, engine: Engine, clock: Clock) -> None:
    generated(world, engineers=("E001", "E002"), lines=3)
    clock.tick(hours=2)
    change = world.execute(c.UpdateOrder("SO-1001", address="Via Dante 5, Milano"), DISPATCHER)
    assert change.summary.endswith("; 6 appointments updated")
    assert len(change.appointments) == 6
    ap = appointment(engine, "SO-1001/30/2")
    assert ap["location"] == "Via Dante 5, Milano"
    assert "Address: Via Dante 5, Milano" in ap["information"]
    assert "2026-12-03 11:00 UTC address Via Dante 5, Milano" in ap["information"]
    clean(engine)


def test_r12_sold_to_and_contact_change_reach_partner_and_participants(
        world: Coordinator, engine: Engine) -> None:
    generated(world, engineers=("E001",))
    world.execute(c.UpdateOrder("SO-1001", sold_to="BP200", ship_to="BP200", contact="C200"),
                  DISPATCHER)
    ap = appointment(engine, "SO-1001/10/1")
    assert ap["business_partner"]["code"] == "BP200"
    assert people(ap)[-1] == ("C200", "Optional Attendee", "carla@beta.example")
    assert "Ship-to: BP200 Beta S.r.l." in ap["information"]
    clean(engine)


def test_r12_activity_change_updates_that_activitys_appointments_only(
        world: Coordinator, engine: Engine) -> None:
    generated(world, engineers=("E001", "E002"), lines=2)
    change = world.execute(c.UpdateActivity("SO-1001", 20, description="Flush circuit"),
                           DISPATCHER)
    assert change.summary.endswith("; 2 appointments updated")
    assert appointment(engine, "SO-1001/20/1")["subject"] == "SO-1001 / 20: Flush circuit"
    assert "Flush circuit" in appointment(engine, "SO-1001/20/2")["information"]
    assert "Flush circuit" not in appointment(engine, "SO-1001/10/1")["information"]
    clean(engine)


def test_r13_completed_is_held_and_rejected_is_not_held(world: Coordinator,
                                                       engine: Engine) -> None:
    generated(world)
    world.execute(c.SetAssignmentStatus("SO-1001", 10, 1, "Completed"), DISPATCHER)
    world.execute(c.SetAssignmentStatus("SO-1001", 10, 2, "Rejected"), DISPATCHER)
    assert appointment(engine, "SO-1001/10/1")["status"] == "Held"
    assert appointment(engine, "SO-1001/10/2")["status"] == "Not Held"
    world.execute(c.SetAssignmentStatus("SO-1001", 10, 1, "Started"), DISPATCHER)  # reopen
    assert appointment(engine, "SO-1001/10/1")["status"] == "Planned"
    clean(engine)


# ---- deletion ---------------------------------------------------------------------------


def test_r14_delete_removes_the_appointment_of_an_open_order(world: Coordinator,
                                                             engine: Engine) -> None:
    generated(world)
    ap_id = appointment(engine, "SO-1001/10/1")["id"]
    change = world.execute(c.DeleteAssignment("SO-1001", 10, 1), DISPATCHER)
    assert change.deleted_appointments == [ap_id]
    assert count(engine, m.Appointment) == 1
    assert count(engine, m.Participant) == 3  # the sibling's: organizer, engineer, contact
    clean(engine)


@pytest.mark.parametrize("status", ["Completed", "Costed", "Closed"])
def test_r14_delete_keeps_the_appointment_of_a_finished_order(
        world: Coordinator, engine: Engine, status: str) -> None:
    generated(world)
    steps = ["Released", "Completed", "Costed", "Closed"]
    world.execute_many([c.SetOrderStatus("SO-1001", s) for s in steps[: steps.index(status) + 1]],
                       DISPATCHER)
    ap_id = appointment(engine, "SO-1001/10/1")["id"]
    change = world.execute(c.DeleteAssignment("SO-1001", 10, 1), DISPATCHER)
    assert change.deleted_appointments == []
    assert f"appointment {ap_id} kept" in change.summary
    with read_connection(engine) as conn:
        kept = repo.appointment_json(conn, ap_id)
    assert kept is not None and kept["origin"]["mirrors"] is False
    assert kept["related_orders"][0]["assignment_exists"] is False
    clean(engine)


# ---- the calendar side ------------------------------------------------------------------


def test_r15_organizer_move_moves_the_appointment_only_with_p4_off(world: Coordinator,
                                                                  engine: Engine) -> None:
    generated(world)
    ap_id = appointment(engine, "SO-1001/10/1")["id"]
    world.execute(c.CalendarMove(ap_id, at("2026-12-07 14:00"), at("2026-12-07 15:30")),
                  CALENDAR)
    assert appointment(engine, "SO-1001/10/1")["start"] == at(
        "2026-12-07 14:00").in_tz("UTC").isoformat()
    assert assignment(engine, "SO-1001/10/1")["planned_start"] == at(
        "2026-12-07 08:00").in_tz("UTC").isoformat()
    clean(engine)


def test_r15_p4_on_the_assignment_follows_the_organizer(world: Coordinator,
                                                        engine: Engine) -> None:
    world.execute(c.SetParameters(update_assignments_from_appointment_dates=True), DISPATCHER)
    generated(world)
    ap_id = appointment(engine, "SO-1001/10/1")["id"]
    change = world.execute(c.CalendarMove(ap_id, at("2026-12-07 14:00"), at("2026-12-07 15:30")),
                           CALENDAR)
    assert "follows (P4)" in change.summary
    a = assignment(engine, "SO-1001/10/1")
    assert a["planned_start"] == at("2026-12-07 14:00").in_tz("UTC").isoformat()
    assert a["planned_end"] == at("2026-12-07 15:30").in_tz("UTC").isoformat()
    clean(engine)


def test_r15_only_the_calendar_may_move_an_appointment(world: Coordinator,
                                                       engine: Engine) -> None:
    generated(world)
    ap_id = appointment(engine, "SO-1001/10/1")["id"]
    with pytest.raises(Refused, match="R15: only the organizer's calendar"):
        world.execute(c.CalendarMove(ap_id, at("2026-12-07 14:00"), at("2026-12-07 15:00")),
                      DISPATCHER)


def test_r16_an_engineers_schedule_is_their_appointments_with_email(world: Coordinator,
                                                                   engine: Engine) -> None:
    generated(world, engineers=("E001", "E002"), lines=2)
    with read_connection(engine) as conn:
        mine = repo.list_appointments(conn, engineer="E002")
    # E002 is co-engineer (no e-mail) on E001's appointments: those are not in the schedule.
    assert sorted((a["origin_line"], a["origin_assignment"]) for a in mine) == [(10, 2), (20, 2)]


# ---- parameters -------------------------------------------------------------------------


def test_p1_turning_on_does_not_invent_appointments_for_old_assignments(
        world: Coordinator, engine: Engine) -> None:
    world.execute(c.SetParameters(create_crm_appointments=False), DISPATCHER)
    generated(world)
    world.execute(c.SetParameters(create_crm_appointments=True), DISPATCHER)
    world.execute(c.CreateAssignment("SO-1001", 10, "E003"), DISPATCHER)
    assert count(engine, m.Appointment) == 1
    clean(engine)


def test_p2_organizer_must_have_an_email(world: Coordinator, engine: Engine) -> None:
    with pytest.raises(Refused, match="P2: the organizer E901 .* has no e-mail"):
        world.execute(c.SetParameters(organizer="E901"), DISPATCHER)
    with read_connection(engine) as conn:
        assert repo.parameters(conn)["organizer_code"] == "E900"


def test_p2_required_while_p1_is_on(coord: Coordinator) -> None:
    with pytest.raises(Refused, match="P2: an organizer is required"):
        coord.execute(c.SetParameters(create_crm_appointments=True), DISPATCHER)


def test_p3_off_no_contact_participant(world: Coordinator, engine: Engine) -> None:
    world.execute(c.SetParameters(include_sold_to_contact=False), DISPATCHER)
    generated(world, engineers=("E001",))
    assert [p[0] for p in people(appointment(engine, "SO-1001/10/1"))] == ["E900", "E001"]


def test_p4_needs_p1(world: Coordinator) -> None:
    with pytest.raises(Refused, match="P4 .* needs P1"):
        world.execute(c.SetParameters(create_crm_appointments=False,
                                      update_assignments_from_appointment_dates=True),
                      DISPATCHER)
