"""Hostile input to `dispatch apply` and to the date parser.

Whatever arrives (broken JSON, wrong types, huge strings, control characters, lone surrogates,
dates in year 1 or 9999, unknown ops, numbers beyond 64 bits), the answer is a one-line error
naming the line (and the field, when there is one), exit code 1 or 2, never a traceback, and
never a partial write: a refused file leaves the database exactly as it was.
Most cases drive `app.cli.main([...])` in-process; a few run the real program.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from robust_support import ROOT
from sqlalchemy import func, select

from app.cli import main
from app.db import models as m
from app.db.base import Base
from app.db.engine import make_engine, read_connection
from app.sync import commands as c
from app.sync.jsonl import ParseError, parse_datetime, parse_text

EXAMPLES = int(os.environ.get("DISPATCH_FUZZ_EXAMPLES", "50"))
"""Examples per database for the in-process `apply` fuzzing (each opens the database, so ~0.4 s);
the pure parsers get six times as many. The suite's run is derandomized (the same cases every
time); for a long hunt: DISPATCH_FUZZ_EXAMPLES=2000 DISPATCH_FUZZ_RANDOM=1."""
_SETTINGS = {"deadline": None, "derandomize": not os.environ.get("DISPATCH_FUZZ_RANDOM"),
             "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large]}
FUZZ = settings(max_examples=EXAMPLES, **_SETTINGS)  # type: ignore[arg-type]
FUZZ_PURE = settings(max_examples=6 * EXAMPLES, **_SETTINGS)  # type: ignore[arg-type]
FIELDLESS = ("malformed JSON", "expected a JSON object", "characters long; at most",
             "nothing was applied")


# ---- the database and how to see that it did not change ---------------------------------------

@pytest.fixture
def demo_db(db_url: str) -> str:
    """A small demo database (orders of every status, history appointments included)."""
    assert run_cli(["--db", db_url, "demo", "--orders", "8", "--start", "2026-12-07"])[0] == 0
    return db_url


@pytest.fixture(scope="module")
def shared_demo_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite demo database for the subprocess cases (the program is the same whatever the
    database; every case is refused, so each still proves it changed nothing)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'demo.db'}"
    assert run_cli(["--db", url, "demo", "--orders", "8", "--start", "2026-12-07"])[0] == 0
    return url


def fingerprint(url: str) -> dict[str, Any]:
    """Row counts of every table, the sum of every version column, the last journal id."""
    engine = make_engine(url)
    out: dict[str, Any] = {}
    with read_connection(engine) as conn:
        for table in Base.metadata.sorted_tables:
            out[table.name] = conn.scalar(select(func.count()).select_from(table))
            if "version" in table.c:
                out[table.name + ".version"] = conn.scalar(select(func.sum(table.c.version)))
        out["journal.last"] = conn.scalar(select(func.max(m.JournalEntry.__table__.c.id)))
    engine.dispose()
    return out


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def apply_text(url: str, folder: Path, text: str, *extra: str) -> tuple[int, str, str]:
    path = folder / "input.jsonl"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return run_cli(["--db", url, "apply", str(path), *extra])


def assert_clean_refusal(url: str, before: dict[str, Any], result: tuple[int, str, str],
                         lines: int) -> None:
    """Refused: exit 1 or 2, one stderr line naming the line, results per line, no change."""
    code, out, err = result
    assert code in (1, 2), (code, out, err)
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("dispatch: line "), err
    bad = int(err.split("line ", 1)[1].split(":")[0].split(",")[0])
    assert 1 <= bad <= lines
    rows = [json.loads(x) for x in out.splitlines()]
    failing = [r for r in rows if r.get("kind") not in (None, "rolled_back") and not r["ok"]]
    assert len(failing) == 1 and failing[0]["line"] == bad, rows
    if not any(s in err for s in FIELDLESS[:3]) and failing[0]["kind"] == "invalid":
        assert failing[0]["field"], f"an invalid input must name its field: {err}"
    assert fingerprint(url) == before, "a refused file changed the database"


# ---- the bugs found here, one test each --------------------------------------------------------

MOVE = {"op": "move_assignment", "order": "SO-1001", "line": 10, "assignment": 1,
        "planned_start": "2026-12-07T08:00:00+01:00", "planned_end": "2026-12-07T09:00:00+01:00"}


@pytest.mark.parametrize(("case", "changes", "field", "says"), [
    # PostgreSQL refused NUL with a driver error ("database error: ...", no line, exit 2).
    ("nul_in_text", {"order": "SO-1001\u0000"}, "order", "NUL"),
    # SQLite: OverflowError traceback; PostgreSQL: "integer out of range" without a line.
    ("number_beyond_32_bits", {"line": 10**24}, "line", "out of range"),
    ("negative_number_beyond_32_bits", {"assignment": -(2**40)}, "assignment", "out of range"),
    # A date whose UTC instant does not exist (year 9999 at -01:00): OverflowError traceback.
    ("date_past_year_9999_in_utc", {"planned_end": "9999-12-31T23:59:59-01:00"},
     "planned_end", "out of range"),
    ("date_before_year_1_in_utc", {"planned_start": "0001-01-01T00:30:00+01:00"},
     "planned_start", "out of range"),
    # A lone surrogate escape is valid JSON but cannot be encoded: UnicodeEncodeError traceback.
    ("lone_surrogate", {"order": "SO-\ud800"}, "order", "surrogate"),
])
def test_input_that_crashed_the_database_driver_is_refused_by_line_and_field(
        demo_db: str, tmp_path: Path, case: str, changes: dict[str, Any], field: str,
        says: str) -> None:
    before = fingerprint(demo_db)
    line = json.dumps({**MOVE, **changes})
    result = apply_text(demo_db, tmp_path, json.dumps(MOVE) + "\n" + line + "\n")
    assert_clean_refusal(demo_db, before, result, 2)
    assert f"line 2, field {field}: " in result[2] and says in result[2], result[2]


def test_surrogate_in_a_field_name_is_refused(demo_db: str, tmp_path: Path) -> None:
    before = fingerprint(demo_db)
    result = apply_text(demo_db, tmp_path, '{"op": "upsert_partner", "code": "X1", "name": "n",'
                                           ' "n\\udc00": 1}\n')
    assert_clean_refusal(demo_db, before, result, 1)
    assert "field n\\udc00" in result[2]


def _history_appointment(url: str) -> int:
    engine = make_engine(url)
    AP = m.Appointment.__table__
    with read_connection(engine) as conn:
        ap = conn.scalar(select(AP.c.id).where(AP.c.assignment_id.is_(None)).limit(1))
    engine.dispose()
    assert ap is not None, "the demo keeps some appointments as history (R14)"
    return int(ap)


@pytest.mark.parametrize("value", [["Held"], {"a": 1}, 3, None])
def test_appointment_status_of_the_wrong_type_is_invalid_not_a_type_error(
        demo_db: str, tmp_path: Path, value: Any) -> None:
    """`status: ["Held"]` on a history appointment raised "unhashable type: 'list'"."""
    ap = _history_appointment(demo_db)
    before = fingerprint(demo_db)
    for name in ("status", "show_time_as"):
        result = apply_text(demo_db, tmp_path, json.dumps(
            {"op": "edit_appointment", "appointment": ap, name: value}) + "\n")
        assert_clean_refusal(demo_db, before, result, 1)
        assert name in result[2]


def test_line_separator_inside_a_json_string_is_not_a_line_break(demo_db: str,
                                                                    tmp_path: Path) -> None:
    """JSON allows U+2028, U+2029 and U+0085 unescaped in strings; `str.splitlines()` broke the
    line there, refused a valid file and numbered every later line wrongly."""
    name = "Rossi\u2028Impianti\u0085S.r.l.\u2029"
    text = json.dumps({"op": "upsert_partner", "code": "BP900", "name": name},
                      ensure_ascii=False) + "\r\n" + json.dumps({**MOVE, "line": "ten"}) + "\n"
    before = fingerprint(demo_db)
    result = apply_text(demo_db, tmp_path, text)
    assert_clean_refusal(demo_db, before, result, 2)
    assert "line 2, field line" in result[2]  # the second line is the second line
    code, _, err = apply_text(demo_db, tmp_path, text.split("\r\n")[0] + "\n")
    assert code == 0, err


# ---- the date parser ---------------------------------------------------------------------------

@FUZZ_PURE
@given(st.one_of(
    st.text(max_size=60),
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31),
                 timezones=st.one_of(st.none(), st.timezones())).map(lambda d: d.isoformat()),
    st.builds(lambda y, off: f"{y:04d}-06-15T12:00:00{off}", st.integers(0, 9999),
              st.sampled_from(["Z", "+14:00", "-12:00", "+01:00", "", "+25:00", "+00:00:30"])),
    st.integers(), st.floats(), st.none(), st.booleans(), st.lists(st.integers(), max_size=2),
))
def test_parse_datetime_answers_a_date_or_a_parse_error(value: Any) -> None:
    try:
        parsed = parse_datetime(value, "planned_start", 7)
    except ParseError as exc:
        assert str(exc).startswith("line 7, field planned_start: "), str(exc)
        assert "\n" not in str(exc)
        return
    assert parsed.tzinfo is not None and parsed.utcoffset() is not None
    parsed.astimezone(dt.UTC)  # has a UTC instant


# ---- random and mutated lines ------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
              st.text(max_size=30)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)
HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8", categories=["Cc", "Cf", "Zl", "Zp"]),
            min_size=1, max_size=10),
    st.sampled_from(["", " ", "[bold red]ACME[/]", "\x1b[31mred", "x" * 5000, "é" * 300,
                     "\ud800", "a\u0000b", "'; DROP TABLE orders; --", "SO-1001\n",
                     "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
                     "1969-12-31T23:59:59Z", "2201-01-01T00:00:00Z", "2026-02-30T08:00:00Z",
                     "2026-12-07T08:00:00", "2026-12-07"]),
)
HOSTILE = st.one_of(HOSTILE_TEXT, st.integers(min_value=-(2**70), max_value=2**70), JSON_VALUES,
                    st.sampled_from([True, 0, -1, 2**31, 2**63, 1.5, float("inf"), [], {}]))
TEMPLATES: list[dict[str, Any]] = [
    MOVE,
    {"op": "reassign", "order": "SO-1001", "line": 10, "assignment": 1, "engineer": "E003"},
    {"op": "set_assignment_status", "order": "SO-1001", "line": 10, "assignment": 1,
     "status": "Accepted"},
    {"op": "delete_assignment", "order": "WO-1002", "line": 10, "assignment": 1},
    {"op": "update_order", "order": "SO-1001", "address": "Via Nuova 1, Milano",
     "contact": None},
    {"op": "update_activity", "order": "SO-1001", "line": 10, "description": "Replace pump"},
    {"op": "set_order_status", "order": "SO-1001", "status": "Planned"},
    {"op": "create_assignment", "order": "SO-1001", "line": 10, "engineer": "E005"},
    {"op": "create_order", "order": "SO-9001", "kind": "service_order", "sold_to": "BP100",
     "ship_to": "BP100", "address": "Via Roma 1, Milano", "contact": "C1000",
     "planned_start": "2026-12-07T08:00:00+01:00", "planned_end": "2026-12-08T18:00:00+01:00",
     "activities": [{"line": 10, "description": "Visit", "engineers": ["E001"],
                     "planned_start": "2026-12-07T08:00:00+01:00",
                     "planned_end": "2026-12-07T10:00:00+01:00"}]},
    {"op": "upsert_partner", "code": "BP777", "name": "Nuova Ditta"},
    {"op": "upsert_contact", "partner": "BP100", "code": "C777", "name": "Ada", "email": "a@b.it"},
    {"op": "upsert_employee", "code": "E777", "name": "Tecnico", "engineer": True},
    {"op": "set_parameters", "include_sold_to_contact": False},
    {"op": "edit_appointment", "appointment": 1, "changes": {"subject": "x"}},
    {"op": "add_user", "name": "tech", "role": "technician", "employee": "E001"},
    {"op": "calendar_move", "appointment": 1, "start": "2026-12-07T08:00:00+01:00",
     "end": "2026-12-07T09:00:00+01:00"},
    {"op": "generate_assignments", "order": "SO-1001"},
]


@st.composite
def mutated_line(draw: st.DrawFn) -> str:
    """A realistic command with one to three things wrong with it, or plain garbage."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.text(max_size=80))
    if kind == 1:
        return json.dumps(draw(JSON_VALUES))
    obj = dict(draw(st.sampled_from(TEMPLATES)))
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.integers(0, 5))
        keys = sorted(obj)
        if action == 0 and keys:
            obj.pop(draw(st.sampled_from(keys)))
        elif action in (1, 2) and keys:
            obj[draw(st.sampled_from(keys))] = draw(HOSTILE)
        elif action == 3:
            obj[draw(st.text(max_size=10))] = draw(HOSTILE)
        elif action == 4:
            obj["op"] = draw(st.one_of(st.text(max_size=12), st.sampled_from(
                ["move", "MOVE_ASSIGNMENT", "drop_database", "__class__"])))
        else:
            obj[draw(st.sampled_from(keys or ["op"]))] = draw(st.text(max_size=30))
    text = json.dumps(obj, ensure_ascii=draw(st.booleans()))
    if draw(st.integers(0, 5)) == 0:  # break the text itself
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.sampled_from(["", "}", "\"", "\\", ",", "\x00", "\ufeff"])) \
            + text[cut + draw(st.integers(0, 3)):]
    return text


@FUZZ_PURE
@given(mutated_line())
def test_parse_text_answers_a_command_or_a_parse_error(text: str) -> None:
    try:
        command = parse_text(text, 3)
    except ParseError as exc:
        assert str(exc).startswith("line 3"), str(exc)
        assert "\n" not in str(exc)
        return
    assert isinstance(command, c.Command)


@FUZZ
@given(lines=st.lists(mutated_line(), min_size=1, max_size=4), valid_first=st.booleans(),
       each=st.booleans())
def test_apply_of_hostile_files(demo_db: str, tmp_path: Path, lines: list[str],
                                valid_first: bool, each: bool) -> None:
    """The file is one transaction: refused means untouched. With `--each`, every line is
    its own transaction, and every result line says what happened to that line."""
    if valid_first:
        lines = [json.dumps(MOVE), *lines]
    lines = [x.replace("\n", " ").replace("\r", " ") for x in lines]
    before = fingerprint(demo_db)
    result = apply_text(demo_db, tmp_path, "\n".join(lines) + "\n", *(["--each"] if each
                                                                       else []))
    code, out, err = result
    assert "Traceback" not in err
    if "not UTF-8" in err:  # a raw lone surrogate: the whole file is unreadable
        assert code == 2 and err.startswith("dispatch: line ") and err.count("\n") == 1, err
        assert fingerprint(demo_db) == before
        return
    if each:
        rows = [json.loads(x) for x in out.splitlines()]
        assert [r["line"] for r in rows] == [i for i, x in enumerate(lines, 1) if x.strip()]
        assert code == 0 if all(r["ok"] for r in rows) else code in (1, 2)
        for r in rows:
            if not r["ok"]:
                assert f"line {r['line']}" in r["error"], r
        if all(not r["ok"] for r in rows):
            assert fingerprint(demo_db) == before
        return
    if code == 0:
        assert all(json.loads(x)["ok"] for x in out.splitlines())
        return
    assert_clean_refusal(demo_db, before, result, len(lines))


# ---- the real program --------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "data", "code", "says"), [
    ("binary", b"{}\n\x00\xff\xfe garbage \x80\x81\n", 2, "line 2: not UTF-8 text"),
    ("byte_order_mark", b"\xef\xbb\xbf" + b'{"op": "nope"}\n', 2, "line 1, field op: unknown"),
    ("huge_line", b'{"op": "upsert_partner", "code": "X", "name": "' + b"x" * 1_100_000
     + b'"}\n', 2, "line 1: line is"),
    ("deep_nesting", b"[" * 100_000 + b"]" * 100_000 + b"\n", 2, "line 1: malformed JSON"),
    ("truncated", b'{"op": "move_assignment", "order": "SO-1001", "li', 2, "line 1: malformed"),
    ("unknown_op", b'{"op": "drop_database"}\n', 2, "line 1, field op: unknown op"),
    ("markup_name", b'{"op": "upsert_partner", "code": "BP1", "name": "[bold]\\u001b[2J"}\n', 1,
     "line 1: name contains control characters"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 20 else "")
def test_real_dispatch_apply_on_hostile_files(shared_demo_db: str, tmp_path: Path, name: str,
                                               data: bytes, code: int, says: str) -> None:
    demo_db = shared_demo_db
    before = fingerprint(demo_db)
    path = tmp_path / f"{name}.jsonl"
    path.write_bytes(data)
    proc = subprocess.run([sys.executable, "-m", "app.cli", "--db", demo_db, "apply", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert says in proc.stderr, proc.stderr
    assert fingerprint(demo_db) == before
