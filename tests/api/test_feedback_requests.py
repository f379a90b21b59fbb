"""Feedback requests (SPEC section 14): an exit after a dwell, decided like any offer,
queued `[feedback] delay_s` after the exit, at most one per `min_days_between`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from geopush.emulator.thread import EmulatorThread
from geopush.timefmt import parse_rfc3339
from tests.api_client import Api, emulator_messages
from tests.conftest import ADMIN_KEY, unique_token
from tests.delivery_scenario import sections
from tests.service_scenario import FR_EN, rated_store, visit, wait_until


async def _feedback_offer(api: Api, store_id: str) -> dict[str, Any]:
    return await api.offer(trigger="feedback", store_ids=[store_id], message=FR_EN,
                           name="How was it", category="feedback", cooldown_s=60,
                           ttl_s=3600)


async def test_exit_after_dwell_asks_for_feedback_once_per_period(
    start_server: Callable[..., Any], db: asyncpg.Connection, emulator: EmulatorThread,
) -> None:
    server = await start_server(**sections(feedback={"delay_s": 0}))
    async with Api(server.url, ADMIN_KEY) as api:
        shop = await rated_store(api)
        offer = await _feedback_offer(api, shop.store["id"])
        phone = await api.device(unique_token("fb"), locale="fr-CA", customer_id="cust-fb-1",
                                 categories=["feedback"])
        now = datetime.now(UTC)
        events = await visit(api, shop, phone, now - timedelta(minutes=20))
        assert [e["type"] for e in events] == ["enter", "dwell", "exit"]

        async def pushed() -> list[dict[str, Any]]:
            return await emulator_messages(emulator.base_url, phone.fcm_token)

        message = (await wait_until(pushed, 10))[0]["message"]
        assert message["notification"]["title"] == "Comment était Rue Cartier ?"
        assert message["data"]["offer_id"] == offer["id"]

        # A second visit a minute later, past the offer's own cooldown: within 14 days.
        await db.execute("UPDATE decisions SET decided_at = decided_at - interval '2 minutes'")
        await visit(api, shop, phone, now - timedelta(minutes=12))
        reasons = [r["reason"] for r in await db.fetch(
            "SELECT reason FROM decisions WHERE offer_id = $1 ORDER BY decided_at",
            offer["id"])]
        assert reasons == [None, "feedback_recent"]
        # Fifteen days later it may ask again.
        await db.execute("UPDATE decisions SET decided_at = decided_at - interval '15 days'")
        await visit(api, shop, phone, now - timedelta(minutes=5))
        assert await db.fetchval(
            "SELECT count(*) FROM decisions WHERE offer_id = $1 AND outcome = 'queued'",
            offer["id"]) == 2


async def test_request_waits_the_delay_and_needs_a_dwell(
    start_server: Callable[..., Any], db: asyncpg.Connection, emulator: EmulatorThread,
) -> None:
    server = await start_server(**sections())  # delay_s 600 by default
    async with Api(server.url, ADMIN_KEY) as api:
        shop = await rated_store(api)
        offer = await _feedback_offer(api, shop.store["id"])
        passer_by = await api.device(unique_token("fb"))
        events = await visit(api, shop, passer_by, stay=False)
        assert [e["type"] for e in events] == ["enter", "exit"]
        assert await db.fetchval("SELECT count(*) FROM decisions WHERE offer_id = $1",
                                 offer["id"]) == 0  # no dwell: not a candidate

        shopper = await api.device(unique_token("fb"))
        events = await visit(api, shop, shopper)
        exit_ts = parse_rfc3339(events[-1]["ts"])
        assert exit_ts is not None
        row = await db.fetchrow(
            "SELECT status, trigger, next_attempt_at, expires_at FROM deliveries"
            " WHERE offer_id = $1", offer["id"])
        assert row["status"] == "queued" and row["trigger"] == "feedback"
        assert row["next_attempt_at"] == exit_ts + timedelta(seconds=600)
        assert row["expires_at"] == exit_ts + timedelta(seconds=600 + 3600)
        assert await emulator_messages(emulator.base_url, shopper.fcm_token) == []
        # Made due (as 600 s passing would): the sender's ordinary claim sends it.
        await db.execute("UPDATE deliveries SET next_attempt_at = now() WHERE offer_id = $1",
                         offer["id"])

        async def pushed() -> list[dict[str, Any]]:
            return await emulator_messages(emulator.base_url, shopper.fcm_token)

        await wait_until(pushed, 10)
