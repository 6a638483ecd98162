"""`dispatch ssh-session`: the one thing an SSH key may run, under OpenSSH or the embedded server.

sshd runs it as the forced command of a key (`restrict,pty,command="... ssh-session --user
NAME"`), so the user name comes from the key line, never from the client. Whatever the client
sends is ignored: the command it asked for (`SSH_ORIGINAL_COMMAND`) is refused, not run, and the
environment is rebuilt from scratch before anything reads it, so `DISPATCH_DB`, `LANG` or
`PYTHON*` passed with `SendEnv` change nothing. The database comes from `--db` in the key line or
the account's own data folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import logging.handlers
import os
import pwd
import re
import sys
import termios
import time
from collections.abc import Callable, Mapping
from pathlib import Path

SAFE_TERM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,39}$")
DEFAULT_TERM = "xterm-256color"
LOG_FORMAT = "%(asctime)s %(name)s[%(process)d]: %(message)s"


def safe_term(term: str | None) -> str:
    """The client's terminal type if it looks like one, else a common default."""
    return term if term and SAFE_TERM.match(term) else DEFAULT_TERM


def clean_environment(env: Mapping[str, str]) -> dict[str, str]:
    """A fresh environment for the console: only what the account and the terminal need.

    HOME and USER come from the password database, not from the variables; TERM is kept only
    when it looks like a terminal name; COLORTERM is set because OpenSSH does not forward it.
    """
    pw = pwd.getpwuid(os.getuid())
    return {
        "HOME": pw.pw_dir,
        "USER": pw.pw_name,
        "LOGNAME": pw.pw_name,
        "SHELL": pw.pw_shell or "/bin/sh",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TERM": safe_term(env.get("TERM")),
        "COLORTERM": "truecolor",
    }


def default_log_path() -> Path:
    from app.config import data_dir

    return data_dir() / "ssh.log"


def open_log(path: Path | None, *, stderr: bool = False, name: str = "dispatch-ssh"
             ) -> logging.Logger:
    """One line per event, in UTC, appended to `path` (made private on creation)."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    formatter = logging.Formatter(LOG_FORMAT, "%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.close(fd)
        handler: logging.Handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    if stderr:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    return logger


def peer(env: Mapping[str, str]) -> str:
    """`IP:PORT` of the client from sshd's SSH_CONNECTION (or the embedded server's hint)."""
    parts = env.get("SSH_CONNECTION", "").split()
    if len(parts) < 2:
        return "local"
    return "".join(ch for ch in f"{parts[0]}:{parts[1]}" if ch.isalnum() or ch in ".:[]")[:60]


ConsoleRunner = Callable[..., int]


def run_session(user: str, db: str | None, log_path: Path | None, tz: str | None = None, *,
                runner: ConsoleRunner | None = None) -> int:
    """Check the situation, open the console as `user`, log what happened. Returns the exit code.

    Reads the client's environment once (for the log and the refused command), then replaces it.
    """
    original = dict(os.environ)
    asked = original.get("SSH_ORIGINAL_COMMAND", "")
    where = peer(original)
    os.environ.clear()
    os.environ.update(clean_environment(original))
    if tz:
        os.environ["DISPATCH_TZ"] = tz
    log = open_log(log_path or default_log_path())

    if asked.strip():
        shown = asked.strip().replace("\n", " ")[:80]
        log.info("refused %s from %s: asked to run %r (only the console is allowed)",
                 user, where, shown)
        print(f"dispatch: this key opens the dispatch console only; {shown!r} was not run",
              file=sys.stderr)
        return 1
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        log.info("refused %s from %s: no terminal (connect with ssh -t)", user, where)
        print("dispatch: the console needs a terminal; connect with 'ssh -t'", file=sys.stderr)
        return 1
    _take_terminal()

    from app.config import Settings
    from app.db import repositories as repo
    from app.db.engine import open_database, read_connection

    settings = Settings.load(db)
    # No migration from a login (a quarter of a second, and not a session's business): `dispatch
    # serve` and `dispatch ssh authorized-keys` bring the schema up to date beforehand.
    engine = open_database(settings.db_url, migrate=False)
    with read_connection(engine) as conn:
        row = repo.user(conn, user)
        keys = repo.user_keys(conn, user) if row else []
    if row is None or not keys:
        why = "is not a registered user" if row is None else "has no SSH key any more"
        log.info("refused %s from %s: %s", user, where, why)
        print(f"dispatch: {user} {why}; ask a dispatcher", file=sys.stderr)
        return 1
    role = row["role"] + (f" {row['employee_code']}" if row["employee_code"] else "")
    log.info("console for %s (%s) from %s", user, role, where)
    started = time.monotonic()
    if runner is None:
        from app.tui.app import run_console  # the UI, in this process only

        runner = run_console
    code = 1
    try:
        code = runner(engine, settings, user=user)
        return code
    finally:
        log.info("console closed for %s after %.0fs (exit %s)", user,
                 time.monotonic() - started, code)


def _take_terminal() -> None:
    """Make stdin our controlling terminal when we lead a new session (the embedded server's
    child); under sshd it already is, and the call fails harmlessly."""
    with contextlib.suppress(OSError):
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
