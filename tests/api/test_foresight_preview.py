"""Foresight (SPEC 16): the preview's counts equal what the same offer really did.

Shoppers walk in and out of a shop through the real ping pipeline while two offers compete
there (one with a budget that runs out, one with a cooldown, a control group and a budget of
its own), with the sender delivering to the FCM emulator in between. The preview of the
second offer over the same stored events must then give, reason by reason, the decisions
its live run wrote, and write nothing.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from tests.api_client import Api, walk
from tests.delivery_scenario import open_shop
from tests.eventually import eventually

N_SHOPPERS = 6
VISITS = 3


async def _walk_visit(api: Api, db: asyncpg.Connection, shop: Any, device: Any,
                      start: datetime) -> None:
    """In (one batch), the push delivered, then out (another): as a phone uploads."""
    (await api.pings(device, walk(shop.lat, shop.lon, -400, 0, 9, start))).ok(202)
    await eventually(lambda: _settled(db), within=10, what="every push delivered")
    out = walk(shop.lat, shop.lon, 50, 400, 8, start + timedelta(seconds=90))
    (await api.pings(device, out)).ok(202)


async def _settled(db: asyncpg.Connection) -> bool:
    """Nothing queued: the sender has delivered every push (as it would have live)."""
    return not await db.fetchval("SELECT count(*) FROM deliveries WHERE status = 'queued'")


async def _live_outcomes(db: asyncpg.Connection, offer_id: str) -> dict[str, Any]:
    rows = await db.fetch("SELECT outcome, reason FROM decisions WHERE offer_id = $1", offer_id)
    suppressed = Counter(r["reason"] for r in rows if r["outcome"] == "suppressed")
    return {"triggered": len(rows),
            "would_send": sum(r["outcome"] == "queued" for r in rows),
            "control": sum(r["outcome"] == "control" for r in rows),
            "suppressed": dict(sorted(suppressed.items()))}


async def _counts(db: asyncpg.Connection) -> tuple[int, int]:
    return (await db.fetchval("SELECT count(*) FROM decisions"),
            await db.fetchval("SELECT count(*) FROM deliveries"))


async def test_preview_agrees_with_the_live_run_reason_by_reason(
        gp: Api, db: asyncpg.Connection) -> None:
    shop = await open_shop(gp, name="Loud", priority=5, max_sends=3)
    mine = await gp.offer(geofence_ids=[shop.fence["id"]], trigger="enter", name="Quiet",
                          cooldown_s=240, control_pct=30, max_sends=5, ttl_s=900)
    devices = [await gp.device(f"tok-fs-{i}", customer_id=f"cust-fs-{i}" if i % 2 else None,
                               push=i != 0) for i in range(N_SHOPPERS)]
    start = datetime.now(UTC) - timedelta(minutes=14)
    for visit in range(VISITS):
        for i, device in enumerate(devices):
            at = start + timedelta(minutes=4 * visit, seconds=10 * i)
            await _walk_visit(gp, db, shop, device, at)
    live = await _live_outcomes(db, mine["id"])
    assert live["triggered"] == N_SHOPPERS * VISITS
    assert len(live["suppressed"]) >= 3, live  # lower_priority, no_push_consent, cooldown…

    before = await _counts(db)
    reply = await gp.as_role("marketer", "POST", "/v1/offers/preview",
                             json={"offer": mine, "days": 1})
    preview = reply.ok(200)
    got = {k: preview[k] for k in ("triggered", "would_send", "control", "suppressed")}
    assert got == live
    assert await _counts(db) == before  # nothing written
    assert preview["events"] >= N_SHOPPERS * VISITS
    assert preview["customers"] == len({
        r["s"] for r in await db.fetch(
            "SELECT coalesce(customer_id, device_id::text) AS s FROM decisions"
            " WHERE offer_id = $1 AND outcome = 'queued'", mine["id"])})
    store = preview["by_store"][shop.store["id"]]
    assert store["triggered"] == live["triggered"]
    assert sum(d["would_send"] for d in preview["by_day"].values()) == live["would_send"]
    assert sum(s["triggered"] for s in preview["by_segment"].values()) == live["triggered"]

    # The offers that were active then compete, as they did: the rival paused since, and
    # one created after the visits (it did not exist then), change nothing.
    (await gp.as_role("marketer", "PATCH", f"/v1/offers/{shop.offer['id']}",
                      json={"status": "paused"})).ok(200)
    await gp.offer(geofence_ids=[shop.fence["id"]], trigger="enter", name="Late",
                   priority=50)
    again = (await gp.as_role("marketer", "POST", "/v1/offers/preview",
                              json={"offer": mine, "days": 1})).ok(200)
    assert {k: again[k] for k in ("triggered", "would_send", "control", "suppressed")} == live


async def test_preview_of_a_new_offer_counts_its_targets_and_refuses_bad_bodies(
        gp: Api, db: asyncpg.Connection) -> None:
    shop = await open_shop(gp, name="Other")
    device = await gp.device("tok-fs-new")
    await _walk_visit(gp, db, shop, device, datetime.now(UTC) - timedelta(minutes=5))
    draft = {"trigger": "enter", "store_ids": [shop.store["id"]], "name": "Draft",
             "status": "paused",
             "message": {"default_locale": "en",
                         "translations": {"en": {"title": "Hi", "body": "Coffee"}}}}
    # A shopper who asked for quiet all day (SPEC 15's own quiet hours) walks in too.
    quiet = await gp.device("tok-fs-quiet")
    (await gp.call("PUT", "/v1/devices/me/preferences", key=quiet.token,
                   json={"quiet_hours": {"start": "00:00", "end": "23:59"}})).ok(200)
    await _walk_visit(gp, db, shop, quiet, datetime.now(UTC) - timedelta(minutes=4))
    preview = (await gp.as_role("marketer", "POST", "/v1/offers/preview",
                                json={"offer": draft})).ok(200)
    assert preview["triggered"] == 2
    # The shop's own offer wins the first; the second shopper's quiet hours hold both.
    assert preview["suppressed"] == {"lower_priority": 1, "quiet_hours": 1}

    bad = await gp.as_role("marketer", "POST", "/v1/offers/preview",
                           json={"offer": draft, "days": 31})
    assert bad.status == 400
    reward = await gp.as_role("marketer", "POST", "/v1/offers/preview",
                              json={"offer": {**draft, "trigger": "reward"}})
    assert reward.status in (400, 422)
    assert (await gp.as_role("ops", "POST", "/v1/offers/preview",
                             json={"offer": draft})).status == 403


async def test_a_preview_beyond_the_bound_is_refused_with_422_saying_why(
        start_server: Any, db: asyncpg.Connection) -> None:
    from tests.conftest import ADMIN_KEY
    from tests.delivery_scenario import sections

    server = await start_server(**sections(campaigns={"preview_max_events": 1}))
    async with Api(server.url, ADMIN_KEY) as gp:
        shop = await open_shop(gp, name="Busy")
        for i in range(2):
            device = await gp.device(f"tok-fs-bound-{i}")
            await _walk_visit(gp, db, shop, device,
                              datetime.now(UTC) - timedelta(minutes=10 - i))
        reply = await gp.as_role("marketer", "POST", "/v1/offers/preview",
                                 json={"offer": shop.offer, "days": 1})
    assert reply.status == 422
    assert reply.body["error"]["code"] == "preview_too_large"
    assert "fewer days" in reply.body["error"]["message"]
