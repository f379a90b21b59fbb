#!/usr/bin/env python3
"""Delivery: queued deliveries → `geopush serve` senders → `geopush fcm-emulator` (its own
process), through the SDK's own transport (`[fcm] transport = "sdk"`) and through geopush's
aiohttp transport (the SDK still building, authorising and classifying each message), with
one and two sender processes; as the peer in the same run, the same requests posted by a
bare aiohttp client (no SDK, no database). Then the latency from a delivery being queued to
FCM accepting it (`sent_at - created_at`), unloaded (one at a time) and at load (queued at
a steady rate).

    .venv/bin/python scripts/bench_sender.py [--deliveries 5000] [--profile SECONDS]
                                             [--no-write]
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
from scripts.bench_report import command, machine, table, write_section
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


def start_senders(url: str, procs: int, emu: str, creds: Path, cwd: Path,
                  transport: str) -> list[subprocess.Popen]:
    env = {**os.environ, "GEOPUSH_DATABASE_URL": url, "GEOPUSH_SERVER_PORT": "0",
           "GEOPUSH_FCM_CREDENTIALS_FILE": str(creds), "GEOPUSH_FCM_ENDPOINT": emu,
           "GEOPUSH_FCM_POLL_INTERVAL_S": "0.05", "GEOPUSH_FCM_TRANSPORT": transport}
    return [subprocess.Popen([sys.executable, "-m", "geopush", "serve"], env=env, cwd=cwd,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(procs)]


def stop(ps: list[subprocess.Popen]) -> None:
    for p in ps:
        p.terminate()
    for p in ps:
        p.wait(timeout=30)


def profile(pid: int, name: str, seconds: float) -> subprocess.Popen:
    """py-spy's raw stacks of process `pid` for `seconds`, in the temp directory
    (`pip install -e ".[bench]"`)."""
    out = Path(tempfile.gettempdir()) / f"geopush-profile-{name}.txt"
    py_spy = str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen([py_spy, "record", "-p", str(pid), "-o", str(out), "-d",
                             str(int(seconds)), "--nonblocking", "--format", "raw"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def senders(url: str, n: int, procs: int, emu: str, creds: Path, cwd: Path,
                  transport: str, spy_s: float = 0.0) -> tuple[float, float]:
    """Messages/s draining `n` deliveries queued at once: from the senders' start (their
    start-up included), and from the first message FCM accepted to the last (`sent_at`);
    `spy_s`: profile the first sender process for that long."""
    conn = await asyncpg.connect(url)
    await _init_connection(conn)
    await conn.execute("TRUNCATE deliveries, devices")
    await queue_deliveries(conn, n, f"bench{procs}{transport}-")
    t = time.perf_counter()
    ps = start_senders(url, procs, emu, creds, cwd, transport)
    spy = profile(ps[0].pid, f"sender-{transport}-{procs}", spy_s) if spy_s else None
    try:
        while await conn.fetchval("SELECT count(*) FROM deliveries WHERE status = 'sent'") < n:
            await asyncio.sleep(0.2)
        from_start = n / (time.perf_counter() - t)
        span = await conn.fetchval("SELECT extract(epoch FROM max(sent_at) - min(sent_at))"
                                   " FROM deliveries WHERE status = 'sent'")
        return from_start, (n - 1) / float(span)
    finally:
        if spy is not None:
            spy.wait(timeout=120)
        stop(ps)
        await conn.close()


_LATENCY = """
SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (
    ORDER BY extract(epoch FROM sent_at - created_at)) FROM deliveries WHERE status = 'sent'
"""


async def latency(url: str, emu: str, creds: Path, cwd: Path, transport: str,
                  rate: float, seconds: float) -> tuple[float, float, int]:
    """p50 and p99 (ms) of queued → FCM accepted, with deliveries queued at `rate` per
    second for `seconds` into a running sender (one process)."""
    conn = await asyncpg.connect(url)
    await _init_connection(conn)
    await conn.execute("TRUNCATE deliveries, devices")
    ps = start_senders(url, 1, emu, creds, cwd, transport)
    try:
        # Wait until the sender has sent a first message: it is up, its token fetched.
        await queue_deliveries(conn, 1, f"probe{transport}{rate}-")
        for _ in range(1200):
            if await conn.fetchval("SELECT count(*) FROM deliveries WHERE status = 'sent'"):
                break
            await asyncio.sleep(0.1)
        await conn.execute("DELETE FROM deliveries")
        tick = 0.1 if rate > 10 else 1.0 / rate
        per_tick = max(1, round(rate * tick))
        queued = 0
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            await queue_deliveries(conn, per_tick, f"lat{transport}{rate}-{queued}-")
            await conn.execute("NOTIFY geopush_outbox")
            queued += per_tick
            await asyncio.sleep(max(0.0, tick - (time.perf_counter() - t)))
        for _ in range(300):
            if await conn.fetchval("SELECT count(*) FROM deliveries WHERE status = 'queued'"
                                   ) == 0:
                break
            await asyncio.sleep(0.1)
        p50, p99 = await conn.fetchval(_LATENCY)
        return p50 * 1000, p99 * 1000, queued
    finally:
        stop(ps)
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
    ap.add_argument("--load-rate", type=float, default=1000.0)
    ap.add_argument("--latency-seconds", type=float, default=10.0)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--latency-only", action="store_true", help="print latencies only")
    ap.add_argument("--profile", type=float, default=0.0, metavar="SECONDS",
                    help="py-spy the first sender process of each run for this long")
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
        started = machine()
        rows = []
        rates = {}
        for transport in ("sdk", "aiohttp") if not args.latency_only else ():
            for procs in (1, 2):
                rates[transport, procs] = r = await senders(url, n, procs, emu, creds, tmp,
                                                            transport, args.profile)
                print(f"{transport}, {procs} sender process(es): {r[0]:,.0f} messages/s from"
                      f" the start, {r[1]:,.0f} from the first send", flush=True)
        bare = await bare_client(n, emu, creds) if not args.latency_only else 1.0
        print(f"peer, bare aiohttp client, no database: {bare:,.0f} messages/s")
        for transport in ("sdk", "aiohttp") if not args.latency_only else ():
            one, two = rates[transport, 1], rates[transport, 2]
            rows.append([f"`{transport}`", one[0], two[0], f"{one[0] / bare:.2f}", one[1],
                         two[1], f"{one[1] / bare:.2f}"])
        rows.append(["peer: bare aiohttp client, one token, no database", bare, "—", "1",
                     bare, "—", "1"])
        lat_rows = []
        for transport in ("sdk", "aiohttp"):
            for rate, label in ((2.0, "unloaded: 2 deliveries/s"),
                                (args.load_rate, f"at load: {args.load_rate:g}/s")):
                p50, p99, queued = await latency(url, emu, creds, tmp, transport, rate,
                                                 args.latency_seconds)
                print(f"{transport}, {label}: p50 {p50:.0f} ms, p99 {p99:.0f} ms ({queued})",
                      flush=True)
                lat_rows.append([f"`{transport}`", label, queued, p50, p99])
        body = "\n".join([
            f"Run: {started}.", "", "```", command(), "```", "",
            f"{n:,} deliveries queued at once, drained by `geopush serve` sender(s) (one"
            " sender thread each) into `geopush fcm-emulator` in its own process; PostgreSQL,"
            " emulator and senders share the machine. messages/s from the senders' start"
            " (process start-up included: what a restart under a backlog sees), and from the"
            " first message FCM accepted to the last (the steady drain).",
            "", table(["transport", "1 sender process, from start", "2 sender processes,"
                       " from start", "1 process ÷ peer", "1 process, first → last send",
                       "2 processes, first → last send", "1 process ÷ peer, steady"], rows),
            "",
            "Queued → FCM accepted (`sent_at − created_at`), one sender process, deliveries"
            f" queued at a steady rate for {args.latency_seconds:g} s (ms):", "",
            table(["transport", "load", "deliveries", "p50 ms", "p99 ms"], lat_rows),
        ])
        if not args.no_write and not args.latency_only:
            write_section("sender", "Delivery — `scripts/bench_sender.py`", body)
    finally:
        emu_proc.terminate()
        emu_proc.wait(timeout=10)
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
