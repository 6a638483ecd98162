"""Helpers for the robustness tests: the benchmark scripts' machinery, loaded by path.

The tests and `benchmarks/load.py` / `benchmarks/crash.py` share one implementation, so the
figures in the report and the assertions here are about the same code.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]


def bench(name: str) -> ModuleType:
    """`benchmarks/<name>.py` as a module (loaded once)."""
    key = f"dispatch_bench_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, ROOT / "benchmarks" / f"{name}.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


def pg_admin_url() -> str:
    """The PostgreSQL server of the test run, on its `postgres` database (to create others)."""
    base = os.environ["DISPATCH_TEST_POSTGRES_URL"]
    if base.startswith("postgresql://"):
        base = "postgresql+psycopg://" + base[len("postgresql://"):]
    return make_url(base).set(database="postgres").render_as_string(hide_password=False)
