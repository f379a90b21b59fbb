"""The core loop over loopback: a ping walking into a store's circle becomes one push."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.api_client import Api, emulator_messages, walk
from tests.conftest import unique_token
from tests.delivery_scenario import sender_idle
from tests.eventually import eventually

STORE_LAT, STORE_LON = 39.9087, 116.3975


async def test_walk_into_circle_sends_one_french_push(api: Api, emulator, db) -> None:
    store = await api.store(name="Wangfujing", external_id="BJ-1",
                            location={"lat": STORE_LAT, "lon": STORE_LON})
    fence = await api.circle(STORE_LAT, STORE_LON, 150, store_id=store["id"], name="door")
    assert abs(fence["area_m2"] - 3.14159 * 150**2) / (3.14159 * 150**2) < 0.01
    await api.offer(geofence_ids=[fence["id"]], trigger="enter", cooldown_s=86400, ttl_s=900)

    fr = await api.device(unique_token("fr"), locale="fr-CA")
    silent = await api.device(unique_token("nopush"), locale="en", push=False)

    start = datetime.now(UTC) - timedelta(minutes=5)
    path = walk(STORE_LAT, STORE_LON, -400, 0, 9, start)  # 400 m south to the centre
    reply = (await api.pings(fr, path)).ok(202)
    assert reply["accepted"] == 9 and reply["rejected"] == []
    assert [e["type"] for e in reply["events"]] == ["enter"]
    assert reply["events"][0]["geofence_id"] == fence["id"]

    messages = await eventually(lambda: emulator_messages(emulator.base_url, fr.fcm_token))
    assert len(messages) == 1
    msg = messages[0]["message"]
    assert msg["token"] == fr.fcm_token
    assert msg["notification"]["title"] == "L'heure du café"
    # No customer, so no first name: the placeholder renders as nothing, never as itself.
    assert msg["notification"]["body"] == "Bienvenue chez Wangfujing, !"
    assert msg["data"]["delivery_id"]
    assert msg["data"]["offer_id"] and msg["data"]["geofence_id"] == fence["id"]

    # More pings inside send nothing more.
    later = start + timedelta(minutes=2)
    inside = walk(STORE_LAT, STORE_LON, 0, 50, 5, later)
    reply = (await api.pings(fr, inside)).ok(202)
    assert reply["events"] == []

    # A device without push consent walks the same way and gets nothing.
    reply = (await api.pings(silent, path)).ok(202)
    assert [e["type"] for e in reply["events"]] == ["enter"]

    await sender_idle(db)
    assert len(await emulator_messages(emulator.base_url, fr.fcm_token)) == 1
    assert await emulator_messages(emulator.base_url, silent.fcm_token) == []
    delivery = msg["data"]["delivery_id"]
    record = (await api.as_role("ops", "GET", f"/v1/deliveries/{delivery}")).ok(200)
    assert record["status"] == "sent" and record["fcm_message_name"] == messages[0]["name"]
