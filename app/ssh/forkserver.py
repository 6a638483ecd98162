"""A warm process that forks consoles: each SSH session starts in a fraction of the time.

A new interpreter spends most of a second importing Textual and SQLAlchemy before it paints, and
each keeps its own copy of those modules. `dispatch serve` therefore starts this helper once; it
imports what `dispatch ssh-session` will need (nothing else: no database connection, no thread,
no event loop) and waits. For each session the server sends the pty's terminal end and the
session's argument list and environment over a Unix socket; the helper forks, the child makes the
pty its controlling terminal in a new session and runs `dispatch ssh-session` exactly as a fresh
process would. Children share the imported modules copy-on-write. The helper reports each
child's pid and, when it reaps it, its exit status.

If the helper cannot start or dies, the server starts consoles as plain subprocesses.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import termios
from typing import Any

PRELOAD = ("app.cli", "app.ssh.session", "app.tui.app")
"""Imported before the first fork (the console's modules: `run_session` imports them anyway)."""


class ForkServer:
    """The server's side: start the helper, ask it for consoles, hear about their ends."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.pending: dict[int, asyncio.Future[int]] = {}
        self.exits: dict[int, asyncio.Future[int]] = {}
        self.early_exits: dict[int, int] = {}
        self.next_request = 1

    async def start(self, timeout: float = 30.0) -> bool:
        """Start the helper and wait until it has imported everything; False if it cannot."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app.ssh.forkserver", str(child.fileno())],
                pass_fds=[child.fileno()], stdin=subprocess.DEVNULL, cwd="/",
                start_new_session=True)
        except OSError:
            parent.close()
            return False
        finally:
            child.close()
        parent.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            ready = await asyncio.wait_for(loop.sock_recv(parent, 4096), timeout)
        except (TimeoutError, OSError):
            ready = b""
        if json.loads(ready or b"{}").get("ready") is not True:
            parent.close()
            self.stop()
            return False
        self.sock = parent
        loop.add_reader(parent, self._on_message)
        return True

    @property
    def alive(self) -> bool:
        return self.sock is not None

    async def spawn(self, argv: list[str], env: dict[str, str], tty: int) -> int:
        """A console process on `tty` (the pty's terminal end); returns its pid."""
        if self.sock is None:
            raise OSError("the fork server is not running")
        request = self.next_request
        self.next_request += 1
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.pending[request] = future
        message = json.dumps({"id": request, "argv": argv, "env": env}).encode()
        try:
            socket.send_fds(self.sock, [message], [tty])
        except OSError:
            self.pending.pop(request, None)
            self._lost()
            raise
        return await future

    async def wait(self, pid: int) -> int:
        """The exit status of a console the helper forked (as `Popen.returncode` gives it)."""
        if pid in self.early_exits:
            return self.early_exits.pop(pid)
        future = self.exits.setdefault(pid, asyncio.get_running_loop().create_future())
        return await future

    def _on_message(self) -> None:
        assert self.sock is not None
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._lost()
            return
        msg: dict[str, Any] = json.loads(data)
        if "pid" in msg:
            future = self.pending.pop(msg["id"], None)
            if future is not None and not future.done():
                if msg["pid"] > 0:
                    future.set_result(msg["pid"])
                else:
                    future.set_exception(OSError(msg.get("error", "fork failed")))
        elif "exit" in msg:
            pid, code = msg["exit"], msg["code"]
            exit_future = self.exits.pop(pid, None)
            if exit_future is None:
                self.early_exits[pid] = code
            elif not exit_future.done():
                exit_future.set_result(code)

    def _lost(self) -> None:
        """The helper is gone: nothing more will be forked or reported; pending waits fail."""
        if self.sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.sock)
            self.sock.close()
            self.sock = None
        for future in [*self.pending.values(), *self.exits.values()]:
            if not future.done():
                future.set_exception(OSError("the fork server stopped"))
        self.pending.clear()
        self.exits.clear()

    def stop(self) -> None:
        self._lost()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(2)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


# ---- the helper process ---------------------------------------------------------------------


def helper(fd: int) -> None:
    """Import, say ready, then fork one console per request until the server goes away."""
    import importlib

    sock = socket.socket(fileno=fd)
    for name in PRELOAD:
        importlib.import_module(name)
    sock.send(json.dumps({"ready": True}).encode())
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when we stop
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            if key.fileobj is sock:
                try:
                    data, fds, _flags, _addr = socket.recv_fds(sock, 65536, 1)
                except InterruptedError:
                    continue
                if not data:
                    return
                request = json.loads(data)
                if not fds:
                    sock.send(json.dumps({"id": request["id"], "pid": -1,
                                          "error": "no terminal was passed"}).encode())
                    continue
                try:
                    pid = os.fork()
                except OSError as exc:
                    os.close(fds[0])
                    sock.send(json.dumps({"id": request["id"], "pid": -1,
                                          "error": str(exc)}).encode())
                    continue
                if pid == 0:
                    selector.close()
                    for f in (wake_r, wake_w, sock.fileno()):
                        with contextlib.suppress(OSError):
                            os.close(f)
                    _console(request["argv"], request["env"], fds[0])  # never returns
                os.close(fds[0])
                sock.send(json.dumps({"id": request["id"], "pid": pid}).encode())
            else:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
                _reap(sock)


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = os.waitstatus_to_exitcode(status)
        with contextlib.suppress(OSError):
            sock.send(json.dumps({"exit": pid, "code": code}).encode())


def _console(argv: list[str], env: dict[str, str], tty: int) -> None:
    """In the forked child: become a session on `tty`, then run `dispatch ARGV`."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        os.setsid()
        for target in (0, 1, 2):
            os.dup2(tty, target)
        if tty > 2:
            os.close(tty)
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        os.chdir("/")
        os.environ.clear()
        os.environ.update(env)
        # Fresh standard streams on the terminal (the helper's were not a terminal).
        sys.stdin = sys.__stdin__ = open(0, encoding="utf-8", closefd=False)  # type: ignore[misc]  # noqa: SIM115
        sys.stdout = sys.__stdout__ = open(1, "w", encoding="utf-8", errors="replace",  # type: ignore[misc]  # noqa: SIM115
                                           buffering=1, closefd=False)
        sys.stderr = sys.__stderr__ = open(2, "w", encoding="utf-8", errors="replace",  # type: ignore[misc]  # noqa: SIM115
                                           buffering=1, closefd=False)
        sys.argv = ["dispatch", *argv]
        from app.cli import main

        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    helper(int(sys.argv[1]))
