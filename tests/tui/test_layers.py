"""The engine stays free of the UI: importing it must not pull in textual."""

import subprocess
import sys


def test_db_and_sync_do_not_import_textual() -> None:
    code = ("import sys, app.db.repositories, app.db.engine, app.sync.coordinator, "
            "app.sync.demo; bad = [m for m in sys.modules if m.split('.')[0] in "
            "('textual', 'app.tui') or m.startswith('app.tui')]; print(bad); "
            "sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
