"""A MultiPolygon geofence in the console: named, saved and reshaped without losing a part."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api_client import Api
from tests.browser import artifacts_dir, chromium, sign_in, watched_page

pytestmark = pytest.mark.slow

LAT, LON = 48.8566, 2.3522


def _square(lon: float, lat: float, d: float = 0.001) -> list[list[float]]:
    return [[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d], [lon, lat]]


async def test_a_multipolygon_is_saved_and_reshaped_with_every_part(
        gp: Api, tmp_path_factory: Any) -> None:
    geometry = {"type": "MultiPolygon", "coordinates": [[_square(LON, LAT)],
                                                        [_square(LON + 0.003, LAT)]]}
    fence = (await gp.as_role("marketer", "POST", "/v1/geofences", json={
        "name": "Two doors", "geometry": geometry})).ok(201)
    marketer = await gp.key("marketer")
    shots = artifacts_dir(tmp_path_factory.getbasetemp())
    async with chromium() as browser, watched_page(browser) as w:
        page = w.page
        await sign_in(page, gp.base_url + "/console", marketer)
        await page.click(f"#fence-list li[data-id='{fence['id']}'] button.link")
        await page.wait_for_selector("#fence-form:not(.hidden)")
        assert await page.text_content("#f-shape") == "MultiPolygon of 2 parts"
        await page.fill("#f-name", "Two doors, renamed")
        await page.click("#f-save")
        await page.wait_for_selector("#fence-status.ok")
        saved = (await gp.as_role("marketer", "GET", f"/v1/geofences/{fence['id']}")).ok(200)
        assert saved["name"] == "Two doors, renamed"
        assert saved["geometry"] == geometry, "renaming keeps every part"

        # Reshape: drag the first corner of the first part 40 px to the left.
        await page.click("#f-edit-shape")
        handles = page.locator(".marker-icon:not(.marker-icon-middle)")
        await handles.first.wait_for()
        assert await handles.count() == 8  # four corners a part
        box = await handles.first.bounding_box()
        assert box is not None
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        await page.mouse.move(x, y)
        await page.mouse.down()
        await page.mouse.move(x - 20, y, steps=4)
        await page.mouse.move(x - 40, y, steps=4)
        await page.mouse.up()
        await page.click("#f-save")
        await page.wait_for_selector("#fence-status.ok")
        await page.screenshot(path=str(shots / "console-multipolygon.png"))
        assert w.errors == []
    reshaped = (await gp.as_role("marketer", "GET", f"/v1/geofences/{fence['id']}")).ok(200)
    parts = reshaped["geometry"]["coordinates"]
    assert reshaped["geometry"]["type"] == "MultiPolygon" and len(parts) == 2
    def r6(ring: list[list[float]]) -> list[tuple[float, float]]:
        return [(round(x, 6), round(y, 6)) for x, y in ring]

    assert r6(parts[1][0]) == r6(geometry["coordinates"][1][0]), "the other part is untouched"
    before, after = r6(geometry["coordinates"][0][0]), r6(parts[0][0])
    moved = [(p, q) for p, q in zip(after, before, strict=True) if p != q]
    assert len(moved) == 2, moved  # the first corner, and the ring's closing copy of it
    assert all(p[0] < q[0] for p, q in moved), "the corner moved west"
