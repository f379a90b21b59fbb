"""The sender under a crash and beside another sender: every delivery once, or nearly.

Real `geopush serve` processes send through the real SDK to the FCM emulator.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from geopush.emulator.thread import EmulatorThread
from tests.eventually import eventually
from tests.outbox_fill import queue_deliveries

BATCH = 100


def _serve(database_url: str, service_account: Path, endpoint: str, cwd: Path,
           **env: str) -> subprocess.Popen:
    environ = {
        **os.environ,
        "GEOPUSH_DATABASE_URL": database_url,
        "GEOPUSH_SERVER_PORT": "0",
        "GEOPUSH_FCM_CREDENTIALS_FILE": str(service_account),
        "GEOPUSH_FCM_ENDPOINT": endpoint,
        "GEOPUSH_FCM_POLL_INTERVAL_S": "0.05",
        **env,
    }
    return subprocess.Popen([sys.executable, "-m", "geopush", "serve"], cwd=cwd, env=environ,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _counts(db: asyncpg.Connection) -> Counter[str]:
    rows = await db.fetch("SELECT status, count(*) AS n FROM deliveries GROUP BY status")
    return Counter({r["status"]: r["n"] for r in rows})


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_sigkill_mid_send_loses_nothing_and_repeats_at_most_one_batch(
    database_url: str, db: asyncpg.Connection, emulator: EmulatorThread,
    service_account: Path, tmp_path: Path,
) -> None:
    n = 1000
    # Unique per run: the emulator lives for the session, and this test also runs on the
    # Citus cluster in the same worker, so a pid alone would count both runs' pushes.
    prefix = f"slow-400-crash{uuid.uuid4().hex[:12]}-"
    ids = await queue_deliveries(db, n, prefix)
    env = {"GEOPUSH_FCM_BATCH_SIZE": str(BATCH), "GEOPUSH_FCM_MAX_CONCURRENCY": "1",
           "GEOPUSH_FCM_LEASE_S": "5"}
    proc = _serve(database_url, service_account, emulator.base_url, tmp_path, **env)
    try:
        async def some_sent() -> bool:
            return (await _counts(db))["sent"] >= 2 * BATCH

        await eventually(some_sent, 90)
        proc.send_signal(signal.SIGKILL)  # in the middle of a slow batch
        proc.wait(timeout=10)
        before = await _counts(db)
        assert before["queued"] > 0
    finally:
        if proc.poll() is None:
            proc.kill()
    proc = _serve(database_url, service_account, emulator.base_url, tmp_path, **env)
    try:
        async def all_done() -> bool:
            return (await _counts(db))["sent"] == n

        await eventually(all_done, 150, 0.25)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    received = Counter()
    for m in emulator.state.messages(None):
        token = m["message"].get("token", "")
        if token.startswith(prefix):
            received[m["message"]["data"]["delivery_id"]] += 1
    assert set(received) == {str(i) for i in ids}, "every queued delivery reached FCM"
    duplicates = sum(c - 1 for c in received.values())
    print(f"\ncrash test: {n} deliveries, {duplicates} sent twice (bound: one batch of {BATCH})")
    assert duplicates <= BATCH


class EmulatorProcess:
    """`geopush fcm-emulator` in a process of its own: 10,000 messages need its own core."""

    def __init__(self, tmp_path: Path) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.credentials = tmp_path / "emulator-sa.json"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "geopush", "fcm-emulator", "--port", str(self.port),
             "--write-credentials", str(self.credentials)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    async def messages(self) -> list[dict]:
        import aiohttp

        async with aiohttp.ClientSession() as s:
            async def answer() -> Any:
                try:
                    async with s.get(f"{self.base_url}/messages") as r:
                        return await r.json()
                except aiohttp.ClientError:
                    return None  # still starting
            return (await eventually(answer, within=10, every=0.1,
                                     what="the emulator answering"))["messages"]


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_two_senders_10000_deliveries_no_duplicate(
    database_url: str, db: asyncpg.Connection, tmp_path: Path,
) -> None:
    n = 10_000
    prefix = f"pair{uuid.uuid4().hex[:12]}-"
    ids = await queue_deliveries(db, n, prefix)
    emulator = EmulatorProcess(tmp_path)
    try:
        await emulator.messages()  # up and answering, credentials written
        env = {"GEOPUSH_FCM_BATCH_SIZE": "500", "GEOPUSH_FCM_MAX_CONCURRENCY": "2"}
        procs = [_serve(database_url, emulator.credentials, emulator.base_url, tmp_path, **env)
                 for _ in range(2)]
        try:
            async def all_sent() -> bool:
                return (await _counts(db))["sent"] == n

            await eventually(all_sent, 280, 0.5)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=30)
        messages = await emulator.messages()
    finally:
        emulator.proc.terminate()
        emulator.proc.wait(timeout=10)
    received = Counter(
        m["message"]["data"]["delivery_id"] for m in messages
        if m["message"].get("token", "").startswith(prefix)
    )
    assert len(received) == n and set(received) == {str(i) for i in ids}
    assert max(received.values()) == 1
    names = await db.fetchval("SELECT count(DISTINCT fcm_message_name) FROM deliveries")
    assert names == n
