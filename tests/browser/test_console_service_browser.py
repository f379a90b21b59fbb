"""The console's Service tab in a real browser (SPEC sections 13 and 14): the gap per
dimension as a chart, the recovery figures, open cases against the SLA, and the buttons
staff use to mark a case contacted or resolved."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from tests.api_client import Api
from tests.browser import artifacts_dir, chromium, sign_in, watched_page
from tests.conftest import ADMIN_KEY, unique_token
from tests.delivery_scenario import sections
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
        await sign_in(page, gp.base_url + "/console", marketer)
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


async def test_cases_are_late_against_the_configured_sla(
    start_server: Callable[..., Any], db: asyncpg.Connection, tmp_path_factory: Any,
) -> None:
    """The SLA line is `[feedback] recovery_sla_s` as the server reports it, not a constant:
    with two hours, a case open for 90 minutes is on time and one open for three is late."""
    server = await start_server(**sections(feedback={"recovery_sla_s": 7200}))
    async with Api(server.url, ADMIN_KEY) as api:
        shop = await rated_store(api)
        start = datetime.now(UTC) - timedelta(minutes=30)
        for i in range(2):
            phone = await api.device(unique_token("sla"))
            await visit(api, shop, phone, start + timedelta(minutes=5 * i))
            (await api.call("POST", "/v1/feedback", key=phone.token,
                            json={"store_id": shop.store["id"], "overall": 1})).ok(201)
        cases = (await api.as_role("ops", "GET", "/v1/cases")).ok(200)["items"]
        on_time, late = (c["id"] for c in cases)
        for case_id, minutes in ((on_time, 90), (late, 180)):
            await db.execute("UPDATE service_cases SET opened_at = now() - make_interval("
                             "mins => $2) WHERE case_id = $1", UUID(case_id), minutes)
        marketer = await api.key("marketer")
        async with chromium() as browser, watched_page(browser) as w:
            page = w.page
            await sign_in(page, server.url + "/console", marketer)
            await page.click("#tab-btn-service")
            await page.wait_for_selector(f"[data-case='{late}']")
            rows = {c: await page.locator(f"tr:has([data-case='{c}'])").inner_text()
                    for c in (on_time, late)}
            assert "past SLA" not in rows[on_time], rows
            assert "past SLA" in rows[late], rows
            shots = artifacts_dir(tmp_path_factory.getbasetemp())
            await page.screenshot(path=str(shots / "console-service-sla.png"), full_page=True)
            assert w.errors == []
