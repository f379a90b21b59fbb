"""What one phone can make geopush store (SPEC section 10): bounded, deduplicated, pruned."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from geopush.store.database import create_pool
from geopush.store.retention import retention_round
from tests.api_client import Api, offset_m
from tests.conftest import unique_token
from tests.eventually import eventually


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, 2)
    yield pool
    await pool.close()


async def _consent(api: Api, token: str, **body: Any) -> Any:
    return await api.call("PUT", "/v1/devices/me/consent", key=token,
                          json={"location": True, "push": True, **body})


async def test_a_consent_names_a_bounded_number_of_categories(api: Api, db) -> None:
    phone = await api.device(unique_token(), location=False, push=False)
    reply = await _consent(api, phone.token, categories=[f"c{i}" for i in range(101)])
    assert reply.status == 400 and reply.body["error"]["details"][0]["field"] == "categories"
    assert await db.fetchval("SELECT count(*) FROM consent_log") == 0
    ok = (await _consent(api, phone.token, categories=["coffee", "tea", "coffee"])).ok(200)
    assert ok["consent"]["categories"] == ["coffee", "tea"]


async def test_an_unchanged_consent_is_not_logged_again(api: Api, db) -> None:
    phone = await api.device(unique_token(), location=False, push=False)
    for _ in range(20):
        (await _consent(api, phone.token, categories=["coffee"])).ok(200)
    (await _consent(api, phone.token, categories=["coffee"], leaderboard=True)).ok(200)
    (await _consent(api, phone.token, categories=["coffee"], leaderboard=True)).ok(200)
    (await _consent(api, phone.token, categories=None)).ok(200)
    assert await db.fetchval("SELECT count(*) FROM consent_log") == 3


async def test_old_consent_changes_are_pruned_but_each_devices_latest_stays(
    api: Api, db, pool, make_config: Callable[..., Any]
) -> None:
    phones = [await api.device(unique_token(), location=False, push=False) for _ in range(2)]
    for phone in phones:
        (await _consent(api, phone.token)).ok(200)
    (await _consent(api, phones[0].token, push=False)).ok(200)
    await db.execute("UPDATE consent_log SET changed_at = now() - interval '500 days'")
    done = await retention_round(pool, make_config(privacy={"consent_log_retention_days": 400}))
    assert done.consent_log == 1
    kept = await db.fetch("SELECT device_id::text, push FROM consent_log ORDER BY id")
    assert [(r["device_id"], r["push"]) for r in kept] == [
        (phones[1].device_id, True), (phones[0].device_id, False)]


async def test_a_phone_cannot_take_fixes_faster_than_time_passes(api: Api, db) -> None:
    """Backdated pings a millisecond apart were all accepted (a way to fill the pings table
    within every request limit); closer than `[geo] min_ping_interval_s` (1 s) they are
    `too_frequent`, and a genuine once-a-second trace is untouched."""
    phone = await api.device(unique_token())
    start = datetime.now(UTC) - timedelta(hours=20)
    burst = [(39.9, 116.4, start + timedelta(milliseconds=i)) for i in range(100)]
    answer = (await api.pings(phone, burst)).ok(202)
    assert answer["accepted"] == 1
    assert {r["reason"] for r in answer["rejected"]} == {"too_frequent"}
    steady = [(39.9, 116.4, start + timedelta(seconds=1 + i)) for i in range(100)]
    assert (await api.pings(phone, steady)).ok(202)["accepted"] == 100
    assert await db.fetchval("SELECT count(*) FROM pings") == 101


async def test_zigzag_across_a_fence_edge_enters_a_bounded_number_of_times(
    api: Api, db
) -> None:
    """A phone crossing a fence's edge back and forth every 2 s of its own time: at most
    `[geo] max_enters_per_hour` (60) enters in any hour of device time, however the hours
    are packed into requests; visits resume as the hour frees places."""
    lat, lon = 39.95, 116.45
    fence = await api.circle(lat, lon, 50)
    phone = await api.device(unique_token())
    start = datetime.now(UTC) - timedelta(hours=23)
    inside, outside = offset_m(lat, lon, 0, 0), offset_m(lat, lon, 120, 0)
    points = [(*(inside if i % 2 == 0 else outside), start + timedelta(seconds=2 * i))
              for i in range(2 * 3600 // 2)]  # two hours of device time
    for chunk in range(0, len(points), 100):
        (await api.pings(phone, points[chunk:chunk + 100])).ok(202)
    rows = await db.fetch(
        "SELECT ts FROM events WHERE geofence_id = $1 AND type = 'enter' ORDER BY ts",
        uuid.UUID(fence["id"]))
    enters = [r["ts"] for r in rows]
    assert len(enters) == 120  # 60 in each hour of device time, not 1,800
    for i in range(len(enters) - 60):
        assert enters[i + 60] - enters[i] >= timedelta(hours=1)


async def test_old_visit_events_are_pruned_into_daily_counts(
    api: Api, db, pool, make_config: Callable[..., Any]
) -> None:
    """Visit events were never pruned; past `[privacy] event_retention_days` they fold into
    per-day counts per geofence and type, and recent ones stay."""
    store = await api.store()
    fence = await api.circle(39.9, 116.4, 50, store_id=store["id"])
    old = (datetime.now(UTC) - timedelta(days=100)).replace(hour=12, minute=0)
    rows = [(uuid.uuid4(), kind, old + timedelta(minutes=i), old + timedelta(minutes=i))
            for i, kind in enumerate(["enter", "dwell", "exit", "enter", "exit"])]
    rows.append((uuid.uuid4(), "enter", datetime.now(UTC), datetime.now(UTC)))
    await db.executemany(
        "INSERT INTO events (event_id, device_id, geofence_id, store_id, type, ts, created_at)"
        " VALUES ($1, gen_random_uuid(), $2, $3, $4, $5, $6)",
        [(eid, uuid.UUID(fence["id"]), uuid.UUID(store["id"]), kind, ts, created)
         for eid, kind, ts, created in rows])
    config = make_config(privacy={"event_retention_days": 90})

    async def a_round() -> Any:
        """One round of ours; skipped while the server's own round (same rule, the default
        90 days) holds the lock, and then that one may have pruned them already."""
        done = await retention_round(pool, config)
        return None if done.skipped else done
    done = await eventually(a_round, what="a retention round not skipped")
    assert done.events in (0, 5)
    assert await db.fetchval("SELECT count(*) FROM events") == 1
    daily = await db.fetch("SELECT day, type, store_id::text, events FROM events_daily"
                           " ORDER BY type")
    assert [(r["day"], r["type"], r["store_id"], r["events"]) for r in daily] == [
        (old.date(), "dwell", store["id"], 1), (old.date(), "enter", store["id"], 2),
        (old.date(), "exit", store["id"], 2)]
