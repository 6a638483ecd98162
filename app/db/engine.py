"""Engines and transactions.

SQLite: WAL, a busy timeout, foreign keys on, `synchronous=NORMAL`, and `BEGIN IMMEDIATE` for
write transactions so two writers queue instead of failing on a lock upgrade. PostgreSQL through
psycopg 3. The database is migrated to the head on every start (`open_database`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

BUSY_TIMEOUT_MS = 10_000
_WRITE = "dispatch_write"


def make_engine(url: str, *, pool: bool = True) -> Engine:
    """An engine with our SQLite settings; creates the SQLite file's folder if needed."""
    if url.startswith("sqlite"):
        ensure_sqlite_folder(url)
        engine = create_engine(
            url,
            connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            poolclass=None if pool else NullPool,
        )
        _install_sqlite_hooks(engine)
        return engine
    target, connect_args = _pg_options(url)
    return create_engine(target, pool_pre_ping=True, pool_size=5, max_overflow=10,
                         connect_args=connect_args)


def _pg_options(url: str) -> tuple[str, dict[str, Any]]:
    """`?prepare_threshold=none` in a PostgreSQL URL, for psycopg (the URL would pass it as
    text). psycopg prepares a statement on the server after 5 uses; behind pgbouncer in
    transaction mode (before 1.21) the next transaction may run on another server connection:
    "prepared statement _pg3_1 does not exist". Measured with benchmarks/load.py --via-port."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    value = parsed.query.get("prepare_threshold")
    if value is None:
        return url, {}
    text = str(value).strip().lower()
    threshold = None if text in ("none", "off", "") else int(text)
    plain = parsed.difference_update_query(["prepare_threshold"])
    return plain.render_as_string(hide_password=False), {"prepare_threshold": threshold}


def ensure_sqlite_folder(url: str) -> None:
    """SQLite creates the file but not its folder (the data folder on a first start)."""
    path = url.split("///", 1)[1] if url.startswith("sqlite") and "///" in url else ""
    if path and path != ":memory:":
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's own BEGIN is deferred and implicit).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(_WRITE):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """One write transaction: committed when the block ends, rolled back on any error."""
    with engine.connect().execution_options(**{_WRITE: True}) as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            # Row locks have no timeout by default: a terminal stuck mid-transaction would
            # hang every writer behind it. Wait as long as SQLite would, then the coordinator
            # retries and reports Busy. SET LOCAL lasts one transaction (pgbouncer-safe).
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {int(BUSY_TIMEOUT_MS)}")
        yield conn


@contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    """A short read transaction: one consistent snapshot for a screen or a report."""
    with engine.connect() as conn, conn.begin():
        yield conn


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def migrations_dir() -> Path:
    return Path(__file__).resolve().parent.parent.parent / "migrations"


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if not url.startswith("sqlite"):
        url = _pg_options(url)[0]  # a migration is one transaction: prepares do no harm
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


class SchemaError(Exception):
    """The database's schema cannot be brought to what this version of dispatch expects."""


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command
    from alembic.util import CommandError

    ensure_sqlite_folder(url)
    try:
        command.upgrade(alembic_config(url), revision)
    except CommandError as exc:
        engine = make_engine(url, pool=False)
        try:
            found = current_revision(engine)
        finally:
            engine.dispose()
        raise SchemaError(
            f"the database is at schema revision {found}, which this version of dispatch does"
            f" not know (its newest is {head_revision(url)}): use a newer dispatch, or another"
            f" database with --db ({exc})"
        ) from None


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(url: str) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def open_database(url: str, *, migrate: bool = True) -> Engine:
    """The engine for `url`, upgraded to the newest schema first (cheap when already there)."""
    engine = make_engine(url)
    if migrate and current_revision(engine) != head_revision(url):
        upgrade(url)
    return engine
