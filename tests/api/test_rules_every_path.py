"""Rules that must hold on every path, not only the usual one: the cooldown ignores pushes
that never went out, and a process without FCM credentials still ends queued deliveries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from tests.api_client import Api, walk
from tests.conftest import ADMIN_KEY, unique_token
from tests.eventually import eventually

LAT, LON = 39.95, 116.35
NO_FCM = {"fcm": {"credentials_file": ""},
          "campaigns": {"quiet_hours_start": "00:00", "quiet_hours_end": "00:00"}}


async def _deliveries(db: asyncpg.Connection, offer_id: str) -> list[tuple[str, str | None]]:
    rows = await db.fetch("SELECT status, reason FROM deliveries WHERE offer_id = $1"
                          " ORDER BY created_at", offer_id)
    return [(r["status"], r["reason"]) for r in rows]


async def test_a_push_cancelled_as_left_geofence_does_not_start_the_cooldown(
    start_server: Any, db: asyncpg.Connection
) -> None:
    server = await start_server(**NO_FCM)
    async with Api(server.url, ADMIN_KEY) as api:
        fence = await api.circle(LAT, LON, 100)
        offer = await api.offer(geofence_ids=[fence["id"]], cooldown_s=86400)
        dev = await api.device(unique_token())
        start = datetime.now(UTC) - timedelta(minutes=3)
        # In, out (the exit cancels the queued push), and in again.
        (await api.pings(dev, walk(LAT, LON, -400, 0, 5, start))).ok(202)
        (await api.pings(dev, walk(LAT, LON, 0, 500, 5, start + timedelta(seconds=50)))).ok(202)
        assert await _deliveries(db, offer["id"]) == [("cancelled", "left_geofence")]
        (await api.pings(dev, walk(LAT, LON, 500, 0, 5,
                                   start + timedelta(seconds=100)))).ok(202)
        rows = await db.fetch("SELECT outcome, reason FROM decisions WHERE offer_id = $1"
                              " ORDER BY decided_at", offer["id"])
        assert [(r["outcome"], r["reason"]) for r in rows] == [("queued", None),
                                                               ("queued", None)]
        assert await _deliveries(db, offer["id"]) == [("cancelled", "left_geofence"),
                                                      ("queued", None)]
        # A push still queued does count: a third visit is held back by the cooldown.
        (await api.pings(dev, walk(LAT, LON, 0, 500, 3, start + timedelta(seconds=150))
                         [1:] + walk(LAT, LON, 500, 0, 3, start + timedelta(seconds=170)))
         ).ok(202)
        reasons = [r["reason"] for r in await db.fetch(
            "SELECT reason FROM decisions WHERE offer_id = $1 ORDER BY decided_at",
            offer["id"])]
        assert reasons[-1] == "cooldown"


async def test_without_fcm_credentials_queued_deliveries_still_expire(
    start_server: Any, db: asyncpg.Connection
) -> None:
    server = await start_server(**NO_FCM)
    async with Api(server.url, ADMIN_KEY) as api:
        fence = await api.circle(LAT, LON, 100)
        offer = await api.offer(geofence_ids=[fence["id"]], ttl_s=60, max_sends=1)
        first, second = await api.device(unique_token()), await api.device(unique_token())
        # The enter is 57 s old: its push is due to expire three seconds from now.
        start = datetime.now(UTC) - timedelta(seconds=77)
        (await api.pings(first, walk(LAT, LON, -400, 0, 3, start))).ok(202)
        assert await _deliveries(db, offer["id"]) == [("queued", None)]

        async def expired() -> bool:
            return await _deliveries(db, offer["id"]) == [("failed", "expired")]

        await eventually(expired)
        # The expired push no longer uses up max_sends: the next visitor gets the offer.
        (await api.pings(second, walk(LAT, LON, -400, 0, 5,
                                      datetime.now(UTC) - timedelta(seconds=45)))).ok(202)
        assert await _deliveries(db, offer["id"]) == [("failed", "expired"), ("queued", None)]


async def test_without_fcm_credentials_a_push_whose_visit_ended_is_cancelled(
    start_server: Any, db: asyncpg.Connection
) -> None:
    server = await start_server(**NO_FCM)
    async with Api(server.url, ADMIN_KEY) as api:
        fence = await api.circle(LAT, LON, 100)
        offer = await api.offer(geofence_ids=[fence["id"]])
        dev = await api.device(unique_token())
        (await api.pings(dev, walk(LAT, LON, -400, 0, 5,
                                   datetime.now(UTC) - timedelta(minutes=1)))).ok(202)
        assert await _deliveries(db, offer["id"]) == [("queued", None)]
        # Disabling the fence ends its visits without an exit ping.
        (await api.as_role("marketer", "PATCH", f"/v1/geofences/{fence['id']}",
                           json={"enabled": False})).ok(200)

        async def cancelled() -> bool:
            return await _deliveries(db, offer["id"]) == [("cancelled", "left_geofence")]

        await eventually(cancelled)
