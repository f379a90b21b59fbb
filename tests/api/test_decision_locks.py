"""Locks match what they protect: an offer's lock row is taken only for `max_sends`.

Another transaction holds the offer's lock row (as a slow decision on that offer would); a
device entering the offer's fence must not wait for it unless the offer has a budget.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg

from tests.api_client import Api, walk
from tests.conftest import unique_token

LAT, LON = 39.93, 116.40


async def _hold_offer_lock(database_url: str, offer_id: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(database_url)
    await conn.execute("BEGIN")
    await conn.execute("INSERT INTO offer_locks (offer_id) VALUES ($1) ON CONFLICT DO NOTHING",
                       offer_id)
    await conn.execute("SELECT 1 FROM offer_locks WHERE offer_id = $1 FOR UPDATE", offer_id)
    return conn


def _enter(api: Api, dev) -> asyncio.Task:
    points = walk(LAT, LON, -400, 0, 5, datetime.now(UTC) - timedelta(minutes=2))
    return asyncio.ensure_future(api.pings(dev, points))


async def test_an_offer_without_max_sends_is_decided_without_its_lock(
        api: Api, db, database_url: str) -> None:
    fence = await api.circle(LAT, LON, 150)
    offer = await api.offer(geofence_ids=[fence["id"]])
    dev = await api.device(unique_token())
    holder = await _hold_offer_lock(database_url, offer["id"])
    try:
        reply = await asyncio.wait_for(_enter(api, dev), timeout=20)
    finally:
        await holder.close()
    assert [e["type"] for e in reply.ok(202)["events"]] == ["enter"]
    assert await db.fetchval("SELECT outcome FROM decisions WHERE offer_id = $1",
                             offer["id"]) == "queued"


async def test_an_offer_with_max_sends_waits_for_its_lock(
        api: Api, db, database_url: str) -> None:
    fence = await api.circle(LAT, LON, 150)
    offer = await api.offer(geofence_ids=[fence["id"]], max_sends=10)
    dev = await api.device(unique_token())
    holder = await _hold_offer_lock(database_url, offer["id"])
    try:
        pending = _enter(api, dev)
        done, _ = await asyncio.wait({pending}, timeout=1.5)
        assert not done, "a max_sends decision went ahead without the offer's lock"
        assert await db.fetchval("SELECT count(*) FROM decisions") == 0
    finally:
        await holder.close()
    reply = await asyncio.wait_for(pending, timeout=20)
    assert [e["type"] for e in reply.ok(202)["events"]] == ["enter"]
    assert await db.fetchval("SELECT outcome FROM decisions WHERE offer_id = $1",
                             offer["id"]) == "queued"
