"""Foresight in the console (SPEC 16), in chromium: the composer shows what the offer
would have done over the last days as the marketer edits, and sends a test push."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api_client import Api, emulator_messages
from tests.browser import artifacts_dir, chromium, sign_in, watched_page
from tests.delivery_scenario import finished_delivery, open_shop, walk_in

pytestmark = pytest.mark.slow


async def test_the_composer_previews_as_the_marketer_edits_and_sends_a_test(
        gp: Api, emulator: Any, tmp_path_factory: Any) -> None:
    shop = await open_shop(gp, name="Morning coffee")
    phones = [await gp.device(f"tok-fs-console-{i}") for i in range(3)]
    for phone in phones:
        await walk_in(gp, shop, phone)
        await finished_delivery(gp, phone)
    marketer = await gp.key("marketer")
    shots = artifacts_dir(tmp_path_factory.getbasetemp())

    async with chromium() as browser, watched_page(browser) as w:
        page = w.page
        await sign_in(page, gp.base_url + "/console", marketer)
        await page.click("#tab-btn-offers")
        await page.click("#offer-new")
        await page.fill("#o-name", "Croissant")
        await page.fill(".translation .t-title", "A croissant?")
        await page.fill(".translation .t-body", "At {store_name}")
        summary = page.locator("#f-summary")
        await page.wait_for_function(
            "() => document.querySelector('#f-summary').textContent.includes('pick a store')")
        await page.check(f"#o-stores input[value='{shop.store['id']}']")
        await page.wait_for_function(
            "() => document.querySelector('#f-summary').textContent.startsWith('last 7 days')")
        # The shop's own offer (priority 0, older) wins every visit: three beaten here.
        assert await summary.text_content() == (
            "last 7 days: 0 customers, 0 sends, 3 beaten by another offer")
        bar = page.locator("#f-bars [data-reason='lower_priority'] .num")
        assert await bar.text_content() == "3"

        # Quick edits: each aborts the one before; the last (priority 9, one day) shows.
        await page.fill("#o-priority", "5")
        await page.fill("#o-priority", "9")
        await page.select_option("#f-days", "1")
        await page.wait_for_function(
            "() => document.querySelector('#f-summary').textContent.startsWith('last 1 day:')")
        assert await summary.text_content() == "last 1 day: 3 customers, 3 sends"
        assert await page.locator("#f-bars [data-reason='would_send'] .num").text_content() \
            == "3"
        await page.screenshot(path=str(shots / "console-foresight.png"), full_page=True)

        # Nothing was written by the previews: still one offer, no new decision.
        offers = (await gp.as_role("marketer", "GET", "/v1/offers")).ok(200)["items"]
        assert [o["id"] for o in offers] == [shop.offer["id"]]

        # A test needs a saved offer; then it reaches the phone named.
        await page.fill("#f-device", phones[0].device_id)
        await page.click("#f-test")
        await page.wait_for_function(
            "() => document.querySelector('#f-test-status').textContent.includes('save')")
        await page.click("#o-save")
        await page.wait_for_selector("#offer-status.ok")
        await page.click("#f-test")
        await page.wait_for_function(
            "() => document.querySelector('#f-test-status').textContent.startsWith('test sent')")
        messages = await emulator_messages(emulator.base_url, phones[0].fcm_token)
        tests = [m for m in messages if m["message"]["data"].get("test") == "1"]
        assert [m["message"]["notification"]["title"] for m in tests] == ["A croissant?"]
        await page.screenshot(path=str(shots / "console-foresight-test.png"), full_page=True)
        assert [e for e in w.errors if "/v1/offers/preview" not in e] == []

