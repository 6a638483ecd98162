"""What only the embedded server does: a session limit, an idle timeout, a host key kept across
restarts, consoles forked from a warm process or started fresh."""

from __future__ import annotations

import re
import time

from conftest import SshWorld
from harness import EmbeddedServer, Term


def test_session_limit_idle_timeout_and_a_stable_host_key(ssh_world: SshWorld, open_term,
                                                          tmp_path) -> None:
    # 0.05 minutes: three seconds without a key press closes the session. Consoles start as new
    # interpreters here (the other tests use the fork server).
    server = EmbeddedServer(tmp_path, ssh_world.db_url, "--max-sessions", "1",
                            "--idle-timeout", "0.05", "--no-fork-server")
    try:
        first: Term = open_term(server.ssh(ssh_world.keys["sue"]))
        first.wait_for("user sue (supervisor)", timeout=20)
        assert re.search(r"session \d+ for sue started \(pid \d+, xterm-256color 120x36\)",
                         server.log())  # not ", forked"
        second: Term = open_term(server.ssh(ssh_world.keys["dan"]))
        assert second.wait_exit() == 1
        assert "the server is full (1 sessions); try again later" in second.transcript()
        assert re.search(r"refused dan from 127\.0\.0\.1:\d+: 1 sessions open, the limit",
                         server.log())
        # Keys keep the first session alive; then silence ends it.
        for _ in range(4):
            first.keys("Down")
            time.sleep(1)
        assert first.exit_status() is None
        assert first.wait_exit(timeout=10) == 1
        assert "closed after" in first.transcript()
        assert re.search(r"session \d+ for sue closed after 3s without input", server.log())
        key = server.host_public_key
    finally:
        server.stop()
    again = EmbeddedServer(tmp_path, ssh_world.db_url)
    try:
        assert again.host_public_key == key
        assert "created host key" not in again.log().split("stopped")[-1]
        t: Term = open_term(again.ssh(ssh_world.keys["sue"]))  # strict host key checking
        t.wait_for("user sue (supervisor)", timeout=20)
        assert "xterm-256color 120x36, forked)" in again.log()
        t.keys("C-q")
        assert t.wait_exit() == 0
    finally:
        again.stop()
