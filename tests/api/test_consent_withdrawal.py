"""SPEC section 10: a consent withdrawal takes effect at once, through the real server.

Location withdrawn: open visits close without events, the dwell sweeper fires nothing for
the device, its queued enter/dwell deliveries are cancelled. Push withdrawn: every queued
delivery is cancelled. A sender that claimed a delivery before the withdrawal does not
send it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from geopush.delivery.fcm import close_firebase_app
from geopush.delivery.outbox import claim
from geopush.delivery.sender import Sender
from geopush.ingest.sweeper import sweep_dwells
from geopush.store.database import create_pool
from tests.api_client import Api, Device, emulator_messages
from tests.conftest import ADMIN_KEY, unique_token
from tests.delivery_scenario import deliveries_of, open_shop, sections, walk_in


async def _consent(api: Api, device: Device, *, location: bool, push: bool) -> None:
    (await api.call("PUT", "/v1/devices/me/consent", key=device.token,
                    json={"location": location, "push": push, "categories": None})).ok(200)


def _by_offer(items: list[dict[str, Any]]) -> dict[str, tuple[str, str | None]]:
    return {d["offer_id"]: (d["status"], d["reason"]) for d in items}


async def test_location_withdrawal_closes_visits_and_the_sweeper_fires_no_dwell(
    start_server: Callable[..., Any], make_config: Callable[..., Any], database_url: str, db
) -> None:
    # The server's own sweeper runs once at start and then not for an hour: this test runs
    # the sweep itself, at a time when both visits are due their dwell.
    config = make_config(**sections(geo={"sweep_interval_s": 3600}))
    server = await start_server(config)
    async with Api(server.url, ADMIN_KEY) as api:
        shop = await open_shop(api, trigger="dwell")  # the circle's dwell_s: 300
        stays = await api.device(unique_token("stays"))
        leaves = await api.device(unique_token("leaves"))
        await walk_in(api, shop, stays)
        await walk_in(api, shop, leaves)
        await _consent(api, leaves, location=False, push=True)

        assert await db.fetchval("SELECT count(*) FROM visits WHERE device_id = $1",
                                 leaves.device_id) == 0
        pool = await create_pool(database_url, 2)
        try:
            fired = await sweep_dwells(pool, config,
                                       datetime.now(UTC) + timedelta(minutes=2))
        finally:
            await pool.close()
        assert fired == 1  # the device that kept its consent
        events = await db.fetch("SELECT device_id::text, type FROM events ORDER BY ts, type")
        assert sorted((r["device_id"] == leaves.device_id, r["type"]) for r in events) == [
            (False, "dwell"), (False, "enter"), (True, "enter"),
        ]  # no exit and no dwell for the device that withdrew
        assert await deliveries_of(api, leaves) == []


async def test_withdrawal_cancels_queued_deliveries(
    start_server: Callable[..., Any], make_config: Callable[..., Any], db
) -> None:
    server = await start_server(make_config(**sections(server={"run_sender": False})))
    async with Api(server.url, ADMIN_KEY) as api:
        shop = await open_shop(api)  # an enter offer
        leave = await api.offer(geofence_ids=[shop.fence["id"]], trigger="exit", ttl_s=3600,
                                name="Goodbye")
        inside = await api.device(unique_token("inside"))
        passed = await api.device(unique_token("passed"))
        await walk_in(api, shop, inside)
        await walk_in(api, shop, passed, then_out=True)
        assert _by_offer(await deliveries_of(api, inside)) == {
            shop.offer["id"]: ("queued", None)}
        assert _by_offer(await deliveries_of(api, passed))[leave["id"]] == ("queued", None)

        # Location withdrawn: the enter offer (sent because of where the phone is) goes.
        await _consent(api, inside, location=False, push=True)
        assert _by_offer(await deliveries_of(api, inside)) == {
            shop.offer["id"]: ("cancelled", "consent_withdrawn")}
        # ...but an exit offer is not about where the phone is now: it stays queued.
        await _consent(api, passed, location=False, push=True)
        assert _by_offer(await deliveries_of(api, passed))[leave["id"]] == ("queued", None)
        # Push withdrawn: every queued delivery goes.
        await _consent(api, passed, location=False, push=False)
        assert _by_offer(await deliveries_of(api, passed)) == {
            shop.offer["id"]: ("cancelled", "left_geofence"),
            leave["id"]: ("cancelled", "consent_withdrawn"),
        }
        assert await db.fetchval(
            "SELECT count(*) FROM deliveries WHERE reason = 'consent_withdrawn'"
            " AND finished_at IS NOT NULL") == 2


async def test_a_sender_that_claimed_before_the_withdrawal_does_not_send(
    start_server: Callable[..., Any], make_config: Callable[..., Any], database_url: str,
    emulator,
) -> None:
    config = make_config(**sections(server={"run_sender": False}))
    server = await start_server(config)
    async with Api(server.url, ADMIN_KEY) as api:
        shop = await open_shop(api)
        device = await api.device(unique_token("claimed"))
        await walk_in(api, shop, device)
        pool = await create_pool(database_url, 2)
        sender = Sender(config.fcm, pool, f"test-{device.device_id}")
        try:
            async with pool.acquire() as conn:
                claimed = await claim(conn, 10, 300)
            assert [str(c.device_id) for c in claimed] == [device.device_id]
            # The withdrawal arrives while the sender holds the row.
            await _consent(api, device, location=True, push=False)
            assert await sender.send_batch(claimed) == 1
        finally:
            await close_firebase_app(sender.app)
            await pool.close()
        [d] = await deliveries_of(api, device)
        assert (d["status"], d["reason"], d["sent_at"]) == (
            "cancelled", "consent_withdrawn", None)
        assert await emulator_messages(emulator.base_url, device.fcm_token) == []
