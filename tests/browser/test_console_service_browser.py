"""The console's Service tab in a real browser (SPEC sections 13 and 14): the gap per
dimension as a chart, the recovery figures, open cases against the SLA, and the buttons
staff use to mark a case contacted or resolved."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.api_client import Api
from tests.browser import artifacts_dir, chromium, watched_page
from tests.conftest import unique_token
from tests.service_scenario import rated_store, visit

pytestmark = pytest.mark.slow


async def test_service_tab_shows_the_gap_and_works_the_cases(
    gp: Api, tmp_path_factory: Any,
) -> None:
    shop = await rated_store(gp)
    start = datetime.now(UTC) - timedelta(minutes=30)
    answers = [
        {"overall": 1, "dimensions": {"empathy": 1, "reliability": 3, "tangibles": 5},
         "expectations": {"empathy": 5}},
        {"overall": 4, "dimensions": {"empathy": 3, "reliability": 4, "responsiveness": 2}},
    ]
    for i, answer in enumerate(answers):
        phone = await gp.device(unique_token("ui"))
        await visit(gp, shop, phone, start + timedelta(minutes=5 * i))
        (await gp.call("POST", "/v1/feedback", key=phone.token,
                       json={"store_id": shop.store["id"], **answer})).ok(201)
    case = (await gp.as_role("ops", "GET", "/v1/cases")).ok(200)["items"][0]
    marketer = await gp.key("marketer")
    shots = artifacts_dir(tmp_path_factory.getbasetemp())

    async with chromium() as browser, watched_page(browser) as w:
        page = w.page
        await page.goto(gp.base_url + "/console")
        await page.fill("#key", marketer)
        await page.press("#key", "Enter")
        await page.wait_for_selector("body[data-loaded='1']")
        await page.click("#tab-btn-service")
        await page.wait_for_selector(".gap-row")
        rows = await page.locator(f"[data-store='{shop.store['id']}'] .gap-row").all()
        shown = [await r.get_attribute("data-dimension") for r in rows]
        # empathy (2 - 4.5 = -2.5), responsiveness (2 - 4), reliability (3.5 - 4), tangibles
        assert shown == ["empathy", "responsiveness", "reliability", "tangibles"]
        empathy = page.locator("[data-dimension='empathy']")
        assert "-2.50" in await empathy.inner_text()
        assert await empathy.locator(".gap-bar.below").count() == 1
        assert await page.locator("[data-dimension='tangibles'] .gap-bar.above").count() == 1
        assert "Rue Cartier" in await page.locator("#s-cases").inner_text()
        await page.screenshot(path=str(shots / "console-service.png"), full_page=True)

        await page.click(f"[data-case='{case['id']}'][data-action='contacted']")
        await page.wait_for_selector(f"[data-case='{case['id']}'][data-action='contacted']",
                                     state="detached")
        after = (await gp.as_role("ops", "GET", "/v1/cases")).ok(200)["items"][0]
        assert after["status"] == "contacted" and after["first_response_at"] is not None
        await page.click(f"[data-case='{case['id']}'][data-action='resolved']")
        await page.wait_for_function(
            "() => !document.querySelector('[data-action=resolved]')")
        figures = page.locator("#s-figures")
        assert "100 %" in await figures.inner_text()  # resolved within the SLA
        assert w.errors == []
    done = (await gp.as_role("ops", "GET", "/v1/cases")).ok(200)["items"][0]
    assert done["status"] == "resolved"
    print(f"\nscreenshot: {Path(shots) / 'console-service.png'}")
