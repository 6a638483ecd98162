"""Migrations and models agree (no drift), and the core never imports textual."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from app.db.base import Base

ROOT = Path(__file__).resolve().parents[2]
CORE = ["app/db", "app/sync", "app/calendar"]


def test_migrated_schema_equals_the_models(engine: Engine) -> None:
    """`engine` is a database migrated from empty to head by Alembic (SQLite and PostgreSQL)."""
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
        tables = set(inspect(conn).get_table_names())
    assert diff == []
    assert tables == {t.name for t in Base.metadata.sorted_tables} | {"alembic_version"}


def test_core_packages_import_no_textual_statically() -> None:
    offenders = []
    for folder in CORE:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names
                              if n == "textual" or n.startswith(("textual.", "app.tui"))]
    assert offenders == []


def test_core_packages_import_no_textual_at_run_time() -> None:
    code = (
        "import sys, importlib, pkgutil, app.db, app.sync\n"
        "mods = []\n"
        "for pkg in ('app.db', 'app.sync', 'app.calendar'):\n"
        "    try:\n"
        "        p = importlib.import_module(pkg)\n"
        "    except ModuleNotFoundError:\n"
        "        continue\n"
        "    for m in pkgutil.walk_packages(p.__path__, pkg + '.'):\n"
        "        importlib.import_module(m.name); mods.append(m.name)\n"
        "assert 'app.sync.coordinator' in mods, mods\n"
        "bad = [m for m in sys.modules if m == 'textual' or m.startswith('textual.')]\n"
        "print(len(mods), bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
