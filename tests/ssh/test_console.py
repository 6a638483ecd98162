"""The console over SSH, on both servers, seen through the OpenSSH client in tmux: each key gets
its user's role, whatever the client types or sends, and sessions see each other's changes."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from conftest import PG_ENV, SshWorld
from harness import EmbeddedServer, Server, Term, wait_until

# A client trying to point the console at another database: sshd accepts DISPATCH_* here
# (AcceptEnv in the test config) and the session must ignore it.
HOSTILE_ENV = ["-o", "SetEnv=DISPATCH_DB=sqlite:////nonexistent/other.db DISPATCH_TZ=Asia/Tokyo"]
MINE_ROW = re.compile(r"^\w{3} \d\d \w{3} \d\d:\d\d-\d\d:\d\d(?: \+\d+d)? +(\S+) +(\d+) +(\d+) "
                      r".*?(Assigned|Accepted|Started|Completed|Rejected)\s+▏", re.M)


def login(server: Server, world: SshWorld, open_term, user: str, *, width: int = 120,  # type: ignore[no-untyped-def]
          height: int = 40) -> Term:
    t: Term = open_term(server.ssh(world.keys[user], *HOSTILE_ENV), width, height)
    t.wait_for(f"user {user} (", timeout=20)
    return t


def on_screen(t: Term, title: str) -> str:
    """Wait until the console's top bar names this screen."""
    return t.wait_for(lambda s: s.startswith(f" Dispatch  {title}"))


def test_supervisor_browses_appointments_and_changes_nothing(server: Server, ssh_world: SshWorld,
                                                              open_term) -> None:
    before = ssh_world.snapshot()
    mark = server.log_mark()
    t = login(server, ssh_world, open_term, "sue")
    board = t.wait_for("assignments · sorted by")
    assert "user sue (supervisor)  read-only" in board
    assert "Asia/Tokyo" not in board  # the client's DISPATCH_TZ was ignored
    t.keys("F3")
    on_screen(t, "Appointments")
    count = ssh_world.query("SELECT count(*) FROM appointments")[0][0]
    origins = [o for (o,) in ssh_world.query(
        "SELECT origin_order || '/' || origin_line || '/' || origin_assignment FROM appointments"
        " ORDER BY start, id")]
    # Every appointment is on the screen (the window is tall enough for the demo's 20).
    screen = t.wait_for(lambda s: f"{count} appointments" in s and all(o in s for o in origins))
    footer = screen.rstrip("\n").split("\n")[-1]
    for edit in ("New", "Move", "Reassign", "Status", "Delete", "Generate"):
        assert f" {edit} " not in footer

    # Every edit key of every screen a supervisor can reach; then a key that must still work,
    # which proves the keys before it were read and opened nothing.
    t.keys("F2")
    on_screen(t, "Board")
    t.keys("n", "m", "r", "s", "x", "DC", "g", "e", "c", "a", "C-s")
    t.keys("o")
    on_screen(t, "Order ")
    t.keys("e", "g", "n", "C-s", "Escape")
    on_screen(t, "Board")
    t.keys("F5")
    on_screen(t, "Parameters")
    t.keys("Space", "C-s", "Tab", "Enter")
    t.keys("F3")
    on_screen(t, "Appointments")
    # The palette offers no edit command at all.
    for query in ("Move", "Delete", "Save"):
        t.keys("C-p")
        t.wait_for("Search for commands")
        t.type(query)
        time.sleep(0.3)
        palette = t.screen()
        assert not re.search(r"(New assignment|Move the assignment|Reassign the assignment|"
                             r"Delete the assignment|Generate assignments|Save the parameters|"
                             r"Change the assignment's status)", palette), palette
        for _ in range(3):  # the first escape may only fold the result list
            t.keys("Escape")
            try:
                t.wait_for(lambda s: "🔎" not in s, timeout=1)
                break
            except AssertionError:
                continue
        assert "🔎" not in t.screen()
    on_screen(t, "Appointments")
    t.keys("C-q")
    assert t.wait_exit() == 0
    assert ssh_world.snapshot() == before
    assert re.search(r"console for sue \(supervisor\) from 127\.0\.0\.1:\d+",
                     server.log_since(mark))


def test_technician_completes_one_and_a_dispatcher_sees_it_held(server: Server,
                                                                ssh_world: SshWorld,
                                                                open_term) -> None:
    technician_story(server, ssh_world, open_term)


if os.environ.get(PG_ENV):  # CI sets it; the SQLite half above always runs

    def test_the_same_on_postgresql_with_the_embedded_server(pg_ssh_world: SshWorld, open_term,
                                                             tmp_path: Path) -> None:
        server = EmbeddedServer(tmp_path, pg_ssh_world.db_url)
        try:
            technician_story(server, pg_ssh_world, open_term)
        finally:
            server.stop()


def technician_story(server: Server, ssh_world: SshWorld, open_term) -> None:  # type: ignore[no-untyped-def]
    """Technician and dispatcher logged in at once; the technician completes one of their own."""
    code = ssh_world.technician_code
    dan = login(server, ssh_world, open_term, "dan", height=50)
    tom = login(server, ssh_world, open_term, "tom")
    screen = tom.wait_for(lambda s: len(MINE_ROW.findall(s)) > 0)
    assert "user tom (technician, " + code + ")" in screen
    rows = [MINE_ROW.match(line) for line in screen.split("\n")]
    shown = [(m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)) for m in rows if m]
    theirs = ssh_world.query(
        "SELECT o.number, act.line, a.number, a.status FROM assignments a"
        " JOIN orders o ON o.id = a.order_id JOIN activities act ON act.id = a.activity_id"
        " WHERE a.employee_code = :code ORDER BY a.planned_start, a.id", code=code)
    assert shown == [tuple(r) for r in theirs]  # all of their own, nobody else's
    tom.keys("F2")  # the board is not for technicians
    time.sleep(0.3)
    assert " My assignments " in tom.screen() and " Board " not in tom.screen()

    index = next(i for i, r in enumerate(shown) if r[3] != "Completed")
    order, line, number, _ = shown[index]
    tom.keys("Home", *(["Down"] * index), "c")

    def completed() -> bool:
        return ssh_world.query(
            "SELECT a.status FROM assignments a JOIN orders o ON o.id = a.order_id"
            " JOIN activities act ON act.id = a.activity_id"
            " WHERE o.number = :o AND act.line = :l AND a.number = :n",
            o=order, l=line, n=number)[0][0] == "Completed"

    wait_until(completed, 5, f"{order}/{line}/{number} to be Completed in the database",
               every=0.01)
    committed = time.monotonic()
    held = re.compile(rf"^. {re.escape(order)} +\S+ +{line} +{number} .*Completed +Held ", re.M)
    dan.wait_for(lambda s: bool(held.search(s)), timeout=1.0)
    elapsed = time.monotonic() - committed
    assert elapsed < 1.0
    tom.wait_for(f"{order}/{line}/{number} is Completed")
    appointment = ssh_world.query(
        "SELECT status FROM appointments"
        " WHERE origin_order = :o AND origin_line = :l AND origin_assignment = :n",
        o=order, l=line, n=number)
    assert appointment == [("Held",)]
    for t in (tom, dan):
        t.keys("C-q")
        assert t.wait_exit() == 0


def test_window_resize_redraws_the_console(server: Server, ssh_world: SshWorld,
                                           open_term) -> None:
    t = login(server, ssh_world, open_term, "sue", width=120, height=36)

    def footer_at(width: int, height: int):  # type: ignore[no-untyped-def]
        def check(screen: str) -> bool:
            lines = screen.split("\n")
            last = lines[height - 1] if len(lines) >= height else ""
            # The footer sits on the last row, its right end (the palette hint) at the edge.
            return last.rstrip().endswith("^p palette") and len(last.rstrip()) > width - 4
        return check

    t.wait_for(footer_at(120, 36))
    for width, height in ((150, 48), (90, 24)):
        t.resize(width, height)
        screen = t.wait_for(footer_at(width, height), timeout=5)
        assert max(len(x) for x in screen.split("\n")) <= width
        assert screen.split("\n")[0].startswith(" Dispatch ")
    t.keys("C-q")
    assert t.wait_exit() == 0
