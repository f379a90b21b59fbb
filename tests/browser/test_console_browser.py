"""The marketers' console in a real browser: draw a geofence, compose an offer, see results.

Everything is done as a marketer would, with the mouse and the keyboard on the page; the
API is then asked what was stored, and it must be exactly what the page showed.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from geopush.campaigns.templates import fill
from tests.api_client import Api
from tests.browser import artifacts_dir, chromium, sign_in, watched_page
from tests.conftest import unique_token
from tests.delivery_scenario import finished_delivery, open_shop, walk_in

pytestmark = pytest.mark.slow


async def _map_point(page: Any, box: dict[str, float], x: float, y: float) -> list[float]:
    """The (lat, lon) a click at (x, y) of the map's box lands on, by the page's projection."""
    return await page.evaluate(
        "([x, y]) => { const p = window.geopushMap.mouseEventToLatLng({clientX: x, clientY: y});"
        " return [p.lat, p.lng]; }", [box["x"] + x, box["y"] + y])


def _r6(x: float) -> float:
    return round(x * 1e6) / 1e6


async def _fences(gp: Api) -> dict[str, dict[str, Any]]:
    items = (await gp.as_role("marketer", "GET", "/v1/geofences?limit=500")).ok(200)["items"]
    return {f["name"]: f for f in items}


async def test_console_draws_geofences_and_composes_an_offer(gp: Api, tmp_path: Path,
                                                             tmp_path_factory: Any) -> None:
    shop = await open_shop(gp, name="Morning coffee")
    device = await gp.device(unique_token("ok"))
    await walk_in(gp, shop, device)
    delivery = await finished_delivery(gp, device)
    for action in ("opened", "redeemed"):  # every step of the funnel has something
        assert (await gp.call("POST", f"/v1/deliveries/{delivery['id']}/{action}",
                              key=device.token)).status == 204
    marketer = await gp.key("marketer")
    shots = artifacts_dir(tmp_path_factory.getbasetemp())

    async with chromium() as browser, watched_page(browser) as w:
        page = w.page
        await page.context.clear_cookies()
        await sign_in(page, gp.base_url + "/console", marketer)
        box = await page.locator("#map").bounding_box()
        assert box is not None
        # Whole pixels: the browser delivers mouse events at integer positions.
        box = {k: float(round(v)) for k, v in box.items()}

        # A circle: click the centre, then the edge, 90 px to the east.
        cx, cy = round(box["width"] / 2) - 120, round(box["height"] / 2)
        await page.click("#draw-circle")
        await page.mouse.click(box["x"] + cx, box["y"] + cy)
        await page.mouse.move(box["x"] + cx + 45, box["y"] + cy, steps=3)
        await page.mouse.click(box["x"] + cx + 90, box["y"] + cy)
        await page.wait_for_selector("#fence-form:not(.hidden)")
        centre = await _map_point(page, box, cx, cy)
        edge = await _map_point(page, box, cx + 90, cy)
        radius = await page.evaluate("([a, b]) => window.geopushMap.distance(a, b)",
                                     [centre, edge])
        await page.fill("#f-name", "Drawn circle")
        await page.select_option("#f-store", shop.store["id"])
        await page.fill("#f-dwell", "120")
        await page.click("#f-save")
        await page.wait_for_selector("#fence-status.ok")

        # A polygon: four corners, then the first again to close it.
        corners = [(cx + 160, cy - 60), (cx + 260, cy - 60), (cx + 260, cy + 40),
                   (cx + 160, cy + 40)]
        await page.click("#draw-polygon")
        for x, y in corners:
            await page.mouse.click(box["x"] + x, box["y"] + y)
        await page.mouse.click(box["x"] + corners[0][0], box["y"] + corners[0][1])
        await page.wait_for_selector("#fence-form:not(.hidden)")
        points = [await _map_point(page, box, x, y) for x, y in corners]
        await page.fill("#f-name", "Drawn square")
        await page.uncheck("#f-enabled")
        await page.click("#f-save")
        await page.wait_for_selector("#fence-status.ok")
        await page.screenshot(path=str(shots / "console-map.png"))

        fences = await _fences(gp)
        circle = fences["Drawn circle"]
        assert circle["geometry"]["type"] == "Circle"
        assert circle["geometry"]["center"] == [_r6(centre[1]), _r6(centre[0])]
        assert abs(circle["geometry"]["radius_m"] - radius) <= 0.1
        assert (circle["store_id"], circle["dwell_s"], circle["enabled"]) == (
            shop.store["id"], 120, True)
        square = fences["Drawn square"]
        ring = [[_r6(lon), _r6(lat)] for lat, lon in points]
        assert square["geometry"] == {"type": "Polygon", "coordinates": [ring + ring[:1]]}
        assert (square["store_id"], square["enabled"]) == (None, False)

        # Enable it again from the list.
        await page.check(f"#fence-list li[data-id='{square['id']}'] input[type=checkbox]")
        await page.wait_for_function(
            "id => document.querySelector(`#fence-list li[data-id='${id}'] .pill`)"
            ".textContent === 'on'", arg=square["id"])
        assert (await _fences(gp))["Drawn square"]["enabled"] is True

        # The composer: every field of an offer, through the form.
        await page.click("#tab-btn-offers")
        await page.click("#offer-new")
        await page.fill("#o-name", "Pastry after coffee")
        await page.select_option("#o-trigger", "exit")
        await page.select_option("#o-status", "paused")
        await page.check(f"#o-stores input[value='{shop.store['id']}']")
        await page.check(f"#o-fences input[value='{circle['id']}']")
        await page.check("#o-segments input[value='best']")
        await page.check("#o-segments input[value='good']")
        await page.fill("#o-category", "pastry")
        await page.fill("#o-deeplink", "app://offers/pastry")
        await page.check("input[name='o-aud'][value='purchases']")
        await page.fill("#o-bought", "coffee, tea")
        await page.fill("#o-notbought", "pastry")
        await page.fill(".translation .t-title", "{first_name}, a croissant?")
        await page.fill(".translation .t-body", "At {store_name}: -30 % on pastries.")
        await page.click("#o-add-locale")
        row = page.locator(".translation").nth(1)
        await row.locator(".t-locale").fill("fr")
        await row.locator(".t-title").fill("Un croissant, {first_name} ?")
        await row.locator(".t-body").fill("Chez {store_name} : -30 % sur les viennoiseries.")
        await page.fill("#o-starts", "2030-01-01T09:00")
        await page.fill("#o-ends", "2030-02-01T09:00")
        await page.fill("#o-win-start", "07:00")
        await page.fill("#o-win-end", "11:30")
        await page.fill("#o-cooldown", "3600")
        await page.fill("#o-max", "500")
        await page.fill("#o-priority", "5")
        await page.fill("#o-ttl", "600")
        await page.fill("#o-control", "80")  # refused: at most 50

        # The preview, as a customer with no first name and as Camille, at the shop.
        await page.select_option("#p-store", shop.store["id"])
        # The page renders as the sender will (geopush.campaigns.templates.fill).
        fr = page.locator(".notif[data-locale='fr']")
        en = page.locator(".notif[data-locale='en']")
        values = {"first_name": None, "store_name": shop.store["name"]}
        assert await fr.locator(".t").text_content() == fill("Un croissant, {first_name} ?",
                                                             values) == "Un croissant, ?"
        assert await en.locator(".t").text_content() == fill("{first_name}, a croissant?",
                                                             values)
        await page.fill("#p-first", "Camille")
        assert await fr.locator(".t").text_content() == "Un croissant, Camille ?"
        assert await en.locator(".b").text_content() == (
            f"At {shop.store['name']}: -30 % on pastries.")

        await page.click("#o-save")
        err = page.locator("[data-field='control_pct'] .field-error")
        await err.wait_for()
        assert "50" in (await err.text_content() or "")
        listed = (await gp.as_role("marketer", "GET", "/v1/offers")).ok(200)["items"]
        assert [o["id"] for o in listed] == [shop.offer["id"]], "a refused offer is not stored"
        await page.fill("#o-control", "20")
        await page.click("#o-save")
        await page.wait_for_selector("#offer-status.ok")
        await page.screenshot(path=str(shots / "console-composer.png"), full_page=True)

        offers = (await gp.as_role("marketer", "GET", "/v1/offers")).ok(200)["items"]
        [made] = [o for o in offers if o["name"] == "Pastry after coffee"]
        made_id = made["id"]
        starts = datetime.fromisoformat(made.pop("starts_at"))
        ends = datetime.fromisoformat(made.pop("ends_at"))
        assert (starts.isoformat(), ends.isoformat()) == (
            "2030-01-01T09:00:00+00:00", "2030-02-01T09:00:00+00:00")
        for k in ("id", "created_at", "updated_at"):
            made.pop(k)
        made.pop("levels", None)
        assert made.pop("allow_recent_buyers") is False  # SPEC 15: the default
        assert made == {
            "name": "Pastry after coffee", "trigger": "exit", "status": "paused",
            "store_ids": [shop.store["id"]], "geofence_ids": [circle["id"]],
            "segments": ["good", "best"], "category": "pastry",
            "audience": {"bought_any": ["coffee", "tea"], "not_bought": ["pastry"]},
            "message": {"default_locale": "en", "translations": {
                "en": {"title": "{first_name}, a croissant?",
                       "body": "At {store_name}: -30 % on pastries."},
                "fr": {"title": "Un croissant, {first_name} ?",
                       "body": "Chez {store_name} : -30 % sur les viennoiseries."}}},
            "daily_window": {"start": "07:00", "end": "11:30"}, "cooldown_s": 3600,
            "max_sends": 500, "priority": 5, "control_pct": 20, "ttl_s": 600,
            "deeplink": "app://offers/pastry",
        }

        # Resume it from the list.
        await page.click(f"button[data-toggle='{made_id}']")
        await page.wait_for_function(
            "() => [...document.querySelectorAll('#offer-list .pill')]"
            ".filter(p => p.textContent === 'active').length === 2")

        # Results of the shop's offer: the funnel agrees with the stats endpoint.
        await page.click("#tab-btn-results")
        await page.select_option("#r-offer", shop.offer["id"])
        await page.wait_for_selector("#r-funnel [data-count='sent']")
        stats = (await gp.as_role("marketer", "GET",
                                  f"/v1/offers/{shop.offer['id']}/stats")).ok(200)
        await page.wait_for_selector("#r-daily .u-wrap")
        steps = ("triggered", "control", "queued", "sent", "opened", "redeemed")
        assert [stats[s] for s in steps] == [1, 0, 1, 1, 1, 1]
        for step in steps:
            shown = await page.locator(f"#r-funnel [data-count='{step}']").text_content()
            assert shown == str(stats[step]), step
        # The panels beside the funnel are drawn too, not left empty.
        for panel in ("#r-suppressed", "#r-conversion", "#r-segments"):
            assert (await page.locator(panel).text_content() or "").strip(), panel
        await page.screenshot(path=str(shots / "console-results.png"), full_page=True)
        # Chromium logs every 4xx answer to a fetch as a console error: the one refused
        # offer above is the only one expected.
        assert [e for e in w.errors if "status of 400" not in e or "/v1/offers" not in e] == []
        # (The composer's foresight may also be refused while the offer is half-typed.)
        assert len([e for e in w.errors if "/v1/offers/preview" not in e]) == 1

    async with chromium() as browser, watched_page(browser, 768, 1024) as w:
        page = w.page
        await sign_in(page, gp.base_url + "/console", marketer)
        # A tablet: nothing wider than the screen, every control labelled.
        assert await page.evaluate("document.documentElement.scrollWidth") <= 768
        unlabelled = await page.evaluate(
            "() => [...document.querySelectorAll('input, select, textarea')]"
            ".filter(e => e.type !== 'hidden' && !e.labels?.length"
            " && !e.getAttribute('aria-label')).map(e => e.id || e.name)")
        assert unlabelled == []
        await page.screenshot(path=str(shots / "console-tablet.png"))
        assert w.errors == []


async def test_a_basket_rule_becomes_a_cross_selling_offer(gp: Api,
                                                           tmp_path_factory: Any) -> None:
    store = await gp.store(external_id="S-basket", name="Corner shop")
    customers = "customer_id,first_name,language,created_at\n" + "".join(
        f"c{i},Ann,en,2024-01-01\n" for i in range(40))
    (await gp.as_role("marketer", "POST", "/v1/customers/import", data=customers,
                      headers={"Content-Type": "text/csv"})).ok(200)
    # Coffee drinkers often take a pastry; tea drinkers never do.
    baskets = [["coffee", "pastry"]] * 12 + [["coffee"]] * 8 + [["tea"]] * 10 + [
        ["coffee", "pastry", "juice"]] * 4
    rows = ["transaction_id,customer_id,store_external_id,ts,amount,category,line,product"]
    for b, items in enumerate(baskets):
        for line, item in enumerate(items, 1):
            rows.append(f"t{b},c{b % 40},S-basket,2026-01-0{1 + b % 9}T10:00:00Z,3.50,"
                        f"{item},{line},{item} #1")
    (await gp.as_role("marketer", "POST", "/v1/transactions/import",
                      data="\n".join(rows) + "\n",
                      headers={"Content-Type": "text/csv"})).ok(200)
    rules = (await gp.as_role("marketer", "GET", "/v1/insights/basket?level=category")
             ).ok(200)["rules"]
    assert rules
    best = rules[0]
    marketer = await gp.key("marketer")
    shots = artifacts_dir(tmp_path_factory.getbasetemp())

    async with chromium() as browser, watched_page(browser) as w:
        page = w.page
        await sign_in(page, gp.base_url + "/console", marketer)
        await page.click("#tab-btn-results")
        button = page.locator("#r-basket button", has_text="Create a cross-selling offer")
        await button.first.wait_for()
        await page.screenshot(path=str(shots / "console-basket.png"), full_page=True)
        await button.first.click()
        await page.wait_for_selector("#offer-form:not(.hidden)")
        # Who bought every item of the rule's "if" side, and not its "then" side.
        several = len(best["antecedent"]) > 1
        assert await page.input_value("#o-boughtall" if several else "#o-bought") == (
            ", ".join(best["antecedent"]))
        assert await page.input_value("#o-notbought") == ", ".join(best["consequent"])
        await page.click("#o-save")
        await page.wait_for_selector("#offer-status.ok")
        assert w.errors == []

    [offer] = (await gp.as_role("marketer", "GET", "/v1/offers")).ok(200)["items"]
    assert offer["trigger"] == "exit" and offer["store_ids"] == [store["id"]]
    expected = ({"bought_any": [], "bought_all": best["antecedent"]} if several
                else {"bought_any": best["antecedent"]})
    assert offer["audience"] == {**expected, "not_bought": best["consequent"]}
    assert offer["control_pct"] == 10
