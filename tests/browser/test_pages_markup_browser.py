"""Names are text on the pages: markup planted in a store or geofence name stays inert.

Names come from marketers' forms, from CSV store imports and from GeoJSON geofence imports;
the map tooltips of the console and the dashboard must show them as the characters they
are, never parse them as HTML (an `<a>` overlay saying "Session expired" would be phishing
with geopush's own origin behind it).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from tests.api.test_crm_imports import run_cli
from tests.api_client import Api
from tests.browser import artifacts_dir, chromium, sign_in, watched_page

pytestmark = pytest.mark.slow

LAT, LON = 48.8566, 2.3522
# Each plant, if parsed, adds an element the page never has in a tooltip.
OVERLAY = ('<a id="overlay" href="https://example.test/login" style="position:fixed;inset:0;'
           'background:#fff">Session expired, sign in again</a>')
PLANTS = {
    "api store": '<img id="img-store" src="x" onerror="document.title=1">',
    "api fence": "<style id='style-fence'>body{background:red}</style>fence",
    "csv store": OVERLAY,
    "geojson fence": '<b id="bold-geojson">imported</b>',
}
INJECTED = "#img-store, #style-fence, #overlay, #bold-geojson, .leaflet-tooltip *:not(span)"


async def _plant(gp: Api, database_url: str, tmp_path: Path) -> None:
    store = await gp.store(name=PLANTS["api store"], location={"lat": LAT, "lon": LON})
    await gp.circle(LAT, LON, 80, name=PLANTS["api fence"], store_id=store["id"])
    path = tmp_path / "stores.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([["external_id", "name", "timezone", "lat", "lon"],
                                 ["MK-1", PLANTS["csv store"], "Europe/Paris", LAT + 0.003, LON]])
    rc, _, err = await run_cli(database_url, tmp_path, "import", "stores", str(path))
    assert rc == 0, err
    collection = {"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"name": PLANTS["geojson fence"], "radius_m": 60},
        "geometry": {"type": "Point", "coordinates": [LON + 0.004, LAT]}}]}
    (await gp.as_role("marketer", "POST", "/v1/geofences/import", json=collection)).ok(200)


async def _tooltips(page: Any) -> list[str]:
    """Hover every shape on the map and collect what each tooltip shows."""
    shown = []
    shapes = page.locator("#map path.leaflet-interactive")
    for i in range(await shapes.count()):
        # Off centre: a fence's centre is under its store's marker.
        box = await shapes.nth(i).bounding_box()
        assert box is not None
        await shapes.nth(i).hover(force=True,
                                  position={"x": box["width"] * 0.25, "y": box["height"] / 2})
        tip = page.locator(".leaflet-tooltip").last
        await tip.wait_for(state="attached", timeout=2000)
        shown.append(await tip.text_content() or "")
    return shown


async def test_names_planted_through_api_and_imports_render_as_text(
        gp: Api, database_url: str, tmp_path: Path, tmp_path_factory: Any) -> None:
    await _plant(gp, database_url, tmp_path)
    shots = artifacts_dir(tmp_path_factory.getbasetemp())
    marketer, ops = await gp.key("marketer"), await gp.key("ops")
    async with chromium() as browser:
        for page_name, key, expected in (
                ("console", marketer, set(PLANTS.values())),
                ("dashboard", ops, {PLANTS["api fence"], PLANTS["geojson fence"]})):
            async with watched_page(browser) as w:
                page = w.page
                await sign_in(page, f"{gp.base_url}/{page_name}", key)
                await page.wait_for_selector("#map path.leaflet-interactive")
                shown = await _tooltips(page)
                await page.screenshot(path=str(shots / f"markup-{page_name}.png"))
                assert await page.locator(INJECTED).count() == 0, page_name
                assert expected <= set(shown), (page_name, shown)
                assert await page.title() != "1"
