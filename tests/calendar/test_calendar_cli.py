# ruff: noqa: F811  (the fixtures are imported by name from calfixtures)
"""`dispatch calendar setup|status|sync|export`: thin commands with one-line errors."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from calfixtures import DISPATCHER, PASSWORD_ENV, order_cmd, radicale  # noqa: F401
from radicale_server import PASSWORD, USER, Radicale
from sqlalchemy import Engine

from app.calendar import ical
from app.cli import main
from app.sync import commands as c
from app.sync.coordinator import Coordinator


def _run(capsys: pytest.CaptureFixture[str], db: str, *argv: str) -> tuple[int, str, str]:
    code = main(["--db", db, "calendar", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_setup_status_sync_export(world: Coordinator, engine: Engine, db_url: str,
                                  radicale: Radicale, capsys: pytest.CaptureFixture[str],
                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world.execute_many([order_cmd(), c.GenerateAssignments("SO-1001")], DISPATCHER)
    space = uuid.uuid4().hex[:8]
    org = radicale.make_calendar(f"cli-org-{space}")
    eng = radicale.make_calendar(f"cli-e001-{space}")
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    code, out, err = _run(capsys, db_url, "setup", "--url", radicale.url, "--organizer-calendar",
                          org, "--engineer", f"E001={eng}", "--username", USER,
                          "--password-env", PASSWORD_ENV, "--tz", "Europe/Rome", "--check")
    assert code == 0, err
    assert "2 appointment(s) queued" in out
    code, out, _ = _run(capsys, db_url, "status", "--json")
    info = json.loads(out)
    assert info["queued"] == 2 and info["password_from"] == f"${PASSWORD_ENV}"
    assert PASSWORD not in out  # never stored, never shown
    code, out, err = _run(capsys, db_url, "sync")
    assert code == 0, err
    assert out.startswith("calendar sync: pushed 3")
    code, out, _ = _run(capsys, db_url, "status")
    assert "2 appointments synced, 0 queued" in out
    code, out, _ = _run(capsys, db_url, "export", "--itip", str(tmp_path / "itip"), "--cancel",
                        "--appointment", "1")
    data = (tmp_path / "itip" / "appointment-1.ics").read_bytes()
    assert b"METHOD:CANCEL" in data and b"STATUS:CANCELLED" in data
    assert ical.parse(data).sequence == 1
    code, out, _ = _run(capsys, db_url, "export", "--out", str(tmp_path / "all.ics"))
    whole = (tmp_path / "all.ics").read_bytes()
    assert whole.count(b"BEGIN:VEVENT") == 2 and b"METHOD" not in whole
    uid = ical.parse(data).uid
    assert uid.encode() in whole  # the same UIDs as the CalDAV events: re-imports update


@pytest.mark.parametrize(("argv", "message"), [
    (["setup", "--url", "ftp://x", "--organizer-calendar", "http://x/c/"], "not an http(s) URL"),
    (["setup", "--url", "http://127.0.0.1:9/", "--organizer-calendar", "http://127.0.0.1:9/c/",
      "--tz", "Mars/Olympus"], "not a known IANA zone"),
    (["setup", "--url", "http://127.0.0.1:9/", "--engineer", "E001"], "is not CODE=URL"),
    (["setup", "--url", "http://127.0.0.1:9/", "--engineer", "NOPE=http://127.0.0.1:9/c/"],
     "employee 'NOPE' does not exist"),
    (["setup", "--url", "http://127.0.0.1:9/", "--organizer-calendar", "http://127.0.0.1:9/c/",
      "--check"], "connection refused"),
    (["setup", "--url", "http://127.0.0.1:9/", "--organizer-calendar", "http://127.0.0.1:9/c/",
      "--username", "u", "--password-env", "DISPATCH_TEST_UNSET_VARIABLE", "--check"],
     "DISPATCH_TEST_UNSET_VARIABLE is not set"),
    (["export", "--appointment", "999"], "appointment 999 does not exist"),
])
def test_bad_input_gets_one_line(world: Coordinator, db_url: str,
                                 capsys: pytest.CaptureFixture[str], argv: list[str],
                                 message: str) -> None:
    code, out, err = _run(capsys, db_url, *argv)
    assert code != 0 and message in err, (out, err)
    assert err.count("\n") == 1 and "Traceback" not in err


def test_sync_without_server_keeps_everything_queued(world: Coordinator, db_url: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, db_url, "setup", "--url", "http://127.0.0.1:9/",
                        "--organizer-calendar", "http://127.0.0.1:9/org/")
    assert code == 0, err
    world.execute_many([order_cmd(), c.GenerateAssignments("SO-1001")], DISPATCHER)
    code, out, _ = _run(capsys, db_url, "sync")
    assert code == 1 and "server unavailable" in out and "still queued 2" in out
    code, out, _ = _run(capsys, db_url, "status", "--json")
    assert json.loads(out)["retrying"] == 2
