"""SPEC section 15 through the real pipeline: preferences the customer sets, fatigue that
responses teach, and nothing offered on what they just bought."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from tests.api_client import Api, Device, iso, walk
from tests.conftest import ADMIN_KEY, unique_token
from tests.eventually import eventually

LAT, LON = 39.93, 116.40
CSV = {"Content-Type": "text/csv"}


_CLOCKS: dict[str, datetime] = {}


async def _walk_in(api: Api, dev: Device, lat: float = LAT) -> None:
    """Walk into the fence at `lat`; each walk of a device a minute after its last one,
    so its pings stay in order and at a plausible speed between spots a kilometre apart."""
    start = _CLOCKS.get(dev.device_id, datetime.now(UTC) - timedelta(minutes=8))
    _CLOCKS[dev.device_id] = start + timedelta(minutes=1)
    (await api.pings(dev, walk(lat, LON, -400, 0, 5, start))).ok(202)


async def _reasons(db: asyncpg.Connection, offer: dict[str, Any]) -> list[str]:
    rows = await db.fetch("SELECT outcome, reason FROM decisions WHERE offer_id = $1",
                          offer["id"])
    return [r["reason"] or r["outcome"] for r in rows]


async def _prefs(api: Api, dev: Device, body: Any) -> Any:
    return await api.call("PUT", "/v1/devices/me/preferences", key=dev.token, json=body)


async def test_preferences_are_the_customers_on_every_phone_and_logged(
        api: Api, db: asyncpg.Connection) -> None:
    csv = "customer_id,first_name,language,created_at\nC-P,Ana,en,2024-01-01T00:00:00Z\n"
    (await api.as_role("marketer", "POST", "/v1/customers/import", data=csv.encode(),
                       headers=CSV)).ok(200)
    phone = await api.device(unique_token(), customer_id="C-P")
    tablet = await api.device(unique_token(), customer_id="C-P")
    body = {"interests": ["toys", "food", "toys"], "max_per_week": 2,
            "quiet_hours": {"start": "22:00", "end": "08:00"}}
    want = {"interests": ["toys", "food"], "max_per_week": 2,
            "quiet_hours": {"start": "22:00", "end": "08:00"}}
    assert (await _prefs(api, phone, body)).ok(200) == want
    assert (await _prefs(api, phone, body)).ok(200) == want  # apps resend: no new log row
    got = await api.call("GET", "/v1/devices/me/preferences", key=tablet.token)
    assert got.ok(200) == want
    profile = (await api.as_role("marketer", "GET", "/v1/customers/C-P")).ok(200)
    assert profile["preferences"] == want
    assert await db.fetchval("SELECT count(*) FROM preference_log") == 1
    for bad in ({"max_per_week": 22}, {"quiet_hours": {"start": "25:00", "end": "08:00"}},
                {"interests": "toys"}, {"colour": "red"}, {"max_per_week": -1}):
        reply = await _prefs(api, phone, bad)
        assert reply.status == 400, bad
        assert reply.body["error"]["code"] == "invalid"
    assert (await api.call("GET", "/v1/devices/me/preferences", key=phone.token)).ok(200) == want
    assert await db.fetchval("SELECT count(*) FROM preference_log") == 1
    cleared = {"interests": None, "max_per_week": None, "quiet_hours": None}
    assert (await _prefs(api, tablet, {})).ok(200) == cleared
    assert await db.fetchval("SELECT count(*) FROM preference_log") == 2
    (await api.as_role("marketer", "DELETE", "/v1/customers/C-P")).ok(204)
    assert await db.fetchval("SELECT count(*) FROM preference_log") == 0


async def test_interests_weekly_maximum_and_personal_quiet_hours_decide(
        api: Api, db: asyncpg.Connection) -> None:
    far = LAT + 0.01
    a, b = await api.circle(LAT, LON, 150), await api.circle(far, LON, 150)
    food = await api.offer(geofence_ids=[a["id"]], category="food")
    toys = await api.offer(geofence_ids=[b["id"]], category="toys")
    picky = await api.device(unique_token())
    (await _prefs(api, picky, {"interests": ["toys"], "max_per_week": 1})).ok(200)
    await _walk_in(api, picky)
    assert await _reasons(db, food) == ["not_interested"]
    await _walk_in(api, picky, far)
    assert await _reasons(db, toys) == ["queued"]

    capped = await api.device(unique_token())
    (await _prefs(api, capped, {"max_per_week": 1})).ok(200)
    await _walk_in(api, capped)
    await _walk_in(api, capped, far)
    assert sorted(await _reasons(db, toys)) == ["queued", "weekly_preference"]

    sleepy = await api.device(unique_token())  # about noon where it is (daytime_zone)
    (await _prefs(api, sleepy, {"quiet_hours": {"start": "11:00", "end": "13:00"}})).ok(200)
    await _walk_in(api, sleepy)
    assert sorted(await _reasons(db, food)) == ["not_interested", "queued", "quiet_hours"]


async def _sent(db: asyncpg.Connection, device: Device, n: int) -> list[str]:
    async def sent() -> list[str]:
        rows = await db.fetch("SELECT delivery_id FROM deliveries WHERE device_id = $1"
                              " AND status = 'sent' ORDER BY created_at", device.device_id)
        return [str(r["delivery_id"]) for r in rows] if len(rows) >= n else []

    return await eventually(sent, what=f"{n} deliveries sent")


async def test_ignored_category_pauses_until_an_open(start_server: Any, emulator: Any,
                                                     db: asyncpg.Connection) -> None:
    server = await start_server(campaigns={"fatigue_after": 2, "daily_cap": 10})
    async with Api(server.url, ADMIN_KEY) as api:
        spots = [LAT + 0.01 * i for i in range(5)]
        fences = [await api.circle(lat, LON, 150) for lat in spots]
        offers = [await api.offer(geofence_ids=[f["id"]], category="food") for f in fences]
        other = await api.offer(geofence_ids=[fences[2]["id"]], category="toys", priority=-1)
        dev = await api.device(unique_token())
        for i in (0, 1):
            await _walk_in(api, dev, spots[i])
            await _sent(db, dev, i + 1)
        await _walk_in(api, dev, spots[2])
        assert await _reasons(db, offers[2]) == ["fatigue"]
        assert await _reasons(db, other) == ["queued"]  # another category is not tired
        first = (await _sent(db, dev, 3))[0]
        (await api.call("POST", f"/v1/deliveries/{first}/opened", key=dev.token)).ok(204)
        await _walk_in(api, dev, spots[3])
        assert await _reasons(db, offers[3]) == ["queued"]


async def test_no_discount_on_the_appliance_bought_at_full_price_yesterday(
        api: Api, db: asyncpg.Connection) -> None:
    """The seed's own example: yesterday's full-price appliance, today's appliance discount."""
    yesterday = iso(datetime.now(UTC) - timedelta(days=1))
    csv = ("transaction_id,customer_id,store_external_id,ts,amount,category\n"
           f"T-1,C-A,,{yesterday},899.00,appliances\n")
    (await api.as_role("marketer", "POST", "/v1/transactions/import", data=csv.encode(),
                       headers=CSV)).ok(200)
    far = LAT + 0.01
    a, b = await api.circle(LAT, LON, 150), await api.circle(far, LON, 150)
    discount = await api.offer(geofence_ids=[a["id"]], category="appliances")
    filters = await api.offer(geofence_ids=[b["id"]], category="appliances",
                              allow_recent_buyers=True)
    assert filters["allow_recent_buyers"] is True
    buyer = await api.device(unique_token(), customer_id="C-A")
    await _walk_in(api, buyer)
    assert await _reasons(db, discount) == ["recently_bought"]
    await _walk_in(api, buyer, far)
    assert await _reasons(db, filters) == ["queued"]
    stranger = await api.device(unique_token(), customer_id="C-B")
    await _walk_in(api, stranger)
    assert sorted(await _reasons(db, discount)) == ["queued", "recently_bought"]


async def test_device_erasure_takes_its_preferences_and_their_log(
        api: Api, db: asyncpg.Connection) -> None:
    dev = await api.device(unique_token())
    (await _prefs(api, dev, {"interests": ["toys"]})).ok(200)
    assert await db.fetchval("SELECT count(*) FROM preference_log") == 1
    assert (await api.call("DELETE", "/v1/devices/me", key=dev.token)).status == 204
    for table in ("preferences", "preference_log", "category_fatigue"):
        assert await db.fetchval(f"SELECT count(*) FROM {table}") == 0, table
