"""Fixtures for the SSH tests: one demo database with users and keys per run, and both
servers (OpenSSH's sshd with forced commands, and `dispatch serve`) started on loopback."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import EmbeddedServer, OpenSshServer, Server, Term, cli, keygen
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PG_ENV = "DISPATCH_TEST_POSTGRES_URL"


@dataclass
class SshWorld:
    workdir: Path
    db_url: str
    technician_code: str
    keys: dict[str, Path]  # user name (or "stranger") -> private key

    def query(self, sql: str, **params: object) -> list[tuple]:
        engine = create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(text(sql), params)]
        finally:
            engine.dispose()

    def snapshot(self) -> list[list[tuple]]:
        """Everything a console could change, to prove a session changed nothing."""
        return [self.query(f"SELECT * FROM {t} ORDER BY 1") for t in (
            "orders", "activities", "assignments", "appointments", "participants",
            "appointment_references", "related_orders", "parameters", "users", "user_keys",
            "journal")]


@pytest.fixture(scope="session")
def ssh_world(tmp_path_factory: pytest.TempPathFactory) -> SshWorld:
    """Demo data; users sue (supervisor), tom (technician), dan (dispatcher) and ex (a supervisor
    whose key a test withdraws), each with a key made by ssh-keygen; and a stranger's key nobody
    registered."""
    workdir = tmp_path_factory.mktemp("ssh")
    return build_world(workdir, f"sqlite:///{workdir / 'dispatch.db'}")


@pytest.fixture
def pg_ssh_world(tmp_path: Path) -> Iterator[SshWorld]:
    """The same world in a PostgreSQL database of its own, dropped afterwards."""
    base = os.environ[PG_ENV].replace("postgresql://", "postgresql+psycopg://", 1)
    name = f"dispatch_ssh_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        yield build_world(tmp_path, url)
    finally:
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                              " WHERE datname = :n"), {"n": name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def build_world(workdir: Path, db_url: str) -> SshWorld:
    cli(db_url, "demo", "--orders", "5")
    world = SshWorld(workdir, db_url, "", {})
    # The technician: the engineer with the most open assignments.
    code = world.query(
        "SELECT employee_code FROM assignments WHERE status IN ('Assigned', 'Accepted')"
        " GROUP BY employee_code ORDER BY count(*) DESC, employee_code LIMIT 1")[0][0]
    world.technician_code = code
    for name, role, extra in (("sue", "supervisor", []), ("tom", "technician", ["--employee", code]),
                              ("dan", "dispatcher", []), ("ex", "supervisor", [])):
        key = keygen(workdir / f"{name}_ed25519", f"{name}@test")
        world.keys[name] = key
        cli(db_url, "users", "add", name, "--role", role, *extra, "--key",
            str(key.with_suffix(".pub")))
    world.keys["stranger"] = keygen(workdir / "stranger_ed25519", "stranger@test")
    return world


@pytest.fixture(scope="session", params=["openssh", "embedded"])
def server(request: pytest.FixtureRequest, ssh_world: SshWorld) -> Iterator[Server]:
    srv: Server
    if request.param == "openssh":
        srv = OpenSshServer(ssh_world.workdir, ssh_world.db_url)
    else:
        srv = EmbeddedServer(ssh_world.workdir, ssh_world.db_url)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def terms(ssh_world: SshWorld) -> Iterator[list[Term]]:
    """Open terminals are closed after the test, whatever happened."""
    opened: list[Term] = []
    yield opened
    for t in opened:
        t.close()


@pytest.fixture
def open_term(terms: list[Term], ssh_world: SshWorld):  # type: ignore[no-untyped-def]
    def _open(command: list[str], width: int = 120, height: int = 36) -> Term:
        t = Term(command, ssh_world.workdir, width, height)
        terms.append(t)
        return t

    return _open
