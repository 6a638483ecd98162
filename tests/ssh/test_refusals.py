"""Whatever a client tries besides a registered key on a terminal is refused, and logged; on both
servers, with the OpenSSH client in tmux."""

from __future__ import annotations

import re

from conftest import SshWorld
from harness import Server, cli, wait_until


def logged(server: Server, pattern: str, since: list[int]) -> str:
    """The first log line matching `pattern` written since the mark `since`."""
    found = wait_until(lambda: re.search(pattern, server.log_since(since)), 5,
                       f"a log line matching {pattern!r}")
    assert isinstance(found, re.Match)
    return found.group(0)


def test_unknown_key_is_refused_and_logged(server: Server, ssh_world: SshWorld, open_term) -> None:
    key = ssh_world.keys["stranger"]
    fp = _fingerprint(key)
    since = server.log_mark()
    t = open_term(server.ssh(key, "-o", "BatchMode=yes"))
    assert t.wait_exit() == 255
    assert "Permission denied (publickey)" in t.transcript()
    if server.name == "openssh":
        logged(server, rf"Failed publickey for \S+ from 127\.0\.0\.1 .*{re.escape(fp)}", since)
    else:
        logged(server, rf"refused '\S+' from 127\.0\.0\.1:\d+: unknown key {re.escape(fp)}", since)


def test_password_attempt_is_refused_and_logged(server: Server, open_term) -> None:
    since = server.log_mark()
    t = open_term(server.ssh(None, "-o", "PubkeyAuthentication=no", "-o",
                             "PreferredAuthentications=password,keyboard-interactive",
                             "-o", "NumberOfPasswordPrompts=1"))
    assert t.wait_exit() == 255
    screen = t.transcript()
    assert "Permission denied (publickey)" in screen
    assert "password:" not in screen.lower()  # never even asked for one
    if server.name == "openssh":
        logged(server, r"Connection closed by authenticating user \S+ 127\.0\.0\.1 port \d+ "
               r"\[preauth\]", since)
    else:
        logged(server, r"refused '\S+' from 127\.0\.0\.1:\d+: no public key offered", since)


def test_session_without_terminal_is_refused_and_logged(server: Server, ssh_world: SshWorld,
                                                         open_term) -> None:
    since = server.log_mark()
    t = open_term(server.ssh(ssh_world.keys["sue"], tty=False))
    assert t.wait_exit() == 1
    assert "the console needs a terminal; connect with 'ssh -t'" in t.transcript()
    logged(server, r"refused sue from 127\.0\.0\.1:\d+: no terminal", since)


def test_another_command_is_refused_and_logged(server: Server, ssh_world: SshWorld, open_term,
                                               tmp_path) -> None:
    marker = tmp_path / "ran"
    since = server.log_mark()
    t = open_term(server.ssh(ssh_world.keys["dan"], remote=["touch", str(marker)]))
    code = t.wait_exit()
    logged(server, rf"refused dan from 127\.0\.0\.1:\d+: asked to run "
           rf"'touch {re.escape(str(marker))}'", since)
    assert not marker.exists()
    if server.name == "openssh":  # sshd ran the forced command, which refused
        assert code == 1
        assert "opens the dispatch console only" in t.transcript()
    else:  # the embedded server refuses the exec request itself
        assert code == 255
        assert "exec request failed" in t.transcript()


def _fingerprint(key) -> str:  # type: ignore[no-untyped-def]
    import subprocess

    out = subprocess.run(["ssh-keygen", "-lf", f"{key}.pub"], capture_output=True, text=True,
                         check=True).stdout
    return out.split()[1]


def test_a_withdrawn_key_is_refused_at_once(server: Server, ssh_world: SshWorld,
                                            open_term) -> None:
    """Removing a key counts at the next login: the embedded server looks keys up each time;
    under sshd the stale authorized_keys line still runs ssh-session, which refuses."""
    key = ssh_world.keys["ex"]
    fp = _fingerprint(key)
    if fp in cli(ssh_world.db_url, "users", "list").stdout:
        cli(ssh_world.db_url, "users", "key", "remove", "ex", fp)
    since = server.log_mark()
    t = open_term(server.ssh(key))
    if server.name == "openssh":
        assert t.wait_exit() == 1
        assert "ex has no SSH key any more" in t.transcript()
        logged(server, r"refused ex from 127\.0\.0\.1:\d+: has no SSH key any more", since)
    else:
        assert t.wait_exit() == 255
        logged(server, rf"refused '\S+' from 127\.0\.0\.1:\d+: unknown key {re.escape(fp)}",
               since)
