"""Screenshots of the console and the dashboard for the README, from a running demo.

    .venv/bin/python scripts/screenshots.py [--warmup 120] [--out docs/screenshots]

Starts `geopush demo` in a temporary data directory, lets it run `--warmup` seconds so
the charts have something to show, then drives Debian's chromium (Playwright) through
the console (map, composer with its preview, results) and the dashboard. PNGs are reduced
to 256 colours when Pillow is installed, to keep the repository small. The store names are
Chinese: install a CJK font first (`apt-get install fonts-wqy-microhei`), or they show as
boxes.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.browser import chromium, watched_page


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _shrink(path: Path) -> None:
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(path) as img:
        small = img.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        small.save(path, optimize=True)


async def _shoot(base: str, marketer: str, ops: str, out: Path) -> None:
    async with chromium() as browser:
        async with watched_page(browser) as w:
            page = w.page
            await page.goto(base + "/console")
            await page.fill("#key", marketer)
            await page.press("#key", "Enter")
            await page.wait_for_selector("body[data-loaded='1']")
            await page.evaluate("document.activeElement && document.activeElement.blur()")
            await page.evaluate("window.geopushMap.setZoom(window.geopushMap.getZoom() + 1)")
            await page.wait_for_timeout(800)
            await page.screenshot(path=str(out / "console-map.png"))
            await page.click("#tab-btn-offers")
            await page.click("#offer-list tr:nth-child(5) button:has-text('Edit')")
            await page.fill("#p-first", "Camille")
            await page.select_option("#p-store", index=1)
            await page.wait_for_timeout(300)
            await page.screenshot(path=str(out / "console-composer.png"), full_page=True)
            await page.click("#tab-btn-results")
            await page.select_option("#r-offer", index=3)
            await page.wait_for_selector("#r-daily .u-wrap")
            await page.wait_for_selector("#r-basket table")
            await page.wait_for_timeout(800)
            await page.screenshot(path=str(out / "console-results.png"), full_page=True)
            if w.errors:
                print("console errors:", *w.errors, sep="\n  ")
        async with watched_page(browser) as w:
            page = w.page
            await page.goto(base + "/dashboard")
            await page.fill("#key", ops)
            await page.press("#key", "Enter")
            await page.wait_for_selector("body[data-loaded='1']")
            await page.wait_for_timeout(1500)
            await page.screenshot(path=str(out / "dashboard.png"), full_page=True)
            if w.errors:
                print("dashboard errors:", *w.errors, sep="\n  ")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--warmup", type=float, default=120)
    parser.add_argument("--out", default="docs/screenshots")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        demo = subprocess.Popen(
            [sys.executable, "-m", "geopush", "demo", "--duration", str(args.warmup + 120),
             "--port", str(_free_port()), "--data-dir", tmp],
            stdout=subprocess.PIPE, text=True)
        try:
            assert demo.stdout is not None
            found: dict[str, str] = {}
            while len(found) < 2:
                line = demo.stdout.readline()
                if not line:
                    raise SystemExit("the demo stopped before it was ready")
                m = re.search(r"(console|dashboard):\s+(\S+)\s+\((?:marketer|ops) key: (\S+)\)",
                              line)
                if m:
                    found[m.group(1)] = m.group(3)
                    base = m.group(2).rsplit("/", 1)[0]
            print(f"demo ready at {base}; warming up {args.warmup:g} s ...", flush=True)
            time.sleep(args.warmup)
            asyncio.run(_shoot(base, found["console"], found["dashboard"], out))
        finally:
            demo.terminate()
            demo.wait(60)
    for png in sorted(out.glob("*.png")):
        _shrink(png)
        print(f"{png}: {png.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
