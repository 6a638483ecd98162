"""Short names for the Core tables, shared by the set-based code (queries, mirror, coordinator)."""

from __future__ import annotations

from app.db import models as m

A = m.table(m.Assignment)
ACT = m.table(m.Activity)
O = m.table(m.Order)  # noqa: E741
AP = m.table(m.Appointment)
P = m.table(m.Participant)
R = m.table(m.Reference)
L = m.table(m.RelatedOrder)
E = m.table(m.Employee)
BP = m.table(m.Partner)
C = m.table(m.Contact)
OC = m.table(m.OrderChange)
PE = m.table(m.PlannedEngineer)
J = m.table(m.JournalEntry)
U = m.table(m.User)
UK = m.table(m.UserKey)
PARAMS = m.table(m.Parameters)
