"""Real parts for the SSH tests and benchmark: tmux terminals, an OpenSSH sshd, `dispatch serve`.

Nothing is simulated: `ssh` is the OpenSSH client, running in a tmux pane of a tmux server of
its own; the servers are started here on loopback ports and stopped by their process ids. A part
that is missing raises, so the tests fail instead of skipping.
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

DISPATCH = Path(sys.executable).with_name("dispatch")
SSHD = Path("/usr/sbin/sshd")


def need(program: str | Path) -> str:
    found = shutil.which(str(program))
    if not found:
        raise RuntimeError(f"{program} is not installed: the SSH tests need the real one "
                           "(.ci/run installs openssh-server)")
    return found


def dispatch(db_url: str, *args: str, check: bool = True, env: dict[str, str] | None = None,
             input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `dispatch` program against `db_url`."""
    result = subprocess.run([str(DISPATCH), "--db", db_url, *args], capture_output=True,
                            text=True, env=env, input=input, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"dispatch {' '.join(args)} failed ({result.returncode}): "
                             f"{result.stderr}")
    return result


def cli(db_url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The same command line, run in this process (no interpreter start-up): parse, call, print."""
    import contextlib
    import io

    from app.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--db", db_url, *args])
    result = subprocess.CompletedProcess(["dispatch", *args], code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"dispatch {' '.join(args)} failed ({code}): {result.stderr}")
    return result


def keygen(path: Path, comment: str, kind: str = "ed25519") -> Path:
    """A new key pair made by OpenSSH's ssh-keygen; returns the private key's path."""
    need("ssh-keygen")
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], object], timeout: float, what: str,
               every: float = 0.05) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


class Term:
    """One tmux pane running one command, on a tmux server of its own; the pane stays after the
    command exits so its last words and exit status can be read."""

    def __init__(self, command: list[str], workdir: Path, width: int = 120, height: int = 36,
                 env: dict[str, str] | None = None) -> None:
        need("tmux")
        self.socket = f"dispatch-test-{uuid.uuid4().hex[:10]}"
        conf = workdir / f"{self.socket}.conf"
        conf.write_text("set -g remain-on-exit on\nset -g status off\n"
                        "set -g default-terminal xterm-256color\nset -g escape-time 0\n")
        # tmux 3.3 sometimes marks a pane dead without ever recording the exit status, so the
        # shell writes it down.
        self.status_file = workdir / f"{self.socket}.status"
        self.started = time.monotonic()
        self._tmux("-f", str(conf), "new-session", "-d", "-s", "t", "-x", str(width), "-y",
                   str(height), f"{shlex.join(command)}; echo $? > {self.status_file}", env=env)

    def _tmux(self, *args: str, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                                text=True, env=env, timeout=10)
        if result.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "t")

    def transcript(self) -> str:
        """Everything the pane showed, scrolled-off lines included (tmux scrolls the last words
        of a command that has exited off the screen)."""
        return self._tmux("capture-pane", "-p", "-t", "t", "-S", "-")

    def lines(self) -> list[str]:
        return self.screen().split("\n")

    def wait_for(self, wanted: str | Callable[[str], bool], timeout: float = 15.0) -> str:
        test = (lambda s: wanted in s) if isinstance(wanted, str) else wanted
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if test(text):
                return text
            if time.monotonic() > deadline or self.exit_status() is not None:
                raise AssertionError(f"timed out after {timeout}s waiting for {wanted!r}; "
                                     f"the terminal shows:\n{self.transcript().strip()}")
            time.sleep(0.03)

    def keys(self, *keys: str) -> None:
        """tmux key names: `Enter`, `C-p`, `F2`, `Down`; or literal characters."""
        self._tmux("send-keys", "-t", "t", *keys)

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", "t", "-l", text)

    def resize(self, width: int, height: int) -> None:
        self._tmux("resize-window", "-t", "t", "-x", str(width), "-y", str(height))

    def exit_status(self) -> int | None:
        try:
            text = self.status_file.read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text else None

    def wait_exit(self, timeout: float = 15.0) -> int:
        try:
            wait_until(lambda: self.exit_status() is not None, timeout, "ssh to exit")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the terminal shows:\n"
                                 f"{self.transcript().strip()}") from None
        code = self.exit_status()
        assert code is not None
        return code

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


class Server:
    """What the tests need to know about a running SSH server."""

    name = ""
    port = 0
    login = "dispatch"
    host_public_key = ""
    workdir: Path

    log_files: list[Path]

    def log(self) -> str:
        return "\n".join(p.read_text() for p in self.log_files if p.exists())

    def log_mark(self) -> list[int]:
        """Where each log file ends now; `log_since` gives what came after."""
        return [p.stat().st_size if p.exists() else 0 for p in self.log_files]

    def log_since(self, mark: list[int]) -> str:
        parts = []
        for path, size in zip(self.log_files, mark, strict=True):
            if path.exists():
                with path.open("rb") as f:
                    f.seek(size)
                    parts.append(f.read().decode(errors="replace"))
        return "\n".join(parts)

    def stop(self) -> None:
        raise NotImplementedError

    def known_hosts(self) -> Path:
        path = self.workdir / f"known_hosts_{self.name}_{self.port}"
        if not path.exists():  # written once and atomically: clients may start side by side
            kind, data = self.host_public_key.split()[:2]
            tmp = path.with_suffix(".tmp")
            tmp.write_text(f"[127.0.0.1]:{self.port} {kind} {data}\n")
            tmp.replace(path)
        return path

    def ssh(self, key: Path | None, *options: str, tty: bool = True,
            remote: list[str] | None = None) -> list[str]:
        """The OpenSSH client command line: this server's host key only, no config files."""
        cmd = [need("ssh"), "-F", "/dev/null", "-o", f"UserKnownHostsFile={self.known_hosts()}",
               "-o", "StrictHostKeyChecking=yes", "-o", "LogLevel=ERROR",
               "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-p", str(self.port)]
        if key is not None:
            cmd += ["-i", str(key)]
        cmd += list(options)
        cmd += ["-tt"] if tty else ["-T"]
        cmd.append(f"{self.login}@127.0.0.1")
        return cmd + (remote or [])


class OpenSshServer(Server):
    """A real sshd on a loopback port with its own config, host key and authorized_keys, whose
    keys run `dispatch ssh-session` as their forced command."""

    name = "openssh"

    def __init__(self, workdir: Path, db_url: str) -> None:
        need(SSHD)
        self.workdir = workdir / "sshd"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db_url = db_url
        self.login = getpass.getuser()
        self.port = free_port()
        host_key = keygen(self.workdir / "host_ed25519", "test-host")
        self.host_public_key = host_key.with_suffix(".pub").read_text()
        self.authorized = self.workdir / "authorized_keys"
        self.sessions_log = self.workdir / "sessions.log"
        self.sshd_log = self.workdir / "sshd.log"
        self.log_files = [self.sshd_log, self.sessions_log]
        self.refresh_keys()
        config = self.workdir / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}",
            f"AuthorizedKeysFile {self.authorized}", "PubkeyAuthentication yes",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
            "StrictModes no", "PermitRootLogin prohibit-password", "LogLevel VERBOSE",
            f"PidFile {self.workdir / 'sshd.pid'}",
            # Let clients try to pass variables, to show they change nothing.
            "AcceptEnv LANG LC_* DISPATCH_* PYTHON*", "",
        ]))
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([str(SSHD), "-D", "-f", str(config), "-E",
                                      str(self.sshd_log)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)

        def listening() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"sshd exited ({self.proc.returncode}): "
                                     f"{self.proc.stderr.read().decode() if self.proc.stderr else ''}"
                                     f"{self.sshd_log.read_text() if self.sshd_log.exists() else ''}")
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        wait_until(listening, 10, "sshd to listen")

    def refresh_keys(self) -> None:
        dispatch(self.db_url, "ssh", "authorized-keys", "--output", str(self.authorized),
                 "--log", str(self.sessions_log))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class EmbeddedServer(Server):
    """`dispatch serve` on a free loopback port, its data folder (host key) in `workdir`."""

    name = "embedded"

    def __init__(self, workdir: Path, db_url: str, *extra: str) -> None:
        self.workdir = workdir / "serve"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "ssh.log"
        self.log_files = [self.log_path]
        start = len(self.log())
        env = {**os.environ, "XDG_DATA_HOME": str(self.workdir / "data")}
        self.proc = subprocess.Popen(
            [str(DISPATCH), "--db", db_url, "serve", "--listen", "127.0.0.1:0", "--log",
             str(self.log_path), *extra],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def listening() -> re.Match[str] | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"dispatch serve exited ({self.proc.returncode}): "
                                     f"{self.log()}")
            return re.search(r"listening on 127\.0\.0\.1:(\d+)", self.log()[start:])

        found = wait_until(listening, 15, "dispatch serve to listen")
        assert isinstance(found, re.Match)
        self.port = int(found.group(1))
        key = self.workdir / "data" / "dispatch" / "ssh_host_ed25519_key.pub"
        self.host_public_key = key.read_text()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
