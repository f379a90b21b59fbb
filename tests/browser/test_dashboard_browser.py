"""The ops dashboard in a real browser: its figures agree with /metrics and the stats."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api_client import Api, metric_value
from tests.browser import artifacts_dir, chromium, sign_in, watched_page
from tests.conftest import unique_token
from tests.delivery_scenario import finished_delivery, open_shop, walk_in

pytestmark = pytest.mark.slow


async def test_dashboard_figures_agree_with_metrics_and_stats(gp: Api,
                                                              tmp_path_factory: Any) -> None:
    shop = await open_shop(gp, name="Morning coffee")
    for token in (unique_token("ok"), unique_token("fail-unregistered-x")):
        device = await gp.device(token)
        await walk_in(gp, shop, device)
        await finished_delivery(gp, device)
    ops = await gp.key("ops")
    shots = artifacts_dir(tmp_path_factory.getbasetemp())

    async with chromium() as browser, watched_page(browser) as w:
        page = w.page
        await sign_in(page, gp.base_url + "/dashboard", ops)
        await page.wait_for_selector("#c-latency .u-wrap")
        await page.wait_for_selector("#map path.leaflet-interactive")

        def value(card: str) -> Any:
            return page.locator(f"[data-value='{card}']").text_content()

        metrics = (await gp.call("GET", "/metrics")).body
        accepted = metric_value(metrics, "geopush_pings_total", result="accepted", reason="")
        assert await value("pings-total") == f"{int(accepted):,}"
        stats = (await gp.as_role("ops", "GET", f"/v1/offers/{shop.offer['id']}/stats")).ok(200)
        assert await page.locator(f"[data-offer-sent='{shop.offer['id']}']").text_content() == (
            str(stats["sent"])) == "1"
        assert await value("sent-total") == "1"
        assert await value("failed") == "1"
        assert await value("geofences") == "1"
        series = (await gp.as_role("ops", "GET", "/v1/ops/timeseries")).ok(200)
        p50 = series["latency"]["window"]["p50"]
        # Shown rounded to its unit: "850 ms", "4.2 s", "4.2 min".
        number, unit = (await value("p50")).split(" ")
        scale = {"ms": 0.001, "s": 1.0, "min": 60.0}[unit]
        assert abs(float(number) * scale - p50) <= scale * 0.5
        await page.screenshot(path=str(shots / "dashboard.png"), full_page=True)
        assert w.errors == []
