"""SPEC section 10 retention, and the background work that runs on every node.

Raw pings, a device's last known position and old idempotency answers go after
`[privacy] ping_retention_days`; retention and the dwell sweeper run in every process,
including those with `[server] run_sender = false`, and retention is safe with several
nodes at once (one round at a time, the others skip theirs).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from geopush.store.database import create_pool
from geopush.store.retention import retention_round
from tests.api_client import Api, walk
from tests.conftest import ADMIN_KEY, unique_token
from tests.eventually import eventually

LAT, LON = 48.8566, 2.3522
RETENTION_LOCK = 0x6765_6F72


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, 2)
    yield pool
    await pool.close()


async def _age_device(db: asyncpg.Connection, device_id: str, days: int) -> None:
    """Make a device look as if its last ping, and that ping, were `days` old."""
    at = datetime.now(UTC) - timedelta(days=days)
    await db.execute("UPDATE devices SET last_ping_ts = $2, last_lat = $3, last_lon = $4"
                     " WHERE device_id = $1", device_id, at, LAT, LON)
    await db.execute("INSERT INTO pings (device_id, ts, lat, lon, accuracy_m)"
                     " VALUES ($1, $2, $3, $4, 5)", device_id, at, LAT, LON)
    await db.execute("INSERT INTO ping_batches (device_id, batch_id, response, created_at)"
                     " VALUES ($1, 'old', '{}', $2)", device_id, at)


async def test_old_positions_pings_and_answers_go_recent_ones_stay(
    api: Api, db, pool, make_config: Callable[..., Any]
) -> None:
    old = await api.device(unique_token())
    recent = await api.device(unique_token())
    (await api.pings(recent, [(LAT, LON, datetime.now(UTC) - timedelta(seconds=30))],
                     batch_id="new")).ok(202)
    await _age_device(db, old.device_id, days=31)
    await db.execute("INSERT INTO rate_windows VALUES ('\\x00', now() - interval '2 hours', 1)")

    done = await retention_round(pool, make_config(privacy={"ping_retention_days": 30}))

    assert (done.pings, done.positions, done.batch_answers, done.rate_windows) == (1, 1, 1, 1)
    rows = {str(r["device_id"]): (r["last_lat"], r["last_ping_ts"] is not None)
            for r in await db.fetch("SELECT device_id, last_lat, last_ping_ts FROM devices")}
    assert rows[old.device_id] == (None, True)  # the place is forgotten, not the time
    assert rows[recent.device_id][0] is not None
    assert await db.fetchval("SELECT count(*) FROM pings") == 1
    assert await db.fetchval("SELECT array_agg(batch_id) FROM ping_batches") == ["new"]
    # The device pings again: no last position to measure a speed from, no error.
    reply = (await api.pings(old, [(LAT + 1, LON, datetime.now(UTC))])).ok(202)
    assert reply["accepted"] == 1


async def test_a_rate_window_still_running_is_kept(
    db, pool, make_config: Callable[..., Any]
) -> None:
    # With day-long registration windows, one started two hours ago still counts.
    await db.execute("INSERT INTO rate_windows VALUES ('\\x01', now() - interval '2 hours', 4),"
                     " ('\\x02', now() - interval '26 hours', 4)")
    done = await retention_round(pool, make_config(limits={"register_window_s": 86400}))
    assert done.rate_windows == 1
    assert await db.fetchval("SELECT hits FROM rate_windows") == 4


async def test_a_node_skips_its_round_while_another_holds_retention(
    api: Api, db, pool, make_config: Callable[..., Any]
) -> None:
    device = await api.device(unique_token())
    await _age_device(db, device.device_id, days=40)
    config = make_config()
    await db.execute("SELECT pg_advisory_lock($1)", RETENTION_LOCK)  # another node's round
    try:
        assert (await retention_round(pool, config)).skipped
        assert await db.fetchval("SELECT count(*) FROM pings") == 1
    finally:
        await db.execute("SELECT pg_advisory_unlock($1)", RETENTION_LOCK)
    done = await retention_round(pool, config)
    assert (done.skipped, done.pings) == (False, 1)


async def test_retention_and_the_dwell_sweeper_run_on_a_node_that_does_not_send(
    start_server: Callable[..., Any], db
) -> None:
    first = await start_server()
    async with Api(first.url, ADMIN_KEY) as api:
        fence = await api.circle(LAT, LON, 150, dwell_s=60)
        await api.offer(geofence_ids=[fence["id"]], trigger="dwell")
        old = await api.device(unique_token())
        inside = await api.device(unique_token())
    await first.stop()
    await _age_device(db, old.device_id, days=31)

    node = await start_server(server={"run_sender": False})
    async with Api(node.url, ADMIN_KEY) as api:
        # 30 s inside by its last ping, short of the 60 s dwell: only the sweeper can fire it.
        start = datetime.now(UTC) - timedelta(minutes=3)
        reply = (await api.pings(inside, walk(LAT, LON, -400, 0, 9, start))).ok(202)
        assert [e["type"] for e in reply["events"]] == ["enter"]

        async def swept() -> bool:
            return await db.fetchval(
                "SELECT count(*) FROM events WHERE type = 'dwell' AND source = 'sweeper'") == 1

        async def retained() -> bool:
            return await db.fetchval("SELECT last_lat IS NULL FROM devices"
                                     " WHERE device_id = $1", old.device_id)

        await eventually(swept, within=10)
        await eventually(retained, within=10)
        assert await db.fetchval("SELECT count(*) FROM pings WHERE device_id = $1",
                                 old.device_id) == 0
