"""The command line as a public interface: `dispatch apply|show|list|check|history|users|db`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from app.cli import main
from tests.unit.test_bad_input import dump

EXAMPLE = """\
{"op":"upsert_employee","code":"E900","name":"Paola Neri","email":"paola.neri@example.com"}
{"op":"upsert_employee","code":"E001","name":"Mario Rossi","email":"mario.rossi@example.com","engineer":true}
{"op":"upsert_employee","code":"E002","name":"Luigi Verdi","engineer":true}
{"op":"upsert_partner","code":"BP100","name":"Acme S.p.A."}
{"op":"upsert_contact","partner":"BP100","code":"C100","name":"Anna Bianchi","email":"anna@acme.example"}
{"op":"set_parameters","create_crm_appointments":true,"organizer":"E900","include_sold_to_contact":true,"update_assignments_from_appointment_dates":false}
{"op":"create_order","order":"SO-1001","kind":"service_order","sold_to":"BP100","ship_to":"BP100","contact":"C100","address":"Via Roma 1, 20121 Milano","planned_start":"2026-12-07T08:00:00+01:00","planned_end":"2026-12-09T18:00:00+01:00","activities":[{"line":10,"description":"Replace pump","planned_start":"2026-12-07T08:00:00+01:00","planned_end":"2026-12-07T12:00:00+01:00","engineers":["E001","E002"]}]}
{"op":"generate_assignments","order":"SO-1001"}
{"op":"move_assignment","order":"SO-1001","line":10,"assignment":1,"planned_start":"2026-12-07T09:00:00+01:00","planned_end":"2026-12-07T13:00:00+01:00"}
{"op":"set_assignment_status","order":"SO-1001","line":10,"assignment":1,"status":"Completed"}
"""


def run(db_url: str, *args: str, stdin: str | None = None,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
        ) -> tuple[int, str, str]:
    if stdin is not None:
        import io

        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(["--db", db_url, *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cli(db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    def call(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
        return run(db_url, *args, stdin=stdin, capsys=capsys, monkeypatch=monkeypatch)
    return call


def results(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def test_apply_the_issue_example_and_show_the_appointment(cli: Any) -> None:
    code, out, err = cli("apply", "-", stdin=EXAMPLE)
    assert code == 0, err
    lines = results(out)
    assert [r["ok"] for r in lines] == [True] * 10
    assert [r["line"] for r in lines] == list(range(1, 11))
    assert lines[7]["assignments"] == ["SO-1001/10/1", "SO-1001/10/2"]
    assert lines[9]["summary"] == "SO-1001/10/1 is Completed; 1 appointment updated"

    code, out, _ = cli("show", "assignment", "SO-1001/10/1", "--json")
    assert code == 0
    a = json.loads(out)
    assert a["planned_start"] == "2026-12-07T08:00:00+00:00"
    ap = a["appointment"]
    assert set(ap) >= {"id", "subject", "location", "status", "start", "end", "due_date",
                       "show_time_as", "information", "business_partner", "organizer",
                       "origin", "participants", "references", "related_orders"}
    assert ap["status"] == "Held"
    assert ap["origin"]["order"] == "SO-1001" and ap["origin"]["line"] == 10
    assert {"type": "Employee", "code": "E002", "name": "Luigi Verdi",
            "attendance": "Required Attendee", "email": None} in ap["participants"]

    code, out, _ = cli("show", "appointment", str(ap["id"]))
    assert code == 0 and "(no e-mail: not sent)" in out and "Meeting Organizer" in out
    code, out, _ = cli("list", "appointments", "--order", "SO-1001", "--json")
    assert code == 0 and len(json.loads(out)) == 2
    code, out, _ = cli("list", "assignments", "--engineer", "E002")
    assert code == 0 and "SO-1001/10/2" in out and "SO-1001/10/1 " not in out
    code, out, _ = cli("check")
    assert code == 0 and "follows the rules" in out
    code, out, _ = cli("history", "--order", "SO-1001", "--json")
    assert code == 0 and any("moved" in json.loads(x)["detail"] for x in out.splitlines())


def test_apply_is_all_or_nothing_and_names_the_line_and_field(
        cli: Any, engine: Engine) -> None:
    cli("apply", "-", stdin=EXAMPLE)
    before = dump(engine)
    bad = ('{"op":"reassign","order":"SO-1001","line":10,"assignment":2,"engineer":"E001"}\n'
           '{"op":"move_assignment","order":"SO-1001","line":10,"assignment":2,'
           '"planned_start":"2026-12-07T09:00:00+01:00","planned_end":"2026-12-07T08:00:00+01:00"}\n')
    code, out, err = cli("apply", "-", stdin=bad)
    assert code == 1
    assert "line 2: planned_end (2026-12-07T07:00:00+00:00) must be after planned_start" in err
    assert "nothing was applied" in err and "Traceback" not in err
    r = results(out)
    assert r[0]["ok"] is False and "not applied" in r[0]["error"]
    assert r[1]["field"] == "planned_end"
    assert dump(engine) == before


def test_apply_each_commits_line_by_line(cli: Any) -> None:
    cli("apply", "-", stdin=EXAMPLE)
    lines = ('{"op":"reassign","order":"SO-1001","line":10,"assignment":2,"engineer":"E777"}\n'
             '{"op":"set_assignment_status","order":"SO-1001","line":10,"assignment":2,'
             '"status":"Accepted"}\n')
    code, out, err = cli("apply", "--each", "-", stdin=lines)
    assert code == 1
    r = results(out)
    assert r[0] == {"ok": False, "line": 1, "error": "line 1: employee 'E777' does not exist",
                    "field": "engineer", "kind": "not_found"}
    assert r[1]["ok"] is True
    code, out, _ = cli("show", "assignment", "SO-1001/10/2", "--json")
    assert json.loads(out)["status"] == "Accepted"


@pytest.mark.parametrize("text,message", [
    ("{not json", "line 1: malformed JSON"),
    ('{"op":"fly"}', "line 1, field op: unknown op 'fly'"),
    ('[1,2]', "line 1: expected a JSON object, got a list"),
    ('{"op":"reassign","order":"SO-1","line":"ten","assignment":1,"engineer":"E1"}',
     "line 1, field line: expected a whole number, got text"),
    ('{"op":"move_assignment","order":"SO-1","line":10,"assignment":1,'
     '"planned_start":"2026-12-07 08:00","planned_end":"2026-12-07T09:00:00Z"}',
     "line 1, field planned_start: '2026-12-07 08:00' has no UTC offset"),
    ('{"op":"move_assignment","order":"SO-1","line":10,"assignment":1,'
     '"planned_start":"2026-02-30T08:00:00Z","planned_end":"2026-12-07T09:00:00Z"}',
     "line 1, field planned_start: '2026-02-30T08:00:00Z' is not an ISO 8601 date"),
    ('{"op":"generate_assignments"}', "line 1, field order: is required"),
    ('{"op":"generate_assignments","order":"SO-1","colour":"red"}',
     "line 1, field colour: unknown field for generate_assignments"),
])
def test_apply_unreadable_input_exits_2(cli: Any, engine: Engine, text: str,
                                        message: str) -> None:
    before = dump(engine)
    code, out, err = cli("apply", "-", stdin=text + "\n")
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert dump(engine) == before


def test_apply_as_a_supervisor_is_refused(cli: Any) -> None:
    cli("apply", "-", stdin=EXAMPLE)
    assert cli("users", "add", "sam", "--role", "supervisor")[0] == 0
    code, out, err = cli("apply", "--as", "sam", "-", stdin=(
        '{"op":"set_assignment_status","order":"SO-1001","line":10,"assignment":2,'
        '"status":"Accepted"}\n'))
    assert code == 1 and "read-only" in err
    code, out, err = cli("apply", "--as", "nobody", "-", stdin="{}\n")
    assert code == 1 and "unknown user 'nobody'" in err
    code, out, _ = cli("users", "list")
    assert "sam" in out and "supervisor" in out


def test_show_errors_are_one_line(cli: Any) -> None:
    code, _, err = cli("show", "assignment", "nonsense")
    assert code == 2 and err.count("\n") == 1 and "is not ORDER/LINE/NO" in err
    code, _, err = cli("show", "appointment", "999")
    assert code == 1 and err.strip() == "dispatch: appointment 999 does not exist"


def test_check_reports_a_broken_appointment(cli: Any, engine: Engine) -> None:
    cli("apply", "-", stdin=EXAMPLE)
    with engine.begin() as conn:  # vandalism from outside the product
        conn.exec_driver_sql("UPDATE appointments SET location = 'Nowhere' WHERE id = 1")
    code, out, err = cli("check")
    assert code == 1
    assert "appointment 1 (SO-1001/10/1): location is 'Nowhere', the rules say " \
           "'Via Roma 1, 20121 Milano'" in out


def test_db_current_and_upgrade(cli: Any) -> None:
    code, out, _ = cli("db", "upgrade")
    assert code == 0 and out.startswith("0")
    code, out, _ = cli("db", "current")
    head = out.split()[0]
    assert code == 0 and f"(head {head})" in out


def test_real_process_demo_then_check(tmp_path: Path) -> None:
    """The installed console script, as a user would call it."""
    env = {**os.environ, "DISPATCH_DB": f"sqlite:///{tmp_path / 'd.db'}"}
    exe = Path(sys.executable).with_name("dispatch")
    demo = subprocess.run([str(exe), "demo", "--orders", "12", "--start", "2026-12-07"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert demo.returncode == 0, demo.stderr
    assert "12 orders" in demo.stdout
    check = subprocess.run([str(exe), "check"], env=env, capture_output=True, text=True,
                           timeout=120)
    assert check.returncode == 0, check.stdout
    bad = subprocess.run([str(exe), "apply", "-"], input="{oops\n", env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("dispatch: line 1: malformed JSON")


def test_a_database_from_a_newer_dispatch_gets_a_clear_error(cli: Any, engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    code, _, err = cli("list", "assignments")
    assert code == 2
    assert err.startswith("dispatch: the database is at schema revision 9999, which this "
                          "version of dispatch does not know")
    assert "Traceback" not in err and err.count("\n") == 1


def test_db_upgrade_creates_the_data_folder_on_a_first_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'folder' / 'dispatch.db'}"
    assert main(["--db", url, "db", "upgrade"]) == 0
    assert (tmp_path / "new" / "folder" / "dispatch.db").exists()
