"""The `dispatch` command: parse, call the coordinator or a query, print. Nothing more."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import pendulum
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from app.config import Settings
from app.db import repositories as repo
from app.db.engine import (
    SchemaError,
    current_revision,
    head_revision,
    open_database,
    read_connection,
    upgrade,
)
from app.db.models import Role
from app.sync import commands as c
from app.sync.coordinator import Change, Coordinator
from app.sync.errors import DispatchError
from app.sync.jsonl import ParseError, parse_text

EXIT_OK, EXIT_REFUSED, EXIT_UNREADABLE = 0, 1, 2


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dispatch",
        description="Field-service dispatch console: assignments mirrored as CRM appointments.",
    )
    p.add_argument("--db", help="database URL (default: $DISPATCH_DB or the embedded SQLite file)")
    p.add_argument("--user", help="open the console as this registered user")
    sub = p.add_subparsers(dest="command")

    d = sub.add_parser("demo", help="load a realistic, deterministic demo data set")
    d.add_argument("--orders", type=int, default=40)
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--start", help="first day (ISO date); default: Monday of this week")
    d.add_argument("--if-empty", action="store_true", help="only when there are no orders yet")

    a = sub.add_parser("apply", help="apply JSON-lines commands (one transaction by default)")
    a.add_argument("file", nargs="?", default="-")
    a.add_argument("--as", dest="as_user", help="act as this registered user")
    a.add_argument("--each", action="store_true", help="commit line by line")

    s = sub.add_parser("show", help="show one assignment or appointment")
    s.add_argument("what", choices=["assignment", "appointment"])
    s.add_argument("key", help="ORDER/LINE/NO or an appointment id")
    s.add_argument("--json", action="store_true")

    li = sub.add_parser("list", help="list assignments or appointments")
    li.add_argument("what", choices=["assignments", "appointments"])
    li.add_argument("--order")
    li.add_argument("--engineer")
    li.add_argument("--limit", type=int)
    li.add_argument("--json", action="store_true")

    sub.add_parser("check", help="verify the whole database against the rules")

    h = sub.add_parser("history", help="print the change journal")
    h.add_argument("--limit", type=int, default=50)
    h.add_argument("--order")
    h.add_argument("--assignment")
    h.add_argument("--json", action="store_true")

    u = sub.add_parser("users", help="registered users and their roles")
    usub = u.add_subparsers(dest="users_command", required=True)
    ua = usub.add_parser("add")
    ua.add_argument("name")
    ua.add_argument("--role", required=True, choices=["dispatcher", "technician", "supervisor"])
    ua.add_argument("--employee")
    ua.add_argument("--key", metavar="FILE.pub", help="an SSH public key that logs in as this user")
    usub.add_parser("list", help="users with their SSH keys' fingerprints")
    uk = usub.add_parser("key", help="add or remove a user's SSH public key")
    uksub = uk.add_subparsers(dest="key_command", required=True)
    uka = uksub.add_parser("add")
    uka.add_argument("name")
    uka.add_argument("file", metavar="FILE.pub")
    ukr = uksub.add_parser("remove")
    ukr.add_argument("name")
    ukr.add_argument("key", help="fingerprint (SHA256:...), comment, or the FILE.pub itself")

    add_ssh_parsers(sub)

    db = sub.add_parser("db", help="schema migrations")
    dbsub = db.add_subparsers(dest="db_command", required=True)
    dbsub.add_parser("upgrade")
    dbsub.add_parser("current")
    _add_calendar_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except CliError as exc:
        print(f"dispatch: {exc}", file=sys.stderr)
        return exc.code
    except DispatchError as exc:
        print(f"dispatch: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except SchemaError as exc:
        print(f"dispatch: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    except SQLAlchemyError as exc:
        first = str(getattr(exc, "orig", exc)).splitlines()[0]
        print(f"dispatch: database error: {first}", file=sys.stderr)
        return EXIT_UNREADABLE
    except KeyboardInterrupt:
        return 130


def run(args: argparse.Namespace) -> int:
    settings = Settings.load(args.db)
    if args.command == "db":
        if args.db_command == "upgrade":
            upgrade(settings.db_url)
        engine = open_database(settings.db_url, migrate=False)
        print(f"{current_revision(engine) or '(empty)'} (head {head_revision(settings.db_url)})")
        return EXIT_OK
    if args.command in SSH_COMMANDS:
        return run_ssh_command(args)
    engine = open_database(settings.db_url)
    if args.command is None:
        from app.tui.app import run_console

        return run_console(engine, settings, user=args.user)
    handler = {
        "demo": cmd_demo, "apply": cmd_apply, "show": cmd_show, "list": cmd_list,
        "check": cmd_check, "history": cmd_history, "users": cmd_users,
        "calendar": cmd_calendar,
    }[args.command]
    return handler(engine, settings, args)


def local_actor() -> c.Actor:
    """Whoever runs the command line on this machine is the local dispatcher."""
    try:
        name = getpass.getuser()
    except Exception:
        name = "dispatcher"
    return c.Actor(name, Role.DISPATCHER)


def resolve_actor(engine: Engine, name: str | None) -> c.Actor:
    if not name:
        return local_actor()
    if name == "calendar":
        return c.Actor.calendar()
    with read_connection(engine) as conn:
        row = repo.user(conn, name)
    if row is None:
        raise CliError(f"unknown user {name!r}: add it with 'dispatch users add'")
    return c.Actor(row["name"], Role(row["role"]), row["employee_code"])


def cmd_demo(engine: Engine, settings: Settings, args: argparse.Namespace) -> int:
    from app.sync import demo

    if args.if_empty:
        with read_connection(engine) as conn:
            if repo.list_assignments(conn, limit=1) or repo.last_journal_id(conn):
                print("demo: the database has data already; nothing loaded")
                return EXIT_OK
    start = None
    if args.start:
        try:
            start = pendulum.parse(args.start, tz=demo.TZ)
        except Exception:
            raise CliError(f"--start {args.start!r} is not an ISO date", EXIT_UNREADABLE) from None
    if args.orders < 0:
        raise CliError("--orders must be 0 or more", EXIT_UNREADABLE)
    n = demo.load(Coordinator(engine), n_orders=args.orders, seed=args.seed,
                  start=start, actor=local_actor())  # type: ignore[arg-type]
    with read_connection(engine) as conn:
        count = len(repo.list_assignments(conn))
    print(f"demo: {args.orders} orders, {n} commands, {count} assignments")
    return EXIT_OK


def _read_lines(source: str) -> list[tuple[int, str]]:
    try:
        if source == "-":
            stdin = getattr(sys.stdin, "buffer", None)
            data = stdin.read() if stdin is not None else sys.stdin.read().encode("utf-8")
        else:
            with open(source, "rb") as f:
                data = f.read()
    except OSError as exc:
        raise CliError(f"cannot read {source}: {exc.strerror}", EXIT_UNREADABLE) from None
    try:
        text = data.decode("utf-8-sig")  # a leading byte-order mark is not part of line 1
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CliError(f"line {line}: not UTF-8 text (byte {exc.start} of {source}); nothing"
                       " was applied", EXIT_UNREADABLE) from None
    # Lines end at "\n" only: str.splitlines() also breaks at U+2028, U+0085 and others,
    # which JSON allows unescaped inside strings, and would misnumber every later line.
    return [(i, line.removesuffix("\r")) for i, line in enumerate(text.split("\n"), 1)
            if line.strip()]


def _result(line: int, change: Change | None = None, error: DispatchError | None = None,
            ) -> dict[str, Any]:
    if change is not None:
        return {"ok": True, "line": line, "summary": change.summary,
                "assignments": change.assignments, "appointments": change.appointments,
                "deleted_appointments": change.deleted_appointments}
    assert error is not None
    return {"ok": False, "line": line, "error": str(error), "field": error.field,
            "kind": error.kind}


def cmd_apply(engine: Engine, settings: Settings, args: argparse.Namespace) -> int:
    actor = resolve_actor(engine, args.as_user)
    lines = _read_lines(args.file)
    coordinator = Coordinator(engine)
    out = sys.stdout
    if args.each:
        code = EXIT_OK
        for n, text in lines:
            try:
                change = coordinator.execute(parse_text(text, n), actor)
                print(json.dumps(_result(n, change)), file=out)
            except ParseError as exc:
                print(json.dumps(_result(n, error=exc)), file=out)
                print(f"dispatch: {exc}", file=sys.stderr)
                code = max(code, EXIT_UNREADABLE)
            except DispatchError as exc:
                exc.message = f"line {n}: {exc.message}"
                print(json.dumps(_result(n, error=exc)), file=out)
                print(f"dispatch: {exc}", file=sys.stderr)
                code = max(code, EXIT_REFUSED)
        return code
    commands: list[c.Command] = []
    for n, text in lines:
        try:
            commands.append(parse_text(text, n))
        except ParseError as exc:
            _all_or_nothing_failed(lines, n, exc)
            return EXIT_UNREADABLE
    try:
        changes = coordinator.execute_many(commands, actor)
    except DispatchError as exc:
        index = getattr(exc, "index", 0)
        n = lines[index][0]
        exc.message = f"line {n}: {exc.message}"
        _all_or_nothing_failed(lines, n, exc)
        return EXIT_REFUSED
    for (n, _), change in zip(lines, changes, strict=True):
        print(json.dumps(_result(n, change)))
    return EXIT_OK


def _all_or_nothing_failed(lines: list[tuple[int, str]], bad: int, exc: DispatchError) -> None:
    for n, _ in lines:
        if n == bad:
            print(json.dumps(_result(n, error=exc)))
        else:
            print(json.dumps({"ok": False, "line": n, "error": f"not applied: line {bad} was"
                              " refused and the file is one transaction", "kind": "rolled_back"}))
    print(f"dispatch: {exc} (nothing was applied)", file=sys.stderr)


def cmd_show(engine: Engine, settings: Settings, args: argparse.Namespace) -> int:
    with read_connection(engine) as conn:
        if args.what == "assignment":
            try:
                ref = c.AssignmentRef.parse(args.key)
            except ValueError as exc:
                raise CliError(str(exc), EXIT_UNREADABLE) from None
            row = repo.find_assignment(conn, ref.order, ref.line, ref.assignment)
            if row is None:
                raise CliError(f"assignment {ref} does not exist")
            data = repo.assignment_json(conn, row)
        else:
            if not args.key.isdigit():
                raise CliError(f"appointment id {args.key!r} is not a number", EXIT_UNREADABLE)
            found = repo.appointment_json(conn, int(args.key))
            if found is None:
                raise CliError(f"appointment {args.key} does not exist")
            data = found
    if args.json:
        print(json.dumps(data, indent=2))
    elif args.what == "assignment":
        print(format_assignment(data, settings.tz))
    else:
        print(format_appointment(data, settings.tz))
    return EXIT_OK


def local(value: str | None, tz: str) -> str:
    if not value:
        return "-"
    return pendulum.parse(value).in_tz(tz).format("ddd YYYY-MM-DD HH:mm Z")  # type: ignore[union-attr]


def format_assignment(d: dict[str, Any], tz: str) -> str:
    lines = [
        f"Assignment {d['order']}/{d['line']}/{d['assignment']}  ({d['kind']}, order "
        f"{d['order_status']})",
        f"  activity   {d['activity']}",
        f"  engineer   {d['engineer']} {d['engineer_name']}",
        f"  planned    {local(d['planned_start'], tz)}  ->  {local(d['planned_end'], tz)}",
        f"  status     {d['status']}   (version {d['version']})",
    ]
    if d["appointment"]:
        lines += ["", format_appointment(d["appointment"], tz)]
    else:
        lines.append("  appointment  none (P1 was off when it was created)")
    return "\n".join(lines)


def format_appointment(d: dict[str, Any], tz: str) -> str:
    o = d["origin"]
    origin = f"{o['order']}/{o['line']}/{o['assignment']}" + ("" if o["mirrors"] else
                                                               " (deleted; kept as history)")
    lines = [
        f"Appointment {d['id']}: {d['subject']}",
        f"  location     {d['location']}",
        f"  status       {d['status']}",
        f"  start        {local(d['start'], tz)}",
        f"  end          {local(d['end'], tz)}",
        f"  due date     {local(d['due_date'], tz)}",
        f"  show time as {d['show_time_as']}",
        f"  partner      {d['business_partner']['code']} {d['business_partner']['name']}",
        f"  organizer    {d['organizer']['code']} {d['organizer']['name']}",
        f"  origin       {origin}",
        "  information",
        *("    " + x for x in d["information"].splitlines()),
        "  participants",
        *(f"    {p['type']:<9} {p['code']:<6} {p['name']:<24} {p['attendance']:<18} "
          f"{p['email'] or '(no e-mail: not sent)'}" for p in d["participants"]),
        "  references",
        *(f"    {r['type']:<14} {r['sequence']:>3}  {r['note']}" for r in d["references"]),
        "  related orders",
        *(f"    {x['kind']} {x['order']}/{x['line']}/{x['assignment']}" for x in d["related_orders"]),
    ]
    return "\n".join(lines)


def cmd_list(engine: Engine, settings: Settings, args: argparse.Namespace) -> int:
    with read_connection(engine) as conn:
        if args.what == "assignments":
            rows = repo.list_assignments(conn, order=args.order, engineer=args.engineer,
                                         limit=args.limit)
            if args.json:
                print(json.dumps([
                    {"order": r["order"], "kind": r["kind"], "line": r["line"],
                     "assignment": r["assignment"], "engineer": r["engineer"],
                     "planned_start": repo.iso(r["planned_start"]),
                     "planned_end": repo.iso(r["planned_end"]), "status": r["status"],
                     "appointment": r["appointment_id"],
                     "appointment_status": r["appointment_status"]} for r in rows], indent=2))
                return EXIT_OK
            print(f"{'ASSIGNMENT':<18} {'KIND':<24} {'ENGINEER':<6} {'START':<17} {'END':<17} "
                  f"{'STATUS':<10} APPOINTMENT")
            for r in rows:
                print(f"{r['key']:<18} {r['kind']:<24} {r['engineer']:<6} "
                      f"{_short(r['planned_start'], settings.tz):<17} "
                      f"{_short(r['planned_end'], settings.tz):<17} {r['status']:<10} "
                      f"{r['appointment_id'] or '-'} {r['appointment_status'] or ''}")
            print(f"{len(rows)} assignments")
        else:
            rows = repo.list_appointments(conn, order=args.order, engineer=args.engineer,
                                          limit=args.limit)
            if args.json:
                print(json.dumps([
                    {"id": r["id"], "subject": r["subject"], "status": r["status"],
                     "start": repo.iso(r["start"]), "end": repo.iso(r["end"]),
                     "origin": {"order": r["origin_order"], "line": r["origin_line"],
                                "assignment": r["origin_assignment"]},
                     "mirrors": r["assignment_id"] is not None} for r in rows], indent=2))
                return EXIT_OK
            print(f"{'ID':>6} {'START':<17} {'END':<17} {'STATUS':<9} SUBJECT")
            for r in rows:
                print(f"{r['id']:>6} {_short(r['start'], settings.tz):<17} "
                      f"{_short(r['end'], settings.tz):<17} {r['status']:<9} {r['subject']}")
            print(f"{len(rows)} appointments")
    return EXIT_OK


def _short(value: Any, tz: str) -> str:
    return pendulum.instance(value).in_tz(tz).format("YYYY-MM-DD HH:mm") if value else "-"


def cmd_check(engine: Engine, settings: Settings, args: argparse.Namespace) -> int:
    from app.sync.check import violations

    count = 0
    with read_connection(engine) as conn:
        for v in violations(conn):
            print(v)
            count += 1
    if count:
        print(f"check: {count} violations", file=sys.stderr)
        return EXIT_REFUSED
    print("check: the database follows the rules")
    return EXIT_OK


def cmd_history(engine: Engine, settings: Settings, args: argparse.Namespace) -> int:
    with read_connection(engine) as conn:
        rows = repo.history(conn, limit=args.limit, order=args.order, assignment=args.assignment)
    for r in rows:
        if args.json:
            print(json.dumps({**r, "at": repo.iso(r["at"])}))
        else:
            print(f"{r['id']:>7} {_short(r['at'], settings.tz)} {r['actor']:<12} {r['op']:<22} "
                  f"{r['detail']}")
    return EXIT_OK


def cmd_users(engine: Engine, settings: Settings, args: argparse.Namespace) -> int:
    coordinator = Coordinator(engine)
    if args.users_command == "add":
        commands: list[c.Command] = [c.AddUser(args.name, args.role, args.employee)]
        if args.key:
            commands.append(c.AddUserKey(args.name, _read_key_file(args.key)))
        for change in coordinator.execute_many(commands, local_actor()):
            print(change.summary)
        return EXIT_OK
    if args.users_command == "key":
        if args.key_command == "add":
            cmd: c.Command = c.AddUserKey(args.name, _read_key_file(args.file))
        else:
            cmd = c.RemoveUserKey(args.name, _key_reference(args.key))
        print(coordinator.execute(cmd, local_actor()).summary)
        return EXIT_OK
    with read_connection(engine) as conn:
        users, keys = repo.users(conn), repo.user_keys(conn)
    for u in users:
        print(f"{u['name']:<20} {u['role']:<11} {u['employee_code'] or ''}")
        for k in keys:
            if k["user_name"] == u["name"]:
                print(f"    {k['fingerprint']}  {k['key_type']}  {k['comment']}".rstrip())
    return EXIT_OK


# ---- calendar (issue 4): parse and print only; the work is in app/calendar ------------------


def _add_calendar_parser(sub: Any) -> None:
    cal = sub.add_parser("calendar", help="sync with the organizer's calendar (CalDAV, iCalendar)")
    csub = cal.add_subparsers(dest="calendar_command", required=True)
    st = csub.add_parser("setup", help="the calendar server and collections (no password stored)")
    st.add_argument("--url", help="the CalDAV server URL")
    st.add_argument("--organizer-calendar", help="URL of the organizer's calendar collection")
    st.add_argument("--engineer", action="append", default=[], metavar="CODE=URL",
                    help="an engineer's calendar collection (R16); repeat for more")
    st.add_argument("--username")
    pw = st.add_mutually_exclusive_group()
    pw.add_argument("--password-env", metavar="VAR",
                    help="environment variable holding the password (default"
                         " DISPATCH_CALDAV_PASSWORD when --username is given)")
    pw.add_argument("--password-file", metavar="PATH", help="file holding the password")
    st.add_argument("--tz", default=None, help="TZID of the events (default: DISPATCH_TZ)")
    st.add_argument("--check", action="store_true", help="ask the server for each calendar first")
    st.add_argument("--off", action="store_true", help="stop queueing changes for the calendar")
    ss = csub.add_parser("status", help="configuration, queue and last pull")
    ss.add_argument("--json", action="store_true")
    sy = csub.add_parser("sync", help="pull the calendars, then push the queued changes")
    sy.add_argument("--pull-only", action="store_true")
    sy.add_argument("--push-only", action="store_true")
    sy.add_argument("--json", action="store_true")
    ex = csub.add_parser("export", help="iCalendar file(s) for import, or iTIP REQUEST/CANCEL")
    ex.add_argument("--out", default="-", help="one .ics with every event (default: stdout)")
    ex.add_argument("--itip", metavar="DIR", help="one iTIP file per appointment into DIR")
    ex.add_argument("--cancel", action="store_true", help="with --itip: METHOD:CANCEL")
    ex.add_argument("--appointment", type=int, action="append", default=[], metavar="ID")


def cmd_calendar(engine: Engine, settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from app.calendar import sync as calsync
    from app.calendar.caldav_gateway import ConfigError, ServerRefused, Unavailable

    try:
        if args.calendar_command == "setup":
            if args.off:
                print(calsync.disable(engine))
                return EXIT_OK
            if not args.url or not args.organizer_calendar and not args.engineer:
                raise CliError("calendar setup needs --url and --organizer-calendar"
                               " (or --engineer CODE=URL)")
            engineers: dict[str, str] = {}
            for item in args.engineer:
                code, sep, url = item.partition("=")
                if not sep or not code or not url:
                    raise CliError(f"--engineer {item!r} is not CODE=URL")
                engineers[code] = url
            password_env = args.password_env or (
                "DISPATCH_CALDAV_PASSWORD" if args.username and not args.password_file else None)
            print(calsync.setup(
                engine, server_url=args.url, organizer_calendar=args.organizer_calendar,
                engineers=engineers, username=args.username, password_env=password_env,
                password_file=args.password_file, tzid=args.tz or settings.tz,
                check=args.check))
            return EXIT_OK
        if args.calendar_command == "status":
            info = calsync.status(engine)
            if args.json:
                print(json.dumps(info))
            elif not info["configured"]:
                print("no calendar is set up: dispatch calendar setup --url ... ")
            else:
                print(f"server   {info['server']} (user {info['username'] or '-'}, password"
                      f" from {info['password_from']}){'' if info['enabled'] else ' - OFF'}")
                print(f"events   TZID {info['tzid']}; {info['appointments_synced']} appointments"
                      f" synced, {info['queued']} queued, {info['retrying']} waiting to retry,"
                      f" {info['errors']} refused")
                for col in info["calendars"]:
                    who = "organizer" if col["kind"] == "organizer" else col["employee"]
                    print(f"calendar {who:<10} {col['url']}  last pull"
                          f" {col['last_pull'] or 'never'}"
                          + (f"  error: {col['last_error']}" if col["last_error"] else ""))
                if info["last_error"]:
                    print(f"last error: {info['last_error']}")
            return EXIT_OK
        if args.calendar_command == "sync":
            report = calsync.sync_once(engine, pull=not args.push_only,
                                       push=not args.pull_only, force=True)
            print(json.dumps(report.to_json()) if args.json else report.summary())
            return EXIT_REFUSED if report.unavailable or report.errors else EXIT_OK
        # export
        if args.itip:
            files = calsync.export(engine, appointment_ids=args.appointment or None,
                                   method="CANCEL" if args.cancel else "REQUEST")
            folder = Path(args.itip)
            folder.mkdir(parents=True, exist_ok=True)
            for ap_id, data in files:
                (folder / f"appointment-{ap_id}.ics").write_bytes(data)
            print(f"wrote {len(files)} iTIP {'CANCEL' if args.cancel else 'REQUEST'} file(s)"
                  f" to {folder}")
            return EXIT_OK
        if args.cancel:
            raise CliError("--cancel goes with --itip DIR")
        [(_, data)] = calsync.export(engine, appointment_ids=args.appointment or None)
        if args.out == "-":
            sys.stdout.write(data.decode())
        else:
            Path(args.out).write_bytes(data)
            print(f"wrote {args.out}")
        return EXIT_OK
    except (ConfigError, ServerRefused, Unavailable) as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"{getattr(exc, 'filename', '') or ''}: {exc.strerror or exc}") from None


def _read_key_file(path: str) -> str:
    """The text of a public key file; the coordinator checks what it says."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(64 * 1024)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}", EXIT_UNREADABLE) from None
    except UnicodeDecodeError:
        raise CliError(f"{path} is not a text public key (is it a binary or private key?)",
                       EXIT_UNREADABLE) from None
    from app.ssh.keys import BadKey, parse_public_key

    try:
        parse_public_key(text, where=path)  # the coordinator checks again; this names the file
    except BadKey as exc:
        raise CliError(str(exc), EXIT_UNREADABLE) from None
    return text


def _key_reference(text: str) -> str:
    """A fingerprint or comment as given, or the fingerprint of the named .pub file."""
    from app.ssh.keys import parse_public_key

    if text.startswith("SHA256:") or not os.path.isfile(text):
        return text
    return parse_public_key(_read_key_file(text), where=text).fingerprint


# ---- SSH (issue 5): key lines for OpenSSH, the forced command, the embedded server ---------
# The logic lives in app/ssh; these functions only parse and hand over.

SSH_COMMANDS = {"ssh", "ssh-session", "serve"}


def add_ssh_parsers(sub: Any) -> None:
    sh = sub.add_parser("ssh", help="OpenSSH integration: the authorized_keys file")
    shsub = sh.add_subparsers(dest="ssh_command", required=True)
    ak = shsub.add_parser("authorized-keys",
                          help="print the authorized_keys file for the shared account")
    ak.add_argument("--output", metavar="FILE", help="write FILE atomically instead of printing")
    ak.add_argument("--program", metavar="PATH",
                    help="the dispatch program sshd should run (default: this one)")
    ak.add_argument("--log", metavar="FILE", help="log file for ssh-session (default: data folder)")

    ss = sub.add_parser("ssh-session", help="the console for one SSH login (sshd's forced command)")
    ss.add_argument("--user", required=True)
    ss.add_argument("--log", metavar="FILE", help=argparse.SUPPRESS)
    ss.add_argument("--tz", help=argparse.SUPPRESS)

    sv = sub.add_parser("serve", help="run the embedded SSH server (public keys only)")
    sv.add_argument("--listen", default="127.0.0.1:2222", metavar="HOST:PORT")
    sv.add_argument("--host-key", metavar="FILE",
                    help="default: ssh_host_ed25519_key in the data folder, created if missing")
    sv.add_argument("--max-sessions", type=int, default=20)
    sv.add_argument("--idle-timeout", type=float, default=30.0, metavar="MINUTES")
    sv.add_argument("--log", metavar="FILE", help="default: ssh.log in the data folder")
    sv.add_argument("--no-fork-server", action="store_true",
                    help="start each console as a new interpreter instead of forking it")


def run_ssh_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    if args.command == "ssh-session":
        from app.ssh.session import run_session

        return run_session(args.user, args.db, Path(args.log) if args.log else None, args.tz)
    settings = Settings.load(args.db)
    engine = open_database(settings.db_url)
    if args.command == "ssh":
        from app.ssh.authorized import authorized_keys, dispatch_command, write_atomically

        with read_connection(engine) as conn:
            keys = repo.user_keys(conn)
        explicit_db = args.db or os.environ.get("DISPATCH_DB")
        try:
            text = authorized_keys(keys, args.program or dispatch_command(),
                                   db=settings.db_url if explicit_db else None, log=args.log)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        if args.output:
            write_atomically(Path(args.output), text)
            print(f"{args.output}: {len(keys)} keys", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return EXIT_OK
    from app.config import data_dir
    from app.ssh.server import ServeOptions, parse_listen, run_server
    from app.ssh.session import open_log

    try:
        host, port = parse_listen(args.listen)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_UNREADABLE) from None
    if args.max_sessions < 1 or args.idle_timeout <= 0:
        raise CliError("--max-sessions and --idle-timeout must be positive", EXIT_UNREADABLE)
    log_path = Path(args.log) if args.log else data_dir() / "ssh.log"
    options = ServeOptions(
        host=host, port=port, db_url=settings.db_url, tz=settings.tz,
        host_key=Path(args.host_key) if args.host_key else data_dir() / "ssh_host_ed25519_key",
        log_path=log_path, max_sessions=args.max_sessions, idle_timeout=args.idle_timeout * 60,
        fork_server=not args.no_fork_server)
    return run_server(options, engine, open_log(log_path, stderr=True))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
