#!/usr/bin/env python3
"""Phones polling the leaderboard while a genuine phone sends its pings.

A million ledger rows (50,000 customers, one in ten opted in, 90 days), `geopush serve`
(one worker, sender off) on embedded PostgreSQL. `--pollers` devices read
`GET /v1/leaderboard` as fast as they are answered, for `--seconds`, while one genuine
phone sends a one-ping batch every 100 ms; its latencies are what is reported. Two runs
in the same go: today's (boards from memory, reads limited per device) and the peer, every
read computing its board (`[loyalty] leaderboard_refresh_s = 0`, no read limit to speak of),
as every read did before.

    .venv/bin/python scripts/bench_leaderboard_poll.py [--rows 1000000] [--pollers 100]
        [--seconds 20] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geopush.store.database import embedded_server, ensure_database
from geopush.store.migrations import migrate
from scripts.bench_ingest import call, free_port
from scripts.bench_loyalty import FILL
from scripts.bench_report import command, machine, table, write_section

ADMIN = "bench-admin-key-0123456789abcdef"


async def fill(url: str, rows: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        customers, stores = 50_000, 200
        await conn.execute("CREATE TEMP TABLE bench_stores (store_id uuid)")
        await conn.execute(
            "INSERT INTO bench_stores SELECT gen_random_uuid() FROM generate_series(1, $1)",
            stores)
        await conn.execute(FILL, rows, customers, datetime.now(UTC), stores)
        await conn.execute(
            "INSERT INTO devices (device_id, token_hash, platform, customer_id,"
            " consent_leaderboard) SELECT gen_random_uuid(), sha256(g::text::bytea),"
            " 'android', 'F' || g, g % 10 = 0 FROM generate_series(0, $1 - 1) g", customers)
        await conn.execute(
            "INSERT INTO customers (customer_id, first_name) SELECT 'F' || g, 'Name' || g"
            " FROM generate_series(0, $1 - 1) g ON CONFLICT DO NOTHING", customers)
        await conn.execute("VACUUM ANALYZE loyalty_ledger")
    finally:
        await conn.close()


def serve(url: str, tmp: Path, port: int, cached: bool) -> subprocess.Popen:
    env = {**os.environ, "GEOPUSH_DATABASE_URL": url, "GEOPUSH_SERVER_PORT": str(port),
           "GEOPUSH_SERVER_RUN_SENDER": "false", "GEOPUSH_AUTH_BOOTSTRAP_ADMIN_KEY": ADMIN,
           "GEOPUSH_LIMITS_REGISTER_RATE_PER_MIN": "100000",
           "GEOPUSH_LIMITS_REGISTER_NETWORK_RATE_PER_MIN": "100000",
           "GEOPUSH_LIMITS_ADDRESS_PING_RATE_PER_S": "100000",
           "GEOPUSH_LOYALTY_LEADERBOARD_REFRESH_S": "30" if cached else "0",
           "GEOPUSH_LIMITS_LEADERBOARD_RATE_PER_MIN": "30" if cached else "1000000"}
    return subprocess.Popen([sys.executable, "-m", "geopush", "serve"], env=env, cwd=tmp,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def ready(s: aiohttp.ClientSession, base: str) -> None:
    for _ in range(600):
        try:
            async with s.get(f"{base}/readyz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("server not ready")


async def run(base: str, pollers: int, seconds: float) -> dict[str, float]:
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as s:
        await ready(s, base)
        app = (await call(s, "POST", f"{base}/v1/keys", ADMIN, {"role": "app"}))["key"]
        tokens = []
        for i in range(pollers + 1):
            reg = await call(s, "POST", f"{base}/v1/devices", app, {
                "fcm_token": f"poll-{i}", "platform": "android", "locale": "en",
                "timezone": "Asia/Shanghai"})
            await call(s, "PUT", f"{base}/v1/devices/me/consent", reg["device_token"],
                       {"location": True, "push": True, "categories": None})
            tokens.append(reg["device_token"])
        genuine, polling = tokens[0], tokens[1:]
        stop = time.perf_counter() + seconds
        reads = {"ok": 0, "429": 0, "503": 0}

        async def poll(token: str) -> None:
            while time.perf_counter() < stop:
                async with s.get(f"{base}/v1/leaderboard",
                                 headers={"Authorization": f"Bearer {token}"}) as r:
                    await r.read()
                    key = "ok" if r.status == 200 else str(r.status)
                    reads[key] = reads.get(key, 0) + 1
                    if r.status == 429:
                        await asyncio.sleep(0.05)

        latencies: list[float] = []
        statuses: list[int] = []

        async def phone() -> None:
            ts = datetime.now(UTC) - timedelta(minutes=30)
            while time.perf_counter() < stop:
                ts += timedelta(seconds=5)
                body = {"pings": [{"lat": 39.9, "lon": 116.4, "accuracy_m": 10,
                                   "ts": ts.isoformat()}]}
                t = time.perf_counter()
                async with s.post(f"{base}/v1/pings", json=body,
                                  headers={"Authorization": f"Bearer {genuine}"}) as r:
                    await r.read()
                    statuses.append(r.status)
                latencies.append(time.perf_counter() - t)
                await asyncio.sleep(0.1)

        await asyncio.gather(phone(), *(poll(t) for t in polling))
    latencies.sort()
    return {"pings": len(latencies), "ping_errors": sum(st != 202 for st in statuses),
            "p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
            "reads_ok": reads["ok"], "reads_429": reads.get("429", 0),
            "reads_503": reads.get("503", 0)}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--pollers", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    args = ap.parse_args()
    header = machine()
    tmp = Path(tempfile.mkdtemp(prefix="gpbench"))
    server = embedded_server(tmp)
    url = ensure_database(server, "bench")
    results = {}
    try:
        await fill(url, args.rows)
        for cached in (True, False):
            port = free_port()
            proc = serve(url, tmp, port, cached)
            try:
                results[cached] = await run(f"http://127.0.0.1:{port}", args.pollers,
                                            args.seconds)
            finally:
                proc.terminate()
                proc.wait(timeout=60)
            print(("today" if cached else "peer"), results[cached])
    finally:
        server.cleanup()
    rows = [[name, r["pings"], r["ping_errors"], r["p50_ms"], r["p99_ms"], r["reads_ok"],
             r["reads_429"], r["reads_503"]]
            for name, r in (("boards from memory, 30 reads/min a device", results[True]),
                            ("peer: every read computes its board", results[False]))]
    body = (f"Command: `{command()}`. {header}.\n\n{args.rows:,} ledger rows, {args.pollers}"
            f" devices polling `GET /v1/leaderboard` for {args.seconds:g} s while a genuine"
            " phone sends one ping every 100 ms; its latencies:\n\n"
            + table(["run", "pings", "ping errors", "p50 ms", "p99 ms", "reads 200",
                     "reads 429", "reads 503"], rows)
            + f"\n\nRatio: the genuine phone's ping p99 is"
            f" {results[False]['p99_ms'] / results[True]['p99_ms']:.1f}x lower with the"
            " boards kept in memory.")
    print(body)
    if args.write:
        write_section("leaderboard-poll", "Phones polling the leaderboard", body)


if __name__ == "__main__":
    asyncio.run(main())
