"""Decisions through the real pipeline: one batch, several events, caps held."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tests.api_client import Api, emulator_messages, walk
from tests.conftest import unique_token

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
    await asyncio.sleep(1.0)
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
