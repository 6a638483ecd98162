"""Users and keys: validation, fingerprints as OpenSSH prints them, writes through the coordinator,
the command line, and the authorized_keys lines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from harness import DISPATCH, cli, dispatch, keygen
from sqlalchemy import Engine

from app.db import repositories as repo
from app.db.engine import read_connection
from app.db.models import Role
from app.ssh.authorized import authorized_keys, forced_command
from app.ssh.keys import BadKey, parse_public_key
from app.sync import commands as c
from app.sync.coordinator import Coordinator
from app.sync.errors import Invalid, NotFound, Refused


@pytest.fixture(scope="module")
def keydir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    for kind in ("ed25519", "ecdsa", "rsa"):
        keygen(d / kind, f"{kind}@test", kind)
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "1024", "-N", "", "-f",
                    str(d / "rsa1024")], check=True, capture_output=True)
    return d


def ssh_keygen_fingerprint(pub: Path) -> str:
    return subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True,
                          check=True).stdout.split()[1]


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa", "rsa"])
def test_keys_from_ssh_keygen_are_accepted_with_its_fingerprint(keydir: Path, kind: str) -> None:
    pub = keydir / f"{kind}.pub"
    key = parse_public_key(pub.read_text())
    assert key.fingerprint == ssh_keygen_fingerprint(pub)
    assert key.comment == f"{kind}@test"
    assert pub.read_text().startswith(key.line + " ")


@pytest.mark.parametrize(("text", "message"), [
    ("", "is empty"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n", "is a private key"),
    ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "key type 'ssh-dss' is not one of"),
    ('command="sh" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPkTLKOJPtC/AVBHpotFWJB77m3rFfDpSbi85DgBtqM8',
     "starts with options"),
    ("ssh-ed25519", "has no key data"),
    ("ssh-ed25519 AAAA!!!!", "not valid base64"),
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAbc", "cut short"),
    # an ed25519 blob declared as ecdsa
    ("ecdsa-sha2-nistp256 AAAAC3NzaC1lZDI1NTE5AAAAIPkTLKOJPtC/AVBHpotFWJB77m3rFfDpSbi85DgBtqM8",
     "its data is a 'ssh-ed25519' key"),
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPkTLKOJPtC/AVBHpotFWJB77m3rFfDpSbi85DgBtqM8\n"
     "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPkTLKOJPtC/AVBHpotFWJB77m3rFfDpSbi85DgBtqM8",
     "holds 2 keys"),
])
def test_bad_keys_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(BadKey, match=message.replace("(", r"\(")):
        parse_public_key(text, where="k.pub")


def test_small_rsa_keys_are_refused(keydir: Path) -> None:
    with pytest.raises(BadKey, match="1024 bits; at least 2048"):
        parse_public_key((keydir / "rsa1024.pub").read_text())


def _users(coord: Coordinator) -> None:
    coord.execute_many([
        c.UpsertEmployee("E001", "Mario Rossi", None, engineer=True),
        c.AddUser("sue", "supervisor"),
        c.AddUser("tom", "technician", "E001"),
    ], c.Actor.dispatcher())


def test_keys_are_written_by_the_coordinator_one_user_per_key(engine: Engine, keydir: Path
                                                              ) -> None:
    coord = Coordinator(engine)
    _users(coord)
    admin = c.Actor.dispatcher()
    text = (keydir / "ed25519.pub").read_text()
    change = coord.execute(c.AddUserKey("sue", text), admin)
    fp = ssh_keygen_fingerprint(keydir / "ed25519.pub")
    assert fp in change.summary
    assert "unchanged" in coord.execute(c.AddUserKey("sue", text), admin).summary
    with pytest.raises(Refused, match="already belongs to sue"):
        coord.execute(c.AddUserKey("tom", text), admin)
    with pytest.raises(NotFound, match="user 'nobody' does not exist"):
        coord.execute(c.AddUserKey("nobody", text), admin)
    with pytest.raises(Invalid, match="cut short"):
        coord.execute(c.AddUserKey("tom", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAbc"), admin)
    # Nobody but a dispatcher manages keys: not a supervisor, not a technician for themselves.
    other = (keydir / "ecdsa.pub").read_text()
    for actor in (c.Actor("sue", Role.SUPERVISOR), c.Actor("tom", Role.TECHNICIAN, "E001")):
        with pytest.raises(Refused):
            coord.execute(c.AddUserKey(actor.name, other), actor)
        with pytest.raises(Refused):
            coord.execute(c.RemoveUserKey("sue", fp), actor)
    with read_connection(engine) as conn:
        keys = repo.user_keys(conn)
        assert [(k["user_name"], k["fingerprint"], k["role"]) for k in keys] == [
            ("sue", fp, "supervisor")]
        assert repo.key_owner(conn, fp)["name"] == "sue"  # type: ignore[index]
        journal = [r["detail"] for r in repo.history(conn, limit=10)]
    assert f"key {fp} (ssh-ed25519) added for sue" in journal
    assert coord.execute(c.RemoveUserKey("sue", "ed25519@test"), admin).summary == (
        f"Key {fp} removed from sue")
    with read_connection(engine) as conn:
        assert repo.user_keys(conn) == []
        assert repo.key_owner(conn, fp) is None


def test_names_that_cannot_be_a_forced_command_get_no_key(engine: Engine, keydir: Path) -> None:
    coord = Coordinator(engine)
    admin = c.Actor.dispatcher()
    with pytest.raises(Invalid, match="cannot log in over SSH"):
        coord.execute_many([c.AddUser('x" y', "supervisor"),
                            c.AddUserKey('x" y', (keydir / "rsa.pub").read_text())], admin)
    with read_connection(engine) as conn:
        assert repo.user(conn, 'x" y') is None  # one transaction: the user was not kept either
    with pytest.raises(ValueError):
        forced_command("/bin/dispatch", "a;b")


def test_authorized_keys_lines_are_gitolite_style(engine: Engine, keydir: Path) -> None:
    coord = Coordinator(engine)
    _users(coord)
    coord.execute(c.AddUserKey("tom", (keydir / "ed25519.pub").read_text()), c.Actor.dispatcher())
    with read_connection(engine) as conn:
        text = authorized_keys(repo.user_keys(conn), "/opt/dispatch/bin/dispatch")
    blob = (keydir / "ed25519.pub").read_text().split()[1]
    assert text.splitlines()[1] == (
        'restrict,pty,command="/opt/dispatch/bin/dispatch ssh-session --user tom" '
        f"ssh-ed25519 {blob} dispatch:tom")
    with_db = forced_command("/opt/d", "tom", db="sqlite:////srv/x y.db", log="/var/log/d.log")
    assert with_db == ("/opt/d --db 'sqlite:////srv/x y.db' ssh-session --user tom "
                       "--log /var/log/d.log")


def test_command_line_users_and_keys(tmp_path: Path, keydir: Path) -> None:
    db = f"sqlite:///{tmp_path / 'd.db'}"
    out = cli(db, "users", "add", "sue", "--role", "supervisor", "--key",
                   str(keydir / "ed25519.pub")).stdout
    fp = ssh_keygen_fingerprint(keydir / "ed25519.pub")
    assert out == f"User sue is a supervisor\nKey {fp} (ssh-ed25519 ed25519@test) added for sue\n"
    cli(db, "users", "key", "add", "sue", str(keydir / "ecdsa.pub"))
    listing = cli(db, "users", "list").stdout
    assert fp in listing and ssh_keygen_fingerprint(keydir / "ecdsa.pub") in listing
    # A private key, a missing file and a weak key: one line each, nothing written, no traceback.
    for args, message in (
        (["users", "key", "add", "sue", str(keydir / "ed25519")], "is a private key"),
        (["users", "key", "add", "sue", str(tmp_path / "none.pub")], "cannot read"),
        (["users", "add", "bob", "--role", "supervisor", "--key", str(keydir / "rsa1024.pub")],
         "1024 bits"),
    ):
        r = cli(db, *args, check=False)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    assert "bob" not in cli(db, "users", "list").stdout
    cli(db, "users", "key", "remove", "sue", str(keydir / "ecdsa.pub"))
    assert ssh_keygen_fingerprint(keydir / "ecdsa.pub") not in cli(db, "users", "list").stdout
    keys = cli(db, "ssh", "authorized-keys").stdout.splitlines()
    assert len(keys) == 2 and keys[1].startswith(
        f'restrict,pty,command="{DISPATCH} --db {db} ssh-session --user sue" ssh-ed25519 ')


def test_ssh_session_refuses_without_terminal_or_with_a_command(
        tmp_path: Path, keydir: Path) -> None:
    db = f"sqlite:///{tmp_path / 'd.db'}"
    dispatch(db, "users", "add", "sue", "--role", "supervisor", "--key",
             str(keydir / "ed25519.pub"))
    log = tmp_path / "s.log"
    env = {**os.environ, "SSH_CONNECTION": "10.1.2.3 5555 10.0.0.1 22",
           "DISPATCH_DB": "sqlite:////nonexistent/elsewhere.db"}
    r = subprocess.run([str(DISPATCH), "--db", db, "ssh-session", "--user", "sue", "--log",
                        str(log)], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       env=env, timeout=30)
    assert r.returncode == 1
    assert r.stderr == "dispatch: the console needs a terminal; connect with 'ssh -t'\n"
    assert "refused sue from 10.1.2.3:5555: no terminal" in log.read_text()
    r = subprocess.run([str(DISPATCH), "--db", db, "ssh-session", "--user", "sue", "--log",
                        str(log)], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       env={**env, "SSH_ORIGINAL_COMMAND": "rm -rf /"}, timeout=30)
    assert r.returncode == 1 and "'rm -rf /' was not run" in r.stderr
    assert "refused sue from 10.1.2.3:5555: asked to run 'rm -rf /'" in log.read_text()


def test_the_ssh_layer_never_imports_textual() -> None:
    code = ("import sys, app.ssh.server, app.ssh.session, app.ssh.keys, app.ssh.authorized, "
            "app.cli; assert 'textual' not in sys.modules, 'textual imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
