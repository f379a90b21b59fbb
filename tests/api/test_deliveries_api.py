"""The deliveries API over loopback, with deliveries made by the real pipeline.

Every delivery here comes from a device walking into a store's circle: pings → enter →
decision → outbox → sender → firebase-admin → the FCM emulator. Failures are the
emulator's per-token injection (a token `fail-unregistered-…` is refused every time).
The scenario helpers are in tests/delivery_scenario.py.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from tests.api_client import Api, emulator_messages
from tests.conftest import ADMIN_KEY, unique_token
from tests.delivery_scenario import (
    attempts,
    finished_delivery,
    get_delivery,
    open_shop,
    walk_in,
)
from tests.eventually import eventually

# --- listing ---------------------------------------------------------------------------


async def test_list_filters_and_keyset_pages(gp: Api) -> None:
    coffee = await open_shop(gp)
    tea = await open_shop(gp, north_km=5)
    ok1, ok2 = await gp.device(unique_token("ok")), await gp.device(unique_token("ok"))
    dead = await gp.device(unique_token("fail-unregistered-x"))
    other = await gp.device(unique_token("ok"))
    for device in (ok1, ok2, dead):
        await walk_in(gp, coffee, device)
    await walk_in(gp, tea, other)
    done = {d.device_id: await finished_delivery(gp, d) for d in (ok1, ok2, dead, other)}

    async def ids(query: str) -> list[str]:
        reply = await gp.as_role("ops", "GET", f"/v1/deliveries?{query}")
        return [item["id"] for item in reply.ok(200)["items"]]

    listed = (await gp.as_role("ops", "GET", "/v1/deliveries")).ok(200)
    assert listed["next_cursor"] is None
    everything = [item["id"] for item in listed["items"]]
    assert sorted(everything) == sorted(d["id"] for d in done.values())
    created = [item["created_at"] for item in listed["items"]]
    assert created == sorted(created, reverse=True), "newest first"

    sent = {done[d.device_id]["id"] for d in (ok1, ok2, other)}
    assert set(await ids("status=sent")) == sent
    assert await ids("status=failed&reason=unregistered") == [done[dead.device_id]["id"]]
    assert await ids("status=failed&reason=expired") == []
    assert await ids("status=queued") == []
    assert set(await ids(f"offer_id={coffee.offer['id']}")) == {
        done[d.device_id]["id"] for d in (ok1, ok2, dead)}
    assert await ids(f"offer_id={tea.offer['id']}&status=sent") == [done[other.device_id]["id"]]
    assert await ids(f"device_id={dead.device_id}") == [done[dead.device_id]["id"]]
    assert await ids(f"offer_id={uuid.uuid4()}") == []
    assert set(await ids(f"store_id={tea.store['id']}")) == {done[other.device_id]["id"]}

    # Keyset pages of 3: every delivery exactly once, in the same order as one page.
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = "limit=3" + (f"&cursor={quote(cursor)}" if cursor else "")
        body = (await gp.as_role("ops", "GET", f"/v1/deliveries?{query}")).ok(200)
        seen += [item["id"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 2 and seen == everything

    for bad in ("status=lost", "offer_id=nope", "device_id=1", "cursor=garbage", "limit=0",
                "limit=501", "reason=" + "x" * 101):
        reply = await gp.as_role("ops", "GET", f"/v1/deliveries?{bad}")
        assert reply.status == 400, (bad, reply.body)
        assert reply.body["error"]["code"] == "invalid"


# --- one delivery ----------------------------------------------------------------------


async def test_get_one_shows_sent_with_the_fcm_message_name(gp: Api, emulator) -> None:
    shop = await open_shop(gp, deeplink="shop://offers/coffee")
    device = await gp.device(unique_token("ok"))
    reply = await walk_in(gp, shop, device)
    messages = await eventually(lambda: emulator_messages(emulator.base_url, device.fcm_token))
    assert len(messages) == 1
    delivery_id = messages[0]["message"]["data"]["delivery_id"]

    async def sent() -> dict[str, Any] | None:
        d = await get_delivery(gp, delivery_id)
        return d if d["status"] == "sent" else None

    d = await eventually(sent)
    assert d["id"] == delivery_id
    assert d["fcm_message_name"] == messages[0]["name"]
    assert d["fcm_message_name"].startswith("projects/geopush-test/messages/")
    assert d["offer_id"] == shop.offer["id"] and d["device_id"] == device.device_id
    assert d["store_id"] == shop.store["id"] and d["geofence_id"] == shop.fence["id"]
    assert d["trigger"] == "enter" and d["reason"] is None and d["attempts"] == 1
    event_ts = datetime.fromisoformat(reply["events"][0]["ts"])
    assert datetime.fromisoformat(d["event_ts"]) == event_ts
    assert datetime.fromisoformat(d["expires_at"]) == event_ts + timedelta(seconds=900)
    created, sent_at = (datetime.fromisoformat(d[k]) for k in ("created_at", "sent_at"))
    assert created <= sent_at <= datetime.now(UTC)
    assert d["next_attempt_at"] is None and d["opened_at"] is None and d["redeemed_at"] is None
    assert d["retries"] == 0 and d["last_error"] is None
    # Ops never see the message texts: they may carry the customer's first name.
    assert "title" not in d and "body" not in d

    for missing in (str(uuid.uuid4()), "not-an-id"):
        reply = await gp.as_role("ops", "GET", f"/v1/deliveries/{missing}")
        assert reply.status == 404 and reply.body["error"]["code"] == "not_found"


# --- opened and redeemed ---------------------------------------------------------------


async def test_opened_and_redeemed_are_idempotent_and_device_scoped(gp: Api) -> None:
    shop = await open_shop(gp)
    mine, theirs = await gp.device(unique_token("ok")), await gp.device(unique_token("ok"))
    await walk_in(gp, shop, mine)
    await walk_in(gp, shop, theirs)
    d = await finished_delivery(gp, mine)
    their_d = await finished_delivery(gp, theirs)
    path = f"/v1/deliveries/{d['id']}"

    # Another device's delivery looks exactly like one that does not exist.
    for action in ("opened", "redeemed"):
        reply = await gp.call("POST", f"{path}/{action}", key=theirs.token)
        assert reply.status == 404 and reply.body["error"]["code"] == "not_found"
        for missing in (str(uuid.uuid4()), "nope"):
            reply = await gp.call("POST", f"/v1/deliveries/{missing}/{action}", key=mine.token)
            assert reply.status == 404
        assert (await gp.call("POST", f"{path}/{action}")).status == 401
        assert (await gp.call("POST", f"{path}/{action}", key="gpd_unknown")).status == 401
        # An API key is not a device token, whatever its role.
        assert (await gp.as_role("ops", "POST", f"{path}/{action}")).status == 401
    assert (await get_delivery(gp, d["id"]))["opened_at"] is None

    reply = await gp.call("POST", f"{path}/opened", key=mine.token)
    assert reply.status == 204 and reply.body is None
    first = (await get_delivery(gp, d["id"]))["opened_at"]
    assert first is not None
    await asyncio.sleep(0.01)  # time moves on: a second stamp would differ from the first
    assert (await gp.call("POST", f"{path}/opened", key=mine.token)).status == 204
    again = await get_delivery(gp, d["id"])
    assert again["opened_at"] == first, "the first open is kept"
    assert again["redeemed_at"] is None, "opening is not redeeming"

    assert (await gp.call("POST", f"{path}/redeemed", key=mine.token)).status == 204
    redeemed = (await get_delivery(gp, d["id"]))["redeemed_at"]
    assert redeemed is not None
    await asyncio.sleep(0.01)
    assert (await gp.call("POST", f"{path}/redeemed", key=mine.token)).status == 204
    assert (await get_delivery(gp, d["id"]))["redeemed_at"] == redeemed
    # The other device's delivery was never touched.
    untouched = await get_delivery(gp, their_d["id"])
    assert untouched["opened_at"] is None and untouched["redeemed_at"] is None


async def test_a_delivery_that_was_not_sent_cannot_be_opened_or_redeemed(gp: Api) -> None:
    """A lying app must not inflate results with the id of a push that never went out."""
    shop = await open_shop(gp)
    dead = await gp.device(unique_token("fail-unregistered-x"))
    await walk_in(gp, shop, dead)
    failed = await finished_delivery(gp, dead)
    assert failed["status"] == "failed"
    for action in ("opened", "redeemed"):
        reply = await gp.call("POST", f"/v1/deliveries/{failed['id']}/{action}", key=dead.token)
        assert reply.status == 409 and reply.body["error"]["code"] == "not_sent"
    after = await get_delivery(gp, failed["id"])
    assert after["opened_at"] is None and after["redeemed_at"] is None
    result = (await gp.as_role("ops", "GET", f"/v1/offers/{shop.offer['id']}/stats")).ok(200)
    assert (result["sent"], result["opened"], result["redeemed"]) == (0, 0, 0)


# --- retry -----------------------------------------------------------------------------


async def test_retry_after_the_app_sends_a_new_token(gp: Api, emulator, db) -> None:
    shop = await open_shop(gp)
    dead_token = unique_token("fail-unregistered-x")
    device = await gp.device(dead_token)
    await walk_in(gp, shop, device)
    failed = await finished_delivery(gp, device)
    assert (failed["status"], failed["reason"]) == ("failed", "unregistered")
    assert len(attempts(emulator, dead_token)) == 1
    retry_path = f"/v1/deliveries/{failed['id']}/retry"

    # The token FCM refused is off: a retry now would only fail again.
    reply = await gp.as_role("ops", "POST", retry_path)
    assert reply.status == 409 and reply.body["error"]["code"] == "no_active_token"

    new_token = unique_token("ok")
    patched = (await gp.call("PATCH", "/v1/devices/me", key=device.token,
                             json={"fcm_token": new_token})).ok(200)
    assert patched["fcm_token_active"] is True

    before = datetime.now(UTC)
    queued = (await gp.as_role("ops", "POST", retry_path)).ok(200)
    # The answer is the row as committed: queued, due now, no attempts yet, no reason.
    assert (queued["id"], queued["status"], queued["reason"]) == (failed["id"], "queued", None)
    assert queued["attempts"] == 0 and queued["next_attempt_at"] is not None
    assert queued["retries"] == 1 and queued["retried_at"] is not None
    # A fresh ttl window from now (the offer's 900 s), not the original event's.
    expires = datetime.fromisoformat(queued["expires_at"])
    assert before + timedelta(seconds=899) <= expires <= datetime.now(UTC) + timedelta(seconds=901)
    assert expires > datetime.fromisoformat(failed["expires_at"])

    messages = await eventually(lambda: emulator_messages(emulator.base_url, new_token))
    assert messages[0]["message"]["data"]["delivery_id"] == failed["id"]
    sent = await finished_delivery(gp, device, statuses=("sent",))
    assert sent["fcm_message_name"] == messages[0]["name"]
    assert sent["attempts"] == 1, "attempts restart at a retry"
    assert sent["reason"] is None and sent["retries"] == 1
    assert len(attempts(emulator, dead_token)) == 1, "the dead token is never tried again"
    assert await db.fetchval("SELECT retried_by FROM deliveries WHERE delivery_id = $1",
                             uuid.UUID(failed["id"])) is not None

    # Sent is final; so is cancelled; an unknown id is 404.
    reply = await gp.as_role("ops", "POST", retry_path)
    assert reply.status == 409 and reply.body["error"]["code"] == "already_sent"
    assert (await gp.as_role("ops", "POST", f"/v1/deliveries/{uuid.uuid4()}/retry")).status == 404
    assert len(await emulator_messages(emulator.base_url, new_token)) == 1


async def test_retry_refuses_what_must_not_be_sent(gp: Api, emulator) -> None:
    """Cancelled stays cancelled; consent withdrawn or the offer paused since: 409."""
    shop = await open_shop(gp)
    leaver = await gp.device(unique_token("ok"))
    await walk_in(gp, shop, leaver, then_out=True)  # in and out in one batch
    cancelled = await finished_delivery(gp, leaver)
    assert (cancelled["status"], cancelled["reason"]) == ("cancelled", "left_geofence")
    reply = await gp.as_role("ops", "POST", f"/v1/deliveries/{cancelled['id']}/retry")
    assert reply.status == 409 and reply.body["error"]["code"] == "cancelled"

    device = await gp.device(unique_token("fail-third_party_auth_error-x"))
    await walk_in(gp, shop, device)
    failed = await finished_delivery(gp, device)
    assert failed["reason"] == "third_party_auth_error"
    path = f"/v1/deliveries/{failed['id']}/retry"

    (await gp.call("PUT", "/v1/devices/me/consent", key=device.token,
                   json={"location": True, "push": False, "categories": None})).ok(200)
    reply = await gp.as_role("ops", "POST", path)
    assert reply.status == 409 and reply.body["error"]["code"] == "no_push_consent"
    (await gp.call("PUT", "/v1/devices/me/consent", key=device.token,
                   json={"location": True, "push": True, "categories": None})).ok(200)

    (await gp.as_role("marketer", "PATCH", f"/v1/offers/{shop.offer['id']}",
                      json={"status": "paused"})).ok(200)
    reply = await gp.as_role("ops", "POST", path)
    assert reply.status == 409 and reply.body["error"]["code"] == "offer_paused"
    assert (await get_delivery(gp, failed["id"]))["status"] == "failed"

    (await gp.as_role("marketer", "PATCH", f"/v1/offers/{shop.offer['id']}",
                      json={"status": "active"})).ok(200)
    # Allowed now; the token still fails (THIRD_PARTY_AUTH_ERROR keeps it), so it fails
    # again: one more send (attempt) of the sender, and retried once.
    (await gp.as_role("ops", "POST", path)).ok(200)

    async def failed_again() -> dict[str, Any] | None:
        d = await get_delivery(gp, failed["id"])
        return d if d["status"] == "failed" and d["retries"] == 1 else None

    again = await eventually(failed_again)
    assert again["reason"] == "third_party_auth_error" and again["attempts"] == 1
    assert len(attempts(emulator, device.fcm_token)) == 2


# --- roles -----------------------------------------------------------------------------


async def test_roles(gp: Api) -> None:
    shop = await open_shop(gp)
    device = await gp.device(unique_token("fail-unregistered-x"))
    await walk_in(gp, shop, device)
    d = await finished_delivery(gp, device)
    reads = ["/v1/deliveries", f"/v1/deliveries/{d['id']}"]
    for path in reads:
        assert (await gp.as_role("ops", "GET", path)).status == 200
        assert (await gp.call("GET", path, key=ADMIN_KEY)).status == 200
        for role in ("marketer", "app"):
            reply = await gp.as_role(role, "GET", path)
            assert reply.status == 403 and reply.body["error"]["code"] == "forbidden", role
        reply = await gp.call("GET", path)
        assert reply.status == 401 and reply.headers["WWW-Authenticate"] == "Bearer"
        assert (await gp.call("GET", path, key="gpk_wrong")).status == 401
        assert (await gp.call("GET", path, key=device.token)).status == 401

    retry = f"/v1/deliveries/{d['id']}/retry"
    for role in ("marketer", "app"):
        assert (await gp.as_role(role, "POST", retry)).status == 403
    assert (await gp.call("POST", retry)).status == 401
    assert (await gp.call("POST", retry, key=device.token)).status == 401
    assert (await get_delivery(gp, d["id"]))["retries"] == 0, "refused retries change nothing"
