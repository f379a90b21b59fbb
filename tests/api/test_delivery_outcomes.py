"""SPEC section 6, one test per row of the FCM outcome table, through the real sender.

Each delivery is made by the real pipeline (a device walking into a store's circle) and
sent by the server's own sender thread with firebase-admin to the FCM emulator, whose
per-token failure injection plays FCM's answers. Each test checks the delivery's status
and reason, what became of the device's token, and the attempts the emulator saw.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.api_client import Api, emulator_messages, walk
from tests.conftest import ADMIN_KEY, unique_token
from tests.delivery_scenario import (
    FAST,
    attempts,
    device_state,
    finished_delivery,
    open_shop,
    sections,
    walk_in,
)
from tests.eventually import eventually


def _at(attempt: Any) -> datetime:
    return datetime.fromisoformat(attempt.at)


async def test_success_is_sent_with_the_message_name(gp: Api, emulator) -> None:
    shop = await open_shop(gp)
    device = await gp.device(unique_token("ok"))
    await walk_in(gp, shop, device)
    d = await finished_delivery(gp, device)
    assert (d["status"], d["reason"], d["attempts"]) == ("sent", None, 1)
    [message] = await emulator_messages(emulator.base_url, device.fcm_token)
    assert d["fcm_message_name"] == message["name"]
    assert [(a.status, a.error) for a in attempts(emulator, device.fcm_token)] == [(200, None)]
    assert (await device_state(gp, device))["fcm_token_active"] is True


@pytest.mark.parametrize("code", ["unregistered", "invalid_argument"])
async def test_dead_token_fails_and_is_deactivated_until_a_new_one(
    gp: Api, emulator, db, code: str
) -> None:
    shop = await open_shop(gp)
    device = await gp.device(unique_token(f"fail-{code}-x"))
    await walk_in(gp, shop, device)
    d = await finished_delivery(gp, device)
    assert (d["status"], d["reason"], d["attempts"]) == ("failed", code, 1)
    assert d["fcm_message_name"] is None and d["sent_at"] is None
    # The SDK's exception, for ops; FCM's messages never name the token.
    assert d["last_error"] and device.fcm_token not in d["last_error"]
    assert [a.error for a in attempts(emulator, device.fcm_token)] == [code.upper()]
    assert (await device_state(gp, device))["fcm_token_active"] is False
    # Deactivated, not deleted: the token is kept, so FCM's refusal is on record.
    row = await db.fetchrow("SELECT fcm_token, fcm_token_active FROM devices"
                            " WHERE device_id = $1::uuid", device.device_id)
    assert (row["fcm_token"], row["fcm_token_active"]) == (device.fcm_token, False)
    patched = (await gp.call("PATCH", "/v1/devices/me", key=device.token,
                             json={"fcm_token": unique_token("fresh")})).ok(200)
    assert patched["fcm_token_active"] is True


async def test_sender_id_mismatch_fails_and_deactivates(gp: Api, emulator) -> None:
    shop = await open_shop(gp)
    device = await gp.device(unique_token("fail-sender_id_mismatch-x"))
    await walk_in(gp, shop, device)
    d = await finished_delivery(gp, device)
    assert (d["status"], d["reason"], d["attempts"]) == ("failed", "sender_id_mismatch", 1)
    assert [a.status for a in attempts(emulator, device.fcm_token)] == [403]
    assert (await device_state(gp, device))["fcm_token_active"] is False


async def test_third_party_auth_error_fails_and_keeps_the_token(
    gp: Api, emulator
) -> None:
    shop = await open_shop(gp)
    device = await gp.device(unique_token("fail-third_party_auth_error-x"))
    await walk_in(gp, shop, device)
    d = await finished_delivery(gp, device)
    assert (d["status"], d["reason"], d["attempts"]) == ("failed", "third_party_auth_error", 1)
    # One request: an HTTP 401, which no OAuth token refresh can fix, so none is resent.
    assert [a.status for a in attempts(emulator, device.fcm_token)] == [401]
    # The APNs/web-push credentials are the project's problem, not this token's.
    assert (await device_state(gp, device))["fcm_token_active"] is True


@pytest.mark.parametrize(("prefix", "tries", "seen"), [
    ("fail-unavailable-2-", 3, [503, 503, 200]),
    ("fail-internal-1-", 2, [500, 200]),
    ("drop-1-", 2, [None, 200]),  # a network error: the connection closed unanswered
])
async def test_transient_errors_are_retried_until_sent(
    gp: Api, emulator, prefix: str, tries: int, seen: list[int | None]
) -> None:
    shop = await open_shop(gp)
    device = await gp.device(unique_token(prefix + "x"))
    await walk_in(gp, shop, device)
    d = await finished_delivery(gp, device)
    assert (d["status"], d["reason"], d["attempts"]) == ("sent", None, tries)
    assert [a.status for a in attempts(emulator, device.fcm_token)] == seen
    assert len(await emulator_messages(emulator.base_url, device.fcm_token)) == 1
    assert (await device_state(gp, device))["fcm_token_active"] is True


async def test_internal_every_time_exhausts_the_retries(gp: Api, emulator) -> None:
    shop = await open_shop(gp)
    device = await gp.device(unique_token("fail-internal-x"))
    await walk_in(gp, shop, device)
    d = await finished_delivery(gp, device)
    assert (d["status"], d["reason"], d["attempts"]) == ("failed", "retries_exhausted", 5)
    assert d["last_error"].startswith("InternalError")
    assert [a.status for a in attempts(emulator, device.fcm_token)] == [500] * 5
    assert (await device_state(gp, device))["fcm_token_active"] is True


async def test_quota_exceeded_pauses_the_whole_sender(gp: Api, emulator) -> None:
    """429 with Retry-After: 2 → that message waits 2 s, and so does everyone else's."""
    shop = await open_shop(gp)
    limited = await gp.device(unique_token("fail-quota_exceeded-1-ra2-x"))
    bystander = await gp.device(unique_token("ok"))
    await walk_in(gp, shop, limited)

    async def refused() -> bool:
        return any(a.status == 429 for a in attempts(emulator, limited.fcm_token))

    await eventually(refused)
    await walk_in(gp, shop, bystander)  # queued while the sender is paused
    d = await finished_delivery(gp, limited, within=6)
    other = await finished_delivery(gp, bystander, within=6)
    assert (d["status"], d["attempts"], other["status"]) == ("sent", 2, "sent")

    first, second = attempts(emulator, limited.fcm_token)
    assert (first.status, second.status) == (429, 200)
    assert (_at(second) - _at(first)).total_seconds() >= 2.0
    [seen] = attempts(emulator, bystander.fcm_token)
    # The emulator stamps its answer before the sender reads it, so this is a lower bound.
    assert (_at(seen) - _at(first)).total_seconds() >= 2.0


async def test_quota_exceeded_pauses_every_sender_process(
    start_server: Callable[..., Any], emulator
) -> None:
    """Two servers sending from one outbox: after either gets the 429, neither sends."""
    first = await start_server(**FAST)
    await start_server(**FAST)
    async with Api(first.url, ADMIN_KEY) as api:
        shop = await open_shop(api)
        limited = await api.device(unique_token("fail-quota_exceeded-1-ra2-x"))
        await walk_in(api, shop, limited)

        async def refused() -> bool:
            return any(a.status == 429 for a in attempts(emulator, limited.fcm_token))

        await eventually(refused)
        # Queued during the pause: the sender that got the 429 waits, and so must the other.
        bystanders = [await api.device(unique_token("ok")) for _ in range(4)]
        for device in bystanders:
            await walk_in(api, shop, device)
        first_answer = attempts(emulator, limited.fcm_token)[0]
        for device in bystanders:
            assert (await finished_delivery(api, device, within=8))["status"] == "sent"
            [seen] = attempts(emulator, device.fcm_token)
            assert (_at(seen) - _at(first_answer)).total_seconds() >= 2.0


async def test_ttl_passed_before_an_attempt_is_expired(
    start_server: Callable[..., Any], emulator
) -> None:
    """Never sent: a sender that was down past the ttl, and a retry due after it."""
    ingest = await start_server(**sections(server={"run_sender": False}))
    async with Api(ingest.url, ADMIN_KEY) as api:
        shop = await open_shop(api, ttl_s=2)
        late = await api.device(unique_token("ok"))
        now = datetime.now(UTC)
        # One ping at the centre half a second ago: enter, queued with 1.5 s to live.
        (await api.pings(late, [(shop.lat, shop.lon, now - timedelta(seconds=0.5))])).ok(202)
        [queued] = (await api.as_role("ops", "GET", "/v1/deliveries")).ok(200)["items"]
        assert queued["status"] == "queued"
        # The ttl running out while no sender is there is the point: wait it out.
        await asyncio.sleep(max(0.0, (datetime.fromisoformat(queued["expires_at"])
                                      - datetime.now(UTC)).total_seconds()) + 0.1)

        await start_server(**FAST)  # a sender comes back, too late for it
        d = await finished_delivery(api, late)
        assert (d["status"], d["reason"], d["attempts"]) == ("failed", "expired", 0)
        assert attempts(emulator, late.fcm_token) == []

        # Tried once, told to come back in 10 s; the ttl (2 s) runs out before that.
        slow = await api.device(unique_token("fail-unavailable-1-ra10-x"))
        (await api.pings(slow, [(shop.lat, shop.lon, datetime.now(UTC))])).ok(202)
        d = await finished_delivery(api, slow, within=5)
        assert (d["status"], d["reason"], d["attempts"]) == ("failed", "expired", 1)
        assert [a.status for a in attempts(emulator, slow.fcm_token)] == [503]
        assert await emulator_messages(emulator.base_url, slow.fcm_token) == []
        assert (await device_state(api, late))["fcm_token_active"] is True


async def test_exit_before_send_cancels(start_server: Callable[..., Any], emulator) -> None:
    """The visit ended before the enter offer went out: cancelled, never sent."""
    ingest = await start_server(**sections(server={"run_sender": False}))
    async with Api(ingest.url, ADMIN_KEY) as api:
        shop = await open_shop(api)
        one_batch = await api.device(unique_token("ok"))
        two_batches = await api.device(unique_token("ok"))
        stays = await api.device(unique_token("ok"))
        start = datetime.now(UTC) - timedelta(minutes=10)
        reply = await walk_in(api, shop, one_batch, start, then_out=True)
        assert [e["type"] for e in reply["events"]] == ["enter", "exit"]
        await walk_in(api, shop, two_batches, start)
        assert (await finished_delivery(api, two_batches, statuses=("queued",)))
        out = walk(shop.lat, shop.lon, 50, 400, 8, start + timedelta(seconds=90))
        reply = (await api.pings(two_batches, out)).ok(202)
        assert [e["type"] for e in reply["events"]] == ["exit"]
        await walk_in(api, shop, stays, start)

        await start_server(**FAST)  # the sender starts: only the visit still open is sent
        sent = await finished_delivery(api, stays)
        assert sent["status"] == "sent"
        for device in (one_batch, two_batches):
            d = await finished_delivery(api, device)
            assert (d["status"], d["reason"], d["attempts"]) == ("cancelled", "left_geofence", 0)
            assert d["sent_at"] is None and d["fcm_message_name"] is None
            assert attempts(emulator, device.fcm_token) == []
            assert (await device_state(api, device))["fcm_token_active"] is True
