"""A real Radicale server for the calendar tests and the benchmark.

Started as a subprocess (`python -m radicale`) on 127.0.0.1 with a free port, a temporary
storage folder and plain htpasswd users, so the sync talks to a CalDAV server over HTTP exactly
as it would in production. `start()` raises when the server does not come up: the tests fail,
they never skip.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

USER = "dispatch"
PASSWORD = "s3cret-for-tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Radicale:
    folder: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def collection_url(self, owner: str, name: str = "calendar") -> str:
        return f"{self.url}{owner}/{name}/"

    def _write_config(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        users = self.folder / "users"
        users.write_text(f"{USER}:{PASSWORD}\n")
        config = self.folder / "config"
        config.write_text(
            "[server]\n"
            f"hosts = 127.0.0.1:{self.port}\n"
            "[auth]\n"
            "type = htpasswd\n"
            f"htpasswd_filename = {users}\n"
            "htpasswd_encryption = plain\n"
            "[rights]\n"
            "type = authenticated\n"
            "[storage]\n"
            f"filesystem_folder = {self.folder / 'collections'}\n"
            "[logging]\n"
            "level = warning\n"
            "mask_passwords = True\n"
        )
        return config

    def start(self, timeout: float = 15.0) -> None:
        config = self._write_config()
        log = open(self.folder / "radicale.log", "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "radicale", "--config", str(config)],
            stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"Radicale exited with {self.proc.returncode}: "
                    + (self.folder / "radicale.log").read_text()[-2000:])
            try:
                urllib.request.urlopen(self.url + ".web/", timeout=1).close()
                return
            except urllib.error.HTTPError:
                return  # it answers: good enough
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Radicale did not answer on {self.url} within {timeout} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def make_calendar(self, owner: str, name: str = "calendar") -> str:
        """Create a calendar collection with MKCALENDAR and return its URL."""
        import base64

        url = self.collection_url(owner, name)
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        auth = {"Authorization": f"Basic {token}"}
        try:  # the owner's folder; 405 when it exists already
            urllib.request.urlopen(urllib.request.Request(
                f"{self.url}{owner}/", method="MKCOL", headers=auth), timeout=5).close()
        except urllib.error.HTTPError as exc:
            if exc.code != 405:
                raise
        req = urllib.request.Request(url, method="MKCALENDAR", headers=auth)
        urllib.request.urlopen(req, timeout=5).close()
        return url
