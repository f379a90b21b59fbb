"""The ops dashboard: a self-contained page, and a summary whose numbers add up."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from geopush import metrics
from tests.api_client import Api
from tests.conftest import ADMIN_KEY, unique_token
from tests.delivery_scenario import (
    finished_delivery,
    open_shop,
    walk_in,
)
from tests.eventually import eventually


def _rejected(reason: str) -> float:
    """This process's counter of pings rejected for `reason` (shared by every test)."""
    return metrics.REGISTRY.get_sample_value(
        "geopush_pings_total", {"result": "rejected", "reason": reason}) or 0.0


async def _page_and_assets(gp: Api, path: str) -> tuple[str, Any]:
    """A page with every asset it names: all from this server, all there."""
    reply = await gp.call("GET", path)  # no key: the page asks for one
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/html")
    page = reply.body
    assert isinstance(page, str) and page.lstrip().lower().startswith("<!doctype html>")
    # No external asset of any kind: no URL with a scheme or a protocol-relative one.
    assert not re.search(r"(?i)(src|href)\s*=\s*[\"']?\s*(https?:|//)", page)
    assets = re.findall(r"(?:src|href)=\"([^\"]+)\"", page)
    assert assets and all(a.startswith("/static/") for a in assets), assets
    for asset in assets:
        got = await gp.call("GET", asset)
        assert got.status == 200, asset
        kind = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}
        assert got.headers["Content-Type"].startswith(kind[asset.rsplit(".", 1)[1]]), asset
    # It asks for the key in the page and keeps it for the tab only.
    assert 'type="password"' in page
    scripts = "".join([(await gp.call("GET", a)).body for a in assets
                       if a.endswith(".js") and "/vendor/" not in a])
    assert "sessionStorage" in scripts
    assert "localStorage" not in scripts and "document.cookie" not in scripts
    # The browser enforces it too: scripts from this origin only.
    csp = reply.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self';" in csp
    assert "connect-src 'self'" in csp
    assert reply.headers["Cache-Control"] == "no-store"
    return page, scripts


async def test_pages_are_served_with_packaged_assets_only(gp: Api) -> None:
    _, scripts = await _page_and_assets(gp, "/dashboard")
    assert "/v1/ops/summary" in scripts and "/v1/ops/timeseries" in scripts
    assert re.search(r"REFRESH_MS = [1-9]\d{3};", scripts)
    page, scripts = await _page_and_assets(gp, "/console")
    assert "/v1/offers" in scripts and "/v1/geofences" in scripts
    # The page says which API routes exist, so sections whose endpoint is missing are
    # shown as not available without a failed request.
    settings = json.loads(re.search(
        r'<script type="application/json" id="geopush-settings">(.*?)</script>', page,
        re.S).group(1))
    assert "GET /v1/offers/{offer_id}/stats/daily" in settings["routes"]
    assert settings["tile_url"] == ""
    # The icon browsers ask for, and nothing outside the packaged web folder.
    assert (await gp.call("GET", "/favicon.ico")).status == 200
    for bad in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/nope.js",
                "/static/vendor/../../cli.py", "/static/common.exe"):
        assert (await gp.call("GET", bad)).status == 404, bad


async def test_console_tiles_come_from_the_configured_server(start_server: Any) -> None:
    server = await start_server(console={"tile_url": "https://{s}.tile.example.org/{z}/{x}/{y}.png"})
    async with Api(server.url, ADMIN_KEY) as client:
        reply = await client.call("GET", "/console")
    assert "img-src 'self' data: https://*.tile.example.org;" in (
        reply.headers["Content-Security-Policy"])
    assert "https://{s}.tile.example.org/{z}/{x}/{y}.png" in reply.body


async def test_summary_matches_a_known_scenario(gp: Api) -> None:
    shop = await open_shop(gp, name="Morning coffee")
    await open_shop(gp, north_km=5, name="Tea", status="paused")
    reached = await gp.device(unique_token("ok"))
    dead = await gp.device(unique_token("fail-unregistered-x"))
    leaver = await gp.device(unique_token("ok"))
    silent = await gp.device(unique_token("ok"), push=False)
    mocked_before, invalid_before = _rejected("mocked"), _rejected("invalid")

    replies = [await walk_in(gp, shop, reached), await walk_in(gp, shop, dead),
               await walk_in(gp, shop, leaver, then_out=True), await walk_in(gp, shop, silent)]
    accepted = sum(r["accepted"] for r in replies)
    now = datetime.now(UTC).isoformat()
    odd = {"pings": [{"lat": 95.0, "lon": 0.0, "accuracy_m": 5, "ts": now},
                     {"lat": shop.lat, "lon": shop.lon, "accuracy_m": 5, "ts": now,
                      "mocked": True}]}
    body = (await gp.call("POST", "/v1/pings", key=silent.token, json=odd)).ok(202)
    assert sorted(r["reason"] for r in body["rejected"]) == ["invalid", "mocked"]

    ok = await finished_delivery(gp, reached)
    failed = await finished_delivery(gp, dead)
    await finished_delivery(gp, leaver)
    assert (await gp.call("POST", f"/v1/deliveries/{ok['id']}/opened", key=reached.token)
            ).status == 204

    async def settled() -> dict[str, Any] | None:
        s = (await gp.as_role("ops", "GET", "/v1/ops/summary")).ok(200)
        return s if s["outbox"]["depth"] == 0 else None

    s = await eventually(settled)
    assert s["window_hours"] == 24
    assert s["outbox"] == {"depth": 0, "due": 0, "in_flight": 0, "oldest_queued_at": None,
                           "oldest_age_s": None}
    d = s["deliveries"]
    assert d["by_status"] == {"queued": 0, "sent": 1, "failed": 1, "cancelled": 1}
    assert d["total"] == 3 and d["opened"] == 1 and d["redeemed"] == 0
    assert sorted((r["status"], r["reason"], r["count"]) for r in d["by_reason"]) == [
        ("cancelled", "left_geofence", 1), ("failed", "unregistered", 1), ("sent", None, 1)]
    [failure] = s["recent_failures"]
    assert (failure["id"], failure["offer_id"], failure["reason"], failure["attempts"]) == (
        failed["id"], shop.offer["id"], "unregistered", 1)

    offers = {o["id"]: o for o in s["offers"]}
    assert len(offers) == 2
    coffee = offers[shop.offer["id"]]
    assert (coffee["name"], coffee["trigger"], coffee["status"]) == (
        "Morning coffee", "enter", "active")
    assert coffee["funnel"] == {
        "triggered": 4, "suppressed": {"no_push_consent": 1}, "control": 0, "queued": 3,
        "deliveries": {"queued": 0, "sent": 1, "failed": 1, "cancelled": 1},
        "failed": {"unregistered": 1}, "opened": 1, "redeemed": 0,
    }
    tea = next(o for o in s["offers"] if o["id"] != shop.offer["id"])
    assert tea["status"] == "paused" and tea["funnel"]["triggered"] == 0

    assert s["geofences"] == {"loaded": 2, "enabled": 2, "total": 2}
    assert s["pings"]["stored"] == accepted
    since_start = s["pings"]["since_start"]
    assert since_start["rejected"]["mocked"] == mocked_before + 1
    assert since_start["rejected"]["invalid"] == invalid_before + 1
    assert since_start["accepted"] >= accepted

    # Ids, counts and codes only: no token, key, name of a person or coordinate.
    text = json.dumps(s)
    for secret in (reached.fcm_token, dead.fcm_token, reached.token, ADMIN_KEY,
                   str(shop.lat), str(shop.lon)):
        assert secret not in text
    assert not re.search(r'"(lat|lon|latitude|longitude|fcm_token|title|body)"', text)

    narrow = (await gp.as_role("ops", "GET", "/v1/ops/summary?hours=1")).ok(200)
    assert narrow["window_hours"] == 1 and narrow["deliveries"]["total"] == 3
    for bad in ("hours=0", "hours=721", "hours=x"):
        assert (await gp.as_role("ops", "GET", f"/v1/ops/summary?{bad}")).status == 400


async def test_summary_roles(gp: Api) -> None:
    assert (await gp.as_role("ops", "GET", "/v1/ops/summary")).status == 200
    assert (await gp.call("GET", "/v1/ops/summary", key=ADMIN_KEY)).status == 200
    for role in ("marketer", "app"):
        reply = await gp.as_role(role, "GET", "/v1/ops/summary")
        assert reply.status == 403 and reply.body["error"]["code"] == "forbidden"
    reply = await gp.call("GET", "/v1/ops/summary")
    assert reply.status == 401 and reply.body["error"]["code"] == "unauthorized"
    assert (await gp.call("GET", "/v1/ops/summary", key="gpk_wrong")).status == 401
