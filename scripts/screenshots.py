"""`make screenshots`: SVG and PNG pictures of every screen (the scenes of the snapshot tests)
on the deterministic demo, into `screenshots/`."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from tui_support import build_demo, copy_demo, make_app  # noqa: E402

from app.tui.scenes import SCENES, Scene  # noqa: E402


async def picture(scene: Scene, template: Path, out: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        engine = copy_demo(template, Path(tmp))
        app = make_app(engine, scene.actor, poll_interval=0)
        async with app.run_test(size=scene.size) as pilot:
            await scene.steps(pilot)
            svg = out / f"{scene.name}.svg"
            app.save_screenshot(str(svg))
        engine.dispose()
    return svg


def monospaced(svg: bytes) -> bytes:
    """cairosvg takes the first family of a list and has no Fira Code (the SVG's web font):
    name a monospaced font fontconfig has (DejaVu Sans Mono, Debian's fonts-dejavu-core)."""
    for family in (b"Fira Code, monospace", b'"Fira Code"', b"arial"):
        svg = svg.replace(family, b"DejaVu Sans Mono")
    return svg


def main() -> int:
    import cairosvg

    out = ROOT / "screenshots"
    out.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        template = build_demo(Path(tmp) / "demo.db")
        for scene in SCENES:
            svg = asyncio.run(picture(scene, template, out))
            png = svg.with_suffix(".png")
            cairosvg.svg2png(bytestring=monospaced(svg.read_bytes()), write_to=str(png),
                             output_width=scene.size[0] * 12)
            print(f"screenshots: {svg.name} {png.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
