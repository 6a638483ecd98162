"""`dispatch serve`: an SSH server of its own (asyncssh), for a team with no sshd to configure.

Public-key authentication only, against the keys registered with `dispatch users`; the key says
who logs in, whatever user name the client gives. Each session runs `dispatch ssh-session` in a
new process on a new pty (the console never runs inside the server, so one session's crash or
memory cannot touch another's); bytes are copied both ways, window sizes are set on the pty
(the kernel then signals the console), and the child is hung up when the client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import signal
import struct
import sys
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
from sqlalchemy import Engine

from app.db import repositories as repo
from app.db.engine import read_connection
from app.ssh.forkserver import ForkServer
from app.ssh.session import clean_environment, safe_term

READ_CHUNK = 65536
HANGUP_GRACE = 2.0


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 2222
    db_url: str = ""
    tz: str = "UTC"
    host_key: Path = Path("ssh_host_ed25519_key")
    log_path: Path | None = None
    max_sessions: int = 20
    idle_timeout: float = 1800.0  # seconds without a key press
    login_timeout: float = 30.0
    fork_server: bool = True  # fork consoles from a warm process (False: a new interpreter each)


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `[IPv6]:PORT` or `:PORT` (port 0: any free one); a clear error otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"--listen {text!r} is not HOST:PORT (for example 127.0.0.1:2222)")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def load_host_key(path: Path, log: logging.Logger) -> asyncssh.SSHKey:
    """The server's identity: read it, or create it on the first start (ed25519, mode 0600)."""
    if path.exists():
        return asyncssh.read_private_key(str(path))
    key = asyncssh.generate_private_key("ssh-ed25519")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key())
    path.with_name(path.name + ".pub").write_bytes(key.export_public_key())
    log.info("created host key %s (%s)", path, key.get_fingerprint("sha256"))
    return key


@dataclass
class Hub:
    """What all connections share: options, the database, the log, the open sessions."""

    options: ServeOptions
    engine: Engine
    log: logging.Logger
    sessions: set[ConsoleSession] = field(default_factory=set)
    next_id: int = 1
    forks: ForkServer | None = None

    def owner(self, fingerprint: str) -> dict[str, Any] | None:
        with read_connection(self.engine) as conn:
            return repo.key_owner(conn, fingerprint)

    def session_args(self, user: str) -> list[str]:
        """`dispatch` arguments of one console: the user, and the server's own settings."""
        args = ["--db", self.options.db_url, "ssh-session", "--user", user, "--tz",
                self.options.tz]
        if self.options.log_path is not None:
            args += ["--log", str(self.options.log_path)]
        return args

    async def watch_idle(self) -> None:
        every = max(0.2, min(self.options.idle_timeout / 4, 30.0))
        while True:
            await asyncio.sleep(every)
            now = time.monotonic()
            for s in list(self.sessions):
                if now - s.last_input > self.options.idle_timeout:
                    s.close_idle()


class DispatchServer(asyncssh.SSHServer):
    """One per connection: authenticates by key and remembers who it is."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.conn: asyncssh.SSHServerConnection | None = None
        self.peer = "?"
        self.ssh_user = ""
        self.user: dict[str, Any] | None = None
        self.fingerprint = ""
        self.refused: dict[str, None] = {}
        self.authenticated = False

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        host, port = (conn.get_extra_info("peername") or ("?", 0))[:2]
        self.peer = f"{host}:{port}"

    def connection_lost(self, exc: Exception | None) -> None:
        if self.authenticated:
            return
        name = self.ssh_user[:40] or "?"
        if self.refused:
            self.hub.log.info("refused %r from %s: unknown key %s", name, self.peer,
                              ", ".join(self.refused))
        else:
            self.hub.log.info("refused %r from %s: no public key offered (passwords and other"
                              " methods are not accepted)", name, self.peer)

    def begin_auth(self, username: str) -> bool:
        self.ssh_user = "".join(ch for ch in username if ch.isprintable())
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        fp = key.get_fingerprint("sha256")
        owner = await asyncio.to_thread(self.hub.owner, fp)
        if owner is None:
            self.refused.setdefault(fp, None)
            return False
        self.user, self.fingerprint = owner, fp
        return True

    def auth_completed(self) -> None:
        self.authenticated = True
        assert self.user is not None
        u = self.user
        role = u["role"] + (f" {u['employee_code']}" if u["employee_code"] else "")
        self.hub.log.info("login %s (%s) key %s from %s as %r", u["name"], role,
                          self.fingerprint, self.peer, self.ssh_user[:40])

    def session_requested(self) -> ConsoleSession:
        assert self.user is not None
        return ConsoleSession(self.hub, self.user["name"], self.peer)


class ConsoleSession(asyncssh.SSHServerSession[bytes]):
    """One channel: a console process on its own pty, or a refusal."""

    def __init__(self, hub: Hub, user: str, peer: str) -> None:
        self.hub, self.user, self.peer = hub, user, peer
        self.chan: asyncssh.SSHServerChannel[bytes] | None = None
        self.term: str | None = None
        self.size = (80, 24, 0, 0)
        self.master = -1
        self.pid = 0
        self.exited = False
        self.pending = b""
        self.last_input = time.monotonic()
        self.started = 0.0
        self.reading = False
        self.closing = False
        self.id = 0

    # ---- requests -------------------------------------------------------------------------

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:  # type: ignore[override]
        self.chan = chan

    def pty_requested(self, term_type: str, term_size: tuple[int, int, int, int],
                      term_modes: Any) -> bool:
        self.term = safe_term(term_type)
        if term_size[0] and term_size[1]:
            self.size = term_size
        return True

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        shown = "".join(ch for ch in command if ch.isprintable())[:80]
        self.hub.log.info("refused %s from %s: asked to run %r (only the console is allowed)",
                          self.user, self.peer, shown)
        return False

    def subsystem_requested(self, subsystem: str) -> bool:
        shown = "".join(ch for ch in subsystem if ch.isprintable())[:40]
        self.hub.log.info("refused %s from %s: asked for subsystem %r", self.user, self.peer,
                          shown)
        return False

    def session_started(self) -> None:
        assert self.chan is not None
        if self.term is None:
            self.hub.log.info("refused %s from %s: no terminal (connect with ssh -t)", self.user,
                              self.peer)
            self._refuse("the console needs a terminal; connect with 'ssh -t'")
            return
        if len(self.hub.sessions) >= self.hub.options.max_sessions:
            self.hub.log.info("refused %s from %s: %d sessions open, the limit", self.user,
                              self.peer, len(self.hub.sessions))
            self._refuse(f"the server is full ({self.hub.options.max_sessions} sessions);"
                         " try again later")
            return
        self.id, self.hub.next_id = self.hub.next_id, self.hub.next_id + 1
        self.hub.sessions.add(self)
        asyncio.get_running_loop().create_task(self._run())

    def _refuse(self, message: str) -> None:
        assert self.chan is not None
        self.chan.write_stderr(f"dispatch: {message}\r\n".encode())
        self.chan.exit(1)

    # ---- the console process -----------------------------------------------------------------

    async def _run(self) -> None:
        assert self.chan is not None and self.term is not None
        if self.closing:  # the client left before we began
            self.hub.sessions.discard(self)
            return
        master, slave = os.openpty()
        self.master = master
        self._set_size(*self.size)
        env = clean_environment({"TERM": self.term})
        host, _, port = self.peer.rpartition(":")
        env["SSH_CONNECTION"] = f"{host} {port} {self.hub.options.host} {self.hub.options.port}"
        self.started = time.monotonic()
        args = self.hub.session_args(self.user)
        forks = self.hub.forks if self.hub.forks is not None and self.hub.forks.alive else None
        proc: asyncio.subprocess.Process | None = None
        try:
            if forks is not None:
                self.pid = await forks.spawn(args, env, slave)
            else:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "app.cli", *args, stdin=slave, stdout=slave,
                    stderr=slave, start_new_session=True, env=env, cwd="/", close_fds=True)
                self.pid = proc.pid
        except OSError as exc:
            self.hub.log.info("session %d for %s failed to start: %s", self.id, self.user, exc)
            self.exited = True
            self._finish(1)
            return
        finally:
            with contextlib.suppress(OSError):
                os.close(slave)
        if self.closing:  # the client left while the console was starting
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGHUP)
            self.exited = True
            self._finish(0)
            return
        os.set_blocking(master, False)
        self.hub.log.info("session %d for %s started (pid %d, %s %dx%d%s)", self.id, self.user,
                          self.pid, self.term, self.size[0], self.size[1],
                          ", forked" if forks is not None else "")
        self._read_on()
        try:
            code = await (forks.wait(self.pid) if forks is not None else proc.wait())  # type: ignore[union-attr]
        except OSError:  # the fork server died: watch the console's terminal instead
            while self.reading and self.master >= 0:
                await asyncio.sleep(0.2)
            code = 0
        self.exited = True
        self._drain()
        self._finish(code if code >= 0 else 128 - code)

    def _finish(self, code: int) -> None:
        self._read_off()
        if self.master >= 0:
            with contextlib.suppress(OSError):
                os.close(self.master)
            self.master = -1
        if self in self.hub.sessions:
            self.hub.sessions.discard(self)
            self.hub.log.info("session %d for %s ended after %.0fs (exit %d)", self.id,
                              self.user, time.monotonic() - self.started, code)
        if self.chan is not None and not self.closing:
            self.closing = True
            with contextlib.suppress(Exception):
                self.chan.exit(code)

    def _read_on(self) -> None:
        if not self.reading and self.master >= 0:
            asyncio.get_running_loop().add_reader(self.master, self._read_output)
            self.reading = True

    def _read_off(self) -> None:
        if self.reading:
            asyncio.get_running_loop().remove_reader(self.master)
            self.reading = False

    def _read_output(self) -> None:
        if self.master < 0:
            return
        try:
            data = os.read(self.master, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:  # EIO: the console closed its terminal
            if exc.errno != errno.EIO:
                self.hub.log.info("session %d: pty read failed: %s", self.id, exc)
            self._read_off()
            return
        if not data:
            self._read_off()
            return
        if self.chan is not None and not self.closing:
            self.chan.write(data)

    def _drain(self) -> None:
        """Send what the console wrote last (the restored screen) before saying goodbye."""
        self._read_off()
        for _ in range(64):
            if self.master < 0 or self.closing:
                return
            try:
                data = os.read(self.master, READ_CHUNK)
            except OSError:
                return
            if not data:
                return
            if self.chan is not None:
                self.chan.write(data)

    def _set_size(self, width: int, height: int, pixwidth: int = 0, pixheight: int = 0) -> None:
        if self.master >= 0:
            with contextlib.suppress(OSError):
                fcntl.ioctl(self.master, termios.TIOCSWINSZ,
                            struct.pack("HHHH", height, width, pixwidth, pixheight))

    # ---- from the client ------------------------------------------------------------------

    def data_received(self, data: bytes, datatype: Any) -> None:
        self.last_input = time.monotonic()
        if self.master < 0:
            return
        self.pending += data
        self._write_input()

    def _write_input(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            n = os.write(self.master, self.pending)
        except BlockingIOError:
            n = 0
        except OSError:
            self.pending = b""
            return
        self.pending = self.pending[n:]
        loop.remove_writer(self.master)
        if self.pending:
            loop.add_writer(self.master, self._write_input)

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int
                              ) -> None:
        if width and height:
            self.size = (width, height, pixwidth, pixheight)
            self._set_size(width, height, pixwidth, pixheight)

    def pause_writing(self) -> None:
        self._read_off()  # the client is slow: let the pty fill up and the console wait

    def resume_writing(self) -> None:
        self._read_on()

    def eof_received(self) -> bool:
        return False

    def break_received(self, msec: int) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self.pid:  # else the console is still starting: `_run` hangs it up when it is
            self.hangup()

    # ---- ending -------------------------------------------------------------------------

    def hangup(self) -> None:
        """The client is gone: hang up the console's process group, then insist."""
        if not self.pid or self.exited:
            if not self.pid:
                self._finish(0)
            return
        pid = self.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGHUP)

        async def insist() -> None:
            deadline = time.monotonic() + HANGUP_GRACE
            while not self.exited and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if not self.exited:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)

        asyncio.get_running_loop().create_task(insist())

    def close_idle(self) -> None:
        minutes = self.hub.options.idle_timeout / 60
        self.hub.log.info("session %d for %s closed after %.0fs without input", self.id,
                          self.user, self.hub.options.idle_timeout)
        self.hub.sessions.discard(self)
        self.hangup()
        if self.chan is not None and not self.closing:
            self.closing = True
            self.chan.write(b"\x1b[?1049l\x1b[?25h\r\n")
            self.chan.write_stderr(
                f"dispatch: closed after {minutes:.0f} min without input\r\n".encode())
            self.chan.exit(1)


async def serve(options: ServeOptions, engine: Engine, log: logging.Logger,
                ready: asyncio.Event | None = None) -> None:
    """Listen until cancelled or told to stop by SIGINT/SIGTERM; hang up every console then."""
    host_key = load_host_key(options.host_key, log)
    hub = Hub(options, engine, log)
    if options.fork_server:
        began = time.monotonic()
        hub.forks = ForkServer()
        if await hub.forks.start():
            log.info("fork server ready in %.1fs: consoles start from a warm process",
                     time.monotonic() - began)
        else:
            log.info("fork server unavailable; each console starts a new interpreter")
            hub.forks = None
    server = await asyncssh.listen(
        options.host, options.port, server_factory=lambda: DispatchServer(hub),
        server_host_keys=[host_key], encoding=None, line_editor=False,
        login_timeout=options.login_timeout, keepalive_interval=60,
        allow_pty=True, agent_forwarding=False, x11_forwarding=False)
    port = server.get_port() or options.port
    options.port = port
    log.info("listening on %s:%d, host key %s, at most %d sessions, idle timeout %.0fs",
             options.host, port, host_key.get_fingerprint("sha256"), options.max_sessions,
             options.idle_timeout)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    idle = loop.create_task(hub.watch_idle())
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        idle.cancel()
        server.close()
        for s in list(hub.sessions):
            s.hangup()
        deadline = time.monotonic() + HANGUP_GRACE + 1
        while hub.sessions and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if hub.forks is not None:
            hub.forks.stop()
        log.info("stopped")


def run_server(options: ServeOptions, engine: Engine, log: logging.Logger) -> int:
    try:
        asyncio.run(serve(options, engine, log))
    except OSError as exc:
        log.info("cannot listen on %s:%d: %s", options.host, options.port, exc.strerror)
        return 1
    return 0
