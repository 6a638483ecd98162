"""Pictures of every screen on the deterministic demo with a frozen "now" (blink off).

Update with `pytest tests/snapshots --snapshot-update`, then open every changed SVG."""

from __future__ import annotations

import pytest
from tui_support import make_app

from app.tui.scenes import SCENES, Scene


@pytest.mark.parametrize("scene", SCENES, ids=[s.name for s in SCENES])
def test_screen(scene: Scene, demo_engine, snap_compare) -> None:
    app = make_app(demo_engine, scene.actor, poll_interval=0)
    assert snap_compare(app, terminal_size=scene.size, run_before=scene.steps)
