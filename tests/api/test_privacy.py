"""Privacy by default: consent log, erasure, retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from geopush.store.retention import apply_retention
from tests.api_client import Api, walk
from tests.conftest import unique_token

LAT, LON = 52.52, 13.405


async def test_every_consent_change_is_logged(api: Api, db) -> None:
    dev = await api.device(unique_token(), location=False, push=False)
    for location, push in ((True, False), (True, True), (False, True)):
        (await api.call("PUT", "/v1/devices/me/consent", key=dev.token,
                        json={"location": location, "push": push,
                              "categories": ["coffee"]})).ok(200)
    rows = await db.fetch("SELECT location, push, categories FROM consent_log ORDER BY id")
    assert [(r["location"], r["push"]) for r in rows] == [(True, False), (True, True),
                                                          (False, True)]
    bad = await api.call("PUT", "/v1/devices/me/consent", key=dev.token,
                         json={"location": "yes", "push": True})
    assert bad.status == 400


async def test_device_erasure_removes_personal_data_keeps_aggregates(api: Api, db) -> None:
    fence = await api.circle(LAT, LON, 150)
    offer = await api.offer(geofence_ids=[fence["id"]])
    dev = await api.device(unique_token(), customer_id="C-1")
    start = datetime.now(UTC) - timedelta(minutes=2)
    (await api.pings(dev, walk(LAT, LON, -400, 0, 5, start))).ok(202)
    assert await db.fetchval("SELECT count(*) FROM pings") == 5
    assert (await api.call("DELETE", "/v1/devices/me", key=dev.token)).status == 204
    for table in ("pings", "visits", "consent_log", "devices", "ping_batches"):
        assert await db.fetchval(f"SELECT count(*) FROM {table}") == 0, table
    erased = "'00000000-0000-0000-0000-000000000000'"
    assert await db.fetchval(f"SELECT count(*) FROM events WHERE device_id <> {erased}") == 0
    assert await db.fetchval("SELECT count(*) FROM events") == 1  # the aggregate survives
    assert await db.fetchval(
        f"SELECT count(*) FROM decisions WHERE device_id <> {erased} OR customer_id IS NOT NULL"
    ) == 0
    stats = (await api.as_role("marketer", "GET", f"/v1/offers/{offer['id']}/stats")).ok(200)
    assert stats["triggered"] == 1
    # The token no longer works.
    assert (await api.call("GET", "/v1/devices/me", key=dev.token)).status == 401


async def test_customer_erasure(api: Api, db) -> None:
    csv = "customer_id,first_name,language,created_at\nC-9,Ada,en,2024-01-01\n"
    (await api.as_role("marketer", "POST", "/v1/customers/import", data=csv,
                       headers={"Content-Type": "text/csv"})).ok(200)
    dev = await api.device(unique_token(), customer_id="C-9")
    queued = await db.fetchval(
        "INSERT INTO deliveries (delivery_id, device_id, customer_id, offer_id, trigger,"
        " event_ts, status, expires_at, next_attempt_at, title, body) VALUES"
        " (gen_random_uuid(), $1, 'C-9', gen_random_uuid(), 'enter', now(), 'queued',"
        " now() + interval '1 hour', now() + interval '1 hour', 'Hi Ada', 'x')"
        " RETURNING delivery_id", dev.device_id)  # not yet due: the sender leaves it queued
    assert (await api.as_role("marketer", "DELETE", "/v1/customers/C-9")).status == 204
    row = await db.fetchrow("SELECT status, reason, title, customer_id FROM deliveries"
                            " WHERE delivery_id = $1", queued)
    assert tuple(row) == ("cancelled", "erased", None, None)
    assert await db.fetchval("SELECT count(*) FROM customers") == 0
    assert await db.fetchval("SELECT customer_id FROM devices WHERE device_id = $1",
                             dev.device_id) is None
    assert (await api.as_role("marketer", "GET", "/v1/customers/C-9")).status == 404


async def test_pings_older_than_retention_are_deleted(api: Api, db, make_config,
                                                      database_url: str) -> None:
    dev = await api.device(unique_token())
    now = datetime.now(UTC)
    (await api.pings(dev, [(LAT, LON, now - timedelta(seconds=30))])).ok(202)
    await db.execute(
        "INSERT INTO pings (device_id, ts, lat, lon, accuracy_m) VALUES ($1, $2, 1, 1, 5)",
        dev.device_id, now - timedelta(days=31),
    )
    from geopush.store.database import create_pool

    pool = await create_pool(database_url, 2)
    try:
        deleted = await apply_retention(pool, make_config(privacy={"ping_retention_days": 30}))
    finally:
        await pool.close()
    assert deleted == 1
    assert await db.fetchval("SELECT count(*) FROM pings") == 1


async def test_profile_patch_and_new_token_reactivates(api: Api, db) -> None:
    dev = await api.device(unique_token())
    await db.execute("UPDATE devices SET fcm_token_active = false")
    bad = await api.call("PATCH", "/v1/devices/me", key=dev.token, json={"timezone": "Nowhere"})
    assert bad.status == 400
    me = (await api.call("PATCH", "/v1/devices/me", key=dev.token,
                         json={"fcm_token": unique_token(), "locale": "fr-CA"})).ok(200)
    assert me["fcm_token_active"] is True and me["locale"] == "fr-CA"


async def test_customer_known_only_from_devices_is_erased(api: Api, db) -> None:
    # Linked at registration, never imported from the CRM: the id is personal data all
    # the same, and erasing it must not answer 404.
    dev = await api.device(unique_token(), customer_id="C-ONLY-ON-DEVICE")
    assert (await api.as_role("marketer", "DELETE", "/v1/customers/C-ONLY-ON-DEVICE")
            ).status == 204
    assert await db.fetchval("SELECT customer_id FROM devices WHERE device_id = $1",
                             dev.device_id) is None
    assert (await api.as_role("marketer", "DELETE", "/v1/customers/C-NOBODY")).status == 404
