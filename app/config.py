"""Settings that come from the environment: where the database is, which time zone to show."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def data_dir() -> Path:
    """The data folder: `$XDG_DATA_HOME/dispatch`, or `~/.local/share/dispatch`."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "dispatch"


def default_db_url() -> str:
    return f"sqlite:///{data_dir() / 'dispatch.db'}"


def database_url(cli_value: str | None = None) -> str:
    """`--db URL` wins over `DISPATCH_DB`, which wins over the embedded SQLite file."""
    url = cli_value or os.environ.get("DISPATCH_DB") or default_db_url()
    if url.startswith("postgresql://"):
        # The driver we ship is psycopg 3; a plain URL would ask for psycopg2.
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def display_tz() -> str:
    """The zone dates are shown in: `DISPATCH_TZ`, else the machine's zone, else UTC."""
    tz = os.environ.get("DISPATCH_TZ")
    if tz:
        return tz
    try:
        import pendulum

        return str(pendulum.local_timezone().name)
    except Exception:  # pragma: no cover - a machine without zone data
        return "UTC"


@dataclass(frozen=True)
class Settings:
    db_url: str
    tz: str

    @classmethod
    def load(cls, db: str | None = None) -> Settings:
        return cls(db_url=database_url(db), tz=display_tz())
