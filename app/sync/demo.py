"""A realistic, deterministic demo data set, written through the coordinator like any other edit.

Same `seed` and `start`, same data: companies with contacts, engineers and a planner who
organizes the appointments, orders of all three kinds in every status, several engineers per
activity, and some history (moves, reassignments, completions, a header change).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pendulum

from app.sync import commands as c
from app.sync.coordinator import Coordinator

TZ = "Europe/Rome"

COMPANIES = [
    ("Acme S.p.A.", "Milano"), ("Ferro & Figli S.r.l.", "Torino"), ("Lattoneria Bassi", "Bergamo"),
    ("Ospedale San Carlo", "Milano"), ("Cantina Colli Euganei", "Padova"),
    ("Hotel Laguna", "Venezia"), ("Pastificio Rinaldi", "Parma"), ("Tessitura Monti", "Como"),
    ("Comune di Lodi", "Lodi"), ("Supermercati Verdi", "Brescia"), ("Officine Galli", "Verona"),
    ("Caseificio Alpino", "Sondrio"), ("Farmacia Centrale", "Pavia"),
    ("Logistica Nord S.p.A.", "Piacenza"), ("Birrificio del Lago", "Lecco"),
    ("Stamperia Rossa", "Cremona"),
]
STREETS = ["Via Roma", "Corso Italia", "Via Garibaldi", "Viale Europa", "Via Dante",
           "Piazza Duomo", "Via Verdi", "Via Manzoni", "Via Mazzini", "Via Cavour"]
FIRST = ["Anna", "Luca", "Giulia", "Marco", "Sara", "Paolo", "Chiara", "Davide", "Elena",
         "Franco", "Irene", "Stefano", "Laura", "Matteo", "Silvia", "Andrea"]
LAST = ["Bianchi", "Colombo", "Ricci", "Marino", "Greco", "Bruno", "Gallo", "Conti", "De Luca",
        "Costa", "Giordano", "Mancini", "Rizzo", "Lombardi", "Moretti", "Barbieri"]
ENGINEERS = [("E001", "Mario Rossi"), ("E002", "Luigi Verdi"), ("E003", "Giorgio Neri"),
             ("E004", "Franca Gialli"), ("E005", "Sergio Blu"), ("E006", "Alessia Viola"),
             ("E007", "Bruno Grigi"), ("E008", "Carla Rosa"), ("E009", "Dario Marrone"),
             ("E010", "Nadia Azzurri"), ("E011", "Ettore Bianco"), ("E012", "Olga Ferri")]
WORK = ["Replace pump", "Annual boiler service", "Inspect fire dampers", "Calibrate sensors",
        "Repair conveyor belt", "Install heat exchanger", "Check refrigeration circuit",
        "Replace filters", "Commission chiller", "Service compressor", "Fix leaking valve",
        "Upgrade controller firmware", "Test emergency lighting", "Overhaul gearbox"]
KINDS = ["service_order", "work_order", "maintenance_sales_order"]
PREFIX = {"service_order": "SO", "work_order": "WO", "maintenance_sales_order": "MSO"}
ORDER_STATUSES = ["Free", "Planned", "Released", "Released", "Released", "Completed", "Costed",
                  "Closed", "Canceled"]


def default_start() -> pendulum.DateTime:
    """Monday of this week, 00:00 in Rome: the demo is always about the days around now."""
    return pendulum.now(TZ).start_of("week")


def master_data() -> list[c.Command]:
    cmds: list[c.Command] = [
        c.UpsertEmployee("E900", "Paola Neri", "paola.neri@example.com"),
    ]
    for i, (code, name) in enumerate(ENGINEERS):
        # Two engineers have no e-mail: their participant rows show it.
        email = None if i in (6, 10) else name.lower().replace(" ", ".") + "@example.com"
        cmds.append(c.UpsertEmployee(code, name, email, engineer=True))
    for i, (name, _city) in enumerate(COMPANIES):
        bp = f"BP{100 + i}"
        cmds.append(c.UpsertPartner(bp, name))
        for j in range(2):
            person = f"{FIRST[(i + j * 5) % len(FIRST)]} {LAST[(i * 3 + j) % len(LAST)]}"
            cmds.append(c.UpsertContact(
                bp, f"C{100 + i}{j}", person,
                f"{person.split()[0].lower()}@{name.split()[0].lower().strip('&')}.example",
                f"+39 02 {5550000 + i * 10 + j}",
            ))
    cmds.append(c.SetParameters(create_crm_appointments=True, organizer="E900",
                                include_sold_to_contact=True,
                                update_assignments_from_appointment_dates=False))
    return cmds


def orders(n: int, seed: int, start: pendulum.DateTime,
           activities: tuple[int, int] = (1, 3),
           engineers: tuple[int, int] = (1, 3)) -> Iterator[list[c.Command]]:
    """Each order as a list of commands: create, generate, then its life so far."""
    rng = random.Random(seed)
    for i in range(n):
        kind = KINDS[i % 3]
        number = f"{PREFIX[kind]}-{1001 + i}"
        bp_i = rng.randrange(len(COMPANIES))
        bp = f"BP{100 + bp_i}"
        city = COMPANIES[bp_i][1]
        day = start.add(days=rng.randrange(0, 12))
        while day.day_of_week in (pendulum.SATURDAY, pendulum.SUNDAY):
            day = day.add(days=1)
        acts = []
        t = day.replace(hour=8)
        for k in range(rng.randint(*activities)):
            hours = rng.choice([1, 2, 2, 3, 4])
            engs = rng.sample([e for e, _ in ENGINEERS], rng.randint(*engineers))
            acts.append(c.ActivitySpec(10 * (k + 1), rng.choice(WORK), t, t.add(hours=hours),
                                       tuple(sorted(engs))))
            t = t.add(hours=hours)
            if t.hour >= 17:
                t = t.add(days=1).replace(hour=8)
        order_end = pendulum.instance(max(a.planned_end for a in acts)).add(hours=2)
        address = f"{rng.choice(STREETS)} {rng.randint(1, 120)}, {city}"
        cmds: list[c.Command] = [
            c.CreateOrder(number, kind, bp, bp, address, day.replace(hour=8), order_end,
                          contact=f"C{100 + bp_i}{rng.randrange(2)}", activities=tuple(acts)),
            c.GenerateAssignments(number),
        ]
        status = ORDER_STATUSES[i % len(ORDER_STATUSES)]
        first = acts[0]
        rejected = False
        if status in ("Planned", "Released", "Completed", "Costed", "Closed"):
            cmds.append(c.SetOrderStatus(number, "Planned"))
        if status in ("Released", "Completed", "Costed", "Closed"):
            cmds.append(c.SetOrderStatus(number, "Released"))
            roll = rng.random()
            if roll < 0.25:
                cmds.append(c.SetAssignmentStatus(number, first.line, 1, "Accepted"))
            elif roll < 0.4:
                cmds.append(c.SetAssignmentStatus(number, first.line, 1, "Started"))
            elif roll < 0.5:
                cmds.append(c.SetAssignmentStatus(number, first.line, 1, "Rejected"))
                rejected = True
            elif roll < 0.6:
                hour = pendulum.duration(hours=1)
                cmds.append(c.MoveAssignment(number, first.line, 1, first.planned_start + hour,
                                             first.planned_end + hour))
            elif roll < 0.7:
                other = next(e for e, _ in ENGINEERS if e not in first.engineers)
                cmds.append(c.Reassign(number, first.line, 1, other))
            elif roll < 0.8:
                cmds.append(c.UpdateOrder(number, address=address.replace(
                    address.split(",")[0], f"{rng.choice(STREETS)} {rng.randint(1, 120)}")))
        if status in ("Completed", "Costed", "Closed"):
            for a in acts:
                for n_ in range(1, len(a.engineers) + 1):
                    if not (rejected and a is first and n_ == 1):
                        cmds.append(c.SetAssignmentStatus(number, a.line, n_, "Completed"))
            cmds.append(c.SetOrderStatus(number, "Completed"))
            if status == "Costed" and len(first.engineers) > 1:
                # R14: deleted after completion, its appointment stays as history.
                cmds.append(c.DeleteAssignment(number, first.line, len(first.engineers)))
        if status in ("Costed", "Closed"):
            cmds.append(c.SetOrderStatus(number, "Costed"))
        if status == "Closed":
            cmds.append(c.SetOrderStatus(number, "Closed"))
        if status == "Canceled":
            cmds.append(c.SetOrderStatus(number, "Canceled"))
        yield cmds


def load(coordinator: Coordinator, *, n_orders: int = 40, seed: int = 7,
         start: pendulum.DateTime | None = None, actor: c.Actor | None = None,
         per_transaction: int = 200) -> int:
    """Write the demo; returns the number of commands run."""
    actor = actor or c.Actor.dispatcher("demo")
    start = start or default_start()
    done = 0
    coordinator.execute_many(master_data(), actor)
    pending: list[c.Command] = []
    for cmds in orders(n_orders, seed, start):
        pending.extend(cmds)
        if len(pending) >= per_transaction:
            coordinator.execute_many(pending, actor)
            done += len(pending)
            pending = []
    if pending:
        coordinator.execute_many(pending, actor)
        done += len(pending)
    return done
