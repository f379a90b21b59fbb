"""Graceful shutdown: stop claiming, let the batch in flight finish, record its outcomes."""

from __future__ import annotations

import asyncpg

from tests.eventually import eventually
from tests.outbox_fill import queue_deliveries


async def test_stop_finishes_and_records_the_batch_in_flight(
    start_server, db: asyncpg.Connection, emulator
) -> None:
    server = await start_server(fcm={"batch_size": 20})
    await queue_deliveries(db, 60, "slow-1500-shutdown-")
    # The first batch is claimed and at the (slow) emulator.
    await eventually(lambda: db.fetchval(
        "SELECT count(*) FROM deliveries WHERE lease_until IS NOT NULL"))
    await server.stop()
    rows = await db.fetch("SELECT status, lease_until FROM deliveries WHERE attempts > 0")
    assert len(rows) == 20, "exactly the batch in flight was attempted, nothing claimed after"
    assert all(r["status"] == "sent" and r["lease_until"] is None for r in rows)
    assert await db.fetchval("SELECT count(*) FROM deliveries WHERE status = 'queued'"
                             " AND attempts = 0") == 40
