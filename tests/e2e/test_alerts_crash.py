"""The store alerts sender under SIGKILL, as the FCM sender is tested (test_sender_crash.py):
a killed sender loses no alert, and repeats at most the batch it had in flight."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from uuid import UUID

import asyncpg
import pytest
from aiohttp import web

from geopush.alerts.outbox import enqueue_alert
from tests.alert_receiver import SIGNING_SECRET, AlertReceiver
from tests.eventually import eventually

BATCH = 20


class SlowReceiver(AlertReceiver):
    """A store's system that takes 20 ms per alert, so a kill lands mid-batch."""

    async def _handle(self, request: web.Request) -> web.Response:
        await asyncio.sleep(0.02)
        return await super()._handle(request)


def _serve(database_url: str, cwd: Path) -> subprocess.Popen:
    environ = {
        **os.environ,
        "GEOPUSH_DATABASE_URL": database_url,
        "GEOPUSH_SERVER_PORT": "0",
        "GEOPUSH_ALERTS_SIGNING_SECRET": SIGNING_SECRET,
        "GEOPUSH_ALERTS_ALLOW_PRIVATE_ADDRESSES": "true",
        "GEOPUSH_ALERTS_BATCH_SIZE": str(BATCH),
        "GEOPUSH_ALERTS_MAX_CONCURRENCY": "4",
        "GEOPUSH_ALERTS_LEASE_S": "3",
        "GEOPUSH_ALERTS_POLL_INTERVAL_S": "0.05",
    }
    return subprocess.Popen([sys.executable, "-m", "geopush", "serve"], cwd=cwd, env=environ,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _sent(db: asyncpg.Connection) -> int:
    return await db.fetchval("SELECT count(*) FROM store_alerts WHERE status = 'sent'")


async def _wait(check, within_s: float) -> None:  # type: ignore[no-untyped-def]
    await eventually(check, within_s, every=0.1)


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_sigkill_mid_batch_loses_no_alert_and_repeats_at_most_one_batch(
    database_url: str, db: asyncpg.Connection, tmp_path: Path,
) -> None:
    receiver = SlowReceiver()
    url = await receiver.start()
    n = 200
    try:
        store_id = await db.fetchval(
            "INSERT INTO stores (store_id, external_id, name, timezone, lat, lon, alert_url)"
            " VALUES (gen_random_uuid(), 'crash', 'Crash', 'UTC', 0, 0, $1) RETURNING store_id",
            url)
        ids: list[UUID] = []
        async with db.transaction():
            for i in range(n):
                alert_id = await enqueue_alert(db, store_id, "service_recovery", {"n": i})
                assert alert_id is not None
                ids.append(alert_id)
        proc = _serve(database_url, tmp_path)
        try:
            async def some() -> bool:
                return len(receiver.alerts) >= 3 * BATCH

            await _wait(some, 60)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            assert await db.fetchval(
                "SELECT count(*) FROM store_alerts WHERE status = 'queued'") > 0
        finally:
            if proc.poll() is None:
                proc.kill()
        proc = _serve(database_url, tmp_path)
        try:
            async def all_sent() -> bool:
                return await _sent(db) == n

            await _wait(all_sent, 90)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    finally:
        await receiver.stop()
    assert set(receiver.alerts) == {str(i) for i in ids}, "every alert reached the store"
    assert receiver.bad_signatures == 0
    duplicates = sum(c - 1 for c in receiver.deliveries.values())
    print(f"\nalerts crash test: {n} alerts, {duplicates} received twice (bound: {BATCH})")
    assert duplicates <= BATCH
