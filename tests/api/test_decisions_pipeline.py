"""Decisions through the real pipeline: one batch, several events, caps held."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tests.api_client import Api, emulator_messages, walk
from tests.conftest import unique_token
from tests.delivery_scenario import sender_idle
from tests.eventually import eventually

LAT, LON = 39.93, 116.40


async def test_two_overlapping_fences_of_one_offer_send_once(api: Api, emulator, db) -> None:
    store = await api.store(location={"lat": LAT, "lon": LON})
    a = await api.circle(LAT, LON, 150, store_id=store["id"])
    b = await api.circle(LAT, LON, 150, store_id=store["id"])
    offer = await api.offer(store_ids=[store["id"]])
    dev = await api.device(unique_token())
    reply = (await api.pings(dev, walk(LAT, LON, -400, 0, 5,
                                       datetime.now(UTC) - timedelta(minutes=2)))).ok(202)
    assert sorted(e["geofence_id"] for e in reply["events"]) == sorted([a["id"], b["id"]])
    rows = await db.fetch("SELECT outcome, reason FROM decisions WHERE offer_id = $1",
                          offer["id"])
    assert sorted((r["outcome"], r["reason"]) for r in rows) == [
        ("queued", None), ("suppressed", "cooldown")]
    await sender_idle(db)
    assert len(await emulator_messages(emulator.base_url, dev.fcm_token)) == 1


async def test_two_stores_at_one_spot_one_offer_send_once(api: Api, emulator, db) -> None:
    s1 = await api.store(location={"lat": LAT, "lon": LON})
    s2 = await api.store(location={"lat": LAT, "lon": LON})
    await api.circle(LAT, LON, 150, store_id=s1["id"])
    await api.circle(LAT, LON, 150, store_id=s2["id"])
    offer = await api.offer(store_ids=[s1["id"], s2["id"]], cooldown_s=3600)
    dev = await api.device(unique_token())
    (await api.pings(dev, walk(LAT, LON, -400, 0, 5,
                               datetime.now(UTC) - timedelta(minutes=2)))).ok(202)
    rows = await db.fetch("SELECT outcome, reason FROM decisions WHERE offer_id = $1",
                          offer["id"])
    assert sorted((r["outcome"], r["reason"] or "") for r in rows) == [
        ("queued", ""), ("suppressed", "cooldown")]


async def _walk_in(api: Api, dev, lat: float = LAT, lon: float = LON) -> dict:
    start = datetime.now(UTC) - timedelta(minutes=2)
    return (await api.pings(dev, walk(lat, lon, -400, 0, 5, start))).ok(202)


async def test_customer_with_two_phones_gets_one_push(api: Api, emulator, db) -> None:
    await api.circle(LAT, LON, 150)
    fence_id = (await api.as_role("marketer", "GET", "/v1/geofences")).ok(200)["items"][0]["id"]
    offer = await api.offer(geofence_ids=[fence_id], cooldown_s=86400)
    phone, tablet = (await api.device(unique_token(), customer_id="C-42"),
                     await api.device(unique_token(), customer_id="C-42"))
    await asyncio.gather(_walk_in(api, phone), _walk_in(api, tablet))
    rows = await db.fetch("SELECT outcome, reason FROM decisions WHERE offer_id = $1",
                          offer["id"])
    assert sorted((r["outcome"], r["reason"] or "") for r in rows) == [
        ("queued", ""), ("suppressed", "cooldown")]
    await sender_idle(db)
    got = [len(await emulator_messages(emulator.base_url, d.fcm_token)) for d in (phone, tablet)]
    assert sorted(got) == [0, 1]


async def test_daily_cap_counts_the_customers_every_phone(start_server, emulator, db) -> None:
    server = await start_server(campaigns={"daily_cap": 1})
    from tests.conftest import ADMIN_KEY

    async with Api(server.url, ADMIN_KEY) as api:
        far_lat = LAT + 0.05
        a = await api.circle(LAT, LON, 150)
        b = await api.circle(far_lat, LON, 150)
        await api.offer(geofence_ids=[a["id"]])
        second = await api.offer(geofence_ids=[b["id"]])
        phone = await api.device(unique_token(), customer_id="C-7")
        tablet = await api.device(unique_token(), customer_id="C-7")
        await _walk_in(api, phone)
        await _walk_in(api, tablet, far_lat)
        reason = await db.fetchval("SELECT reason FROM decisions WHERE offer_id = $1",
                                   second["id"])
        assert reason == "daily_cap"


async def test_max_sends_budget_across_devices(api: Api, db) -> None:
    fence = await api.circle(LAT, LON, 150)
    offer = await api.offer(geofence_ids=[fence["id"]], max_sends=2)
    devices = [await api.device(unique_token()) for _ in range(4)]
    await asyncio.gather(*[_walk_in(api, d) for d in devices])
    rows = await db.fetch("SELECT outcome, reason FROM decisions WHERE offer_id = $1",
                          offer["id"])
    assert sorted((r["outcome"], r["reason"] or "") for r in rows) == [
        ("queued", ""), ("queued", ""),
        ("suppressed", "budget_exhausted"), ("suppressed", "budget_exhausted")]


async def test_dwell_and_exit_offers_fire_on_their_events(api: Api, emulator, db) -> None:
    fence = await api.circle(LAT, LON, 150, dwell_s=60)
    dwell = await api.offer(geofence_ids=[fence["id"]], trigger="dwell")
    leave = await api.offer(geofence_ids=[fence["id"]], trigger="exit", ttl_s=3600)
    dev = await api.device(unique_token())
    start = datetime.now(UTC) - timedelta(minutes=10)
    path = walk(LAT, LON, -400, 0, 5, start) + walk(LAT, LON, 0, 20, 10,
                                                    start + timedelta(seconds=60))
    reply = (await api.pings(dev, path)).ok(202)
    assert [e["type"] for e in reply["events"]] == ["enter", "dwell"]
    # The dwell push goes out while the phone is still inside.
    await eventually(lambda: emulator_messages(emulator.base_url, dev.fcm_token))
    out = walk(LAT, LON, 300, 600, 3, start + timedelta(minutes=5))
    reply = (await api.pings(dev, out)).ok(202)
    assert [e["type"] for e in reply["events"]] == ["exit"]
    for offer in (dwell, leave):
        outcome = await db.fetchval("SELECT outcome FROM decisions WHERE offer_id = $1",
                                    offer["id"])
        assert outcome == "queued", offer["trigger"]
    await sender_idle(db)
    assert len(await emulator_messages(emulator.base_url, dev.fcm_token)) == 2
