#!/usr/bin/env python3
"""Delivery throughput: queued deliveries → `geopush serve` senders → firebase-admin SDK →
`geopush fcm-emulator` (its own process), with one and with two sender processes; and, as
the peer in the same run, the same messages posted by a bare aiohttp client (no SDK), which
shows how much of the cost is the SDK's HTTP stack.

    .venv/bin/python scripts/bench_sender.py [--deliveries 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geopush.store.database import _init_connection, embedded_server, ensure_database
from geopush.store.migrations import migrate
from tests.outbox_fill import queue_deliveries


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_http(url: str) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(300):
            try:
                async with s.get(url):
                    return
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} not answering")


async def senders(url: str, n: int, procs: int, emu: str, creds: Path, cwd: Path) -> float:
    conn = await asyncpg.connect(url)
    await _init_connection(conn)
    await conn.execute("TRUNCATE deliveries, devices")
    await queue_deliveries(conn, n, f"bench{procs}-")
    env = {**os.environ, "GEOPUSH_DATABASE_URL": url, "GEOPUSH_SERVER_PORT": "0",
           "GEOPUSH_FCM_CREDENTIALS_FILE": str(creds), "GEOPUSH_FCM_ENDPOINT": emu,
           "GEOPUSH_FCM_POLL_INTERVAL_S": "0.05"}
    t = time.perf_counter()
    ps = [subprocess.Popen([sys.executable, "-m", "geopush", "serve"], env=env, cwd=cwd,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
          for _ in range(procs)]
    try:
        while await conn.fetchval("SELECT count(*) FROM deliveries WHERE status = 'sent'") < n:
            await asyncio.sleep(0.2)
        return n / (time.perf_counter() - t)
    finally:
        for p in ps:
            p.terminate()
        for p in ps:
            p.wait(timeout=30)
        await conn.close()


async def bare_client(n: int, emu: str, creds: Path) -> float:
    """The peer: the same FCM v1 requests from aiohttp, 100 at a time, one OAuth token."""
    import json

    from google.oauth2 import service_account

    info = json.loads(creds.read_text())
    cred = service_account.Credentials.from_service_account_info(
        info, scopes=["https://www.googleapis.com/auth/firebase.messaging"])
    import google.auth.transport.requests

    cred.refresh(google.auth.transport.requests.Request())
    url = f"{emu}/v1/projects/{info['project_id']}/messages:send"
    headers = {"Authorization": f"Bearer {cred.token}"}
    now = datetime.now(UTC).isoformat()
    t = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as s:
        async def one(i: int) -> None:
            body = {"message": {"token": f"bare-{i}", "notification": {"title": "Hello",
                    "body": "World"}, "data": {"delivery_id": str(i), "at": now},
                    "android": {"ttl": "600s", "collapse_key": "o"}}}
            async with s.post(url, json=body, headers=headers) as r:
                await r.read()
        for k in range(0, n, 100):
            await asyncio.gather(*[one(i) for i in range(k, min(n, k + 100))])
    return n / (time.perf_counter() - t)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--deliveries", type=int, default=5000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gpsend"))
    server = embedded_server(tmp)
    url = ensure_database(server, "bench")
    conn = await asyncpg.connect(url)
    await migrate(conn)
    await conn.close()
    port = free_port()
    creds = tmp / "sa.json"
    emu_proc = subprocess.Popen(
        [sys.executable, "-m", "geopush", "fcm-emulator", "--port", str(port),
         "--write-credentials", str(creds)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    emu = f"http://127.0.0.1:{port}"
    try:
        await wait_http(f"{emu}/healthz")
        n = args.deliveries
        print(f"{datetime.now(UTC):%Y-%m-%d} {n} deliveries, emulator in its own process,"
              " 2 cores shared by everything")
        one = await senders(url, n, 1, emu, creds, tmp)
        print(f"1 sender process:  {one:,.0f} messages/s (SDK, chunks of 100)")
        two = await senders(url, n, 2, emu, creds, tmp)
        print(f"2 sender processes: {two:,.0f} messages/s ({two / one:.2f}x one)")
        bare = await bare_client(n, emu, creds)
        print(f"peer, bare aiohttp client, no database: {bare:,.0f} messages/s"
              f" ({bare / one:.1f}x one geopush sender)")
    finally:
        emu_proc.terminate()
        emu_proc.wait(timeout=10)
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
