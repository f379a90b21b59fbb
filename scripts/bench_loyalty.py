#!/usr/bin/env python3
"""Loyalty costs: ingest with `[loyalty] enabled` on vs off, and leaderboards over 1M rows.

1. Ingest, worst case for loyalty: every ping batch is a whole store visit (enter, dwell,
   exit), so every batch runs the check-in statement and most of them credit a check-in.
   `geopush serve` (one worker, sender off) on embedded PostgreSQL, many phones at once,
   each linked to a customer (so the per-customer lock is taken too); loyalty on and off
   alternate, twice each, each run with fresh phones.
2. Leaderboard: 1,000,000 ledger rows (50,000 customers, 200 stores, 90 days), 5,000 of
   them opted in; the endpoint's own query, EXPLAIN ANALYZE, timed against the same query
   with index scans switched off (the peer: a sequential scan).

    .venv/bin/python scripts/bench_loyalty.py [--phones 32] [--visits 40] [--rows 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
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

from geopush.identity import issue_customer_proof
from geopush.loyalty.leaderboard import _BOARD, _EARNED, _EARNED_AT_STORE, MAX_SHOWN, period_bounds
from geopush.store.database import embedded_server, ensure_database
from geopush.store.migrations import migrate
from scripts.bench_ingest import call, free_port
from tests.api_client import offset_m

ADMIN = "bench-admin-key-0123456789abcdef"
LINK_SECRET = "bench-customer-link-secret-0123456789"
LAT, LON = 39.9087, 116.3975
STORES = 50


def serve(url: str, tmp: Path, port: int, loyalty: bool) -> subprocess.Popen:
    env = {**os.environ, "GEOPUSH_DATABASE_URL": url, "GEOPUSH_SERVER_PORT": str(port),
           "GEOPUSH_SERVER_RUN_SENDER": "false", "GEOPUSH_AUTH_BOOTSTRAP_ADMIN_KEY": ADMIN,
           "GEOPUSH_AUTH_CUSTOMER_LINK_SECRET": LINK_SECRET,
           "GEOPUSH_LIMITS_DEVICE_RATE_PER_S": "100000", "GEOPUSH_DATABASE_POOL_SIZE": "20",
           "GEOPUSH_LIMITS_REGISTER_RATE_PER_MIN": "100000",
           "GEOPUSH_LIMITS_REGISTER_KEY_RATE_PER_MIN": "100000",
           "GEOPUSH_LIMITS_ADDRESS_PING_RATE_PER_S": "100000",
           "GEOPUSH_LOYALTY_ENABLED": "true" if loyalty else "false",
           "GEOPUSH_LOYALTY_MAX_CHECKINS_PER_DAY": "1000"}
    return subprocess.Popen([sys.executable, "-m", "geopush", "serve"], env=env, cwd=tmp,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def ready(base: str) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(600):
            try:
                async with s.get(f"{base}/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("server not ready")


def store_point(i: int) -> tuple[float, float]:
    return offset_m(LAT, LON, 2000.0 * (i // 10), 2000.0 * (i % 10))


async def open_stores(base: str) -> None:
    async with aiohttp.ClientSession() as s:
        mk = (await call(s, "POST", f"{base}/v1/keys", ADMIN, {"role": "marketer"}))["key"]
        for i in range(STORES):
            lat, lon = store_point(i)
            store = await call(s, "POST", f"{base}/v1/stores", mk, {
                "external_id": f"B{i}", "name": f"Shop {i}", "timezone": "Asia/Shanghai",
                "location": {"lat": lat, "lon": lon}})
            await call(s, "POST", f"{base}/v1/geofences", mk, {
                "name": f"door {i}", "store_id": store["id"], "dwell_s": 60,
                "geometry": {"type": "Circle", "center": [lon, lat], "radius_m": 100}})


async def ingest(base: str, run: str, phones: int, visits: int) -> dict:
    async with aiohttp.ClientSession() as s:
        app = (await call(s, "POST", f"{base}/v1/keys", ADMIN, {"role": "app"}))["key"]
        tokens = []
        for i in range(phones):
            customer = f"{run}-{i}"
            reg = await call(s, "POST", f"{base}/v1/devices", app, {
                "fcm_token": f"bench-{customer}", "platform": "android", "locale": "en",
                "timezone": "Asia/Shanghai", "customer_id": customer,
                "customer_proof": issue_customer_proof(customer, LINK_SECRET)})
            await call(s, "PUT", f"{base}/v1/devices/me/consent", reg["device_token"],
                       {"location": True, "push": True, "categories": None})
            tokens.append(reg["device_token"])
        start = datetime.now(UTC) - timedelta(hours=20)
        latencies: list[float] = []

        async def phone(i: int) -> int:
            credited = 0
            for v in range(visits):
                lat, lon = store_point((i + v) % STORES)
                away = offset_m(lat, lon, 0.0, 1000.0)
                at = start + timedelta(minutes=10 * v)
                pings = [{"lat": la, "lon": lo, "accuracy_m": 10,
                          "ts": (at + timedelta(seconds=dt)).isoformat()}
                         for la, lo, dt in ((lat, lon, 0), (lat, lon, 70), (*away, 160))]
                t = time.perf_counter()
                reply = await call(s, "POST", f"{base}/v1/pings", tokens[i], {"pings": pings})
                latencies.append(time.perf_counter() - t)
                credited += any(e["type"] == "dwell" for e in reply["events"])
            return credited

        t = time.perf_counter()
        dwells = sum(await asyncio.gather(*[phone(i) for i in range(phones)]))
        elapsed = time.perf_counter() - t
    latencies.sort()
    return {"batches": len(latencies), "dwells": dwells, "seconds": elapsed,
            "rate": len(latencies) / elapsed,
            "p50_ms": statistics.median(latencies) * 1000,
            "p95_ms": latencies[int(len(latencies) * 0.95)] * 1000}


FILL = """
INSERT INTO loyalty_ledger (ts, points, reason, ref, subject, customer_id, store_id, local_day)
SELECT ts, CASE WHEN reason = 'checkin' THEN 10 ELSE 1 + (g % 40) END, reason, g::text,
       'c:F' || (g % $2), 'F' || (g % $2), s.store_id, (ts AT TIME ZONE 'UTC')::date
FROM (
    SELECT g, $3::timestamptz - make_interval(secs => (g::bigint * 7919) % (90 * 86400)) AS ts,
           CASE WHEN g % 10 < 8 THEN 'checkin' ELSE 'purchase' END AS reason,
           (g * 31) % $4 AS store_no
    FROM generate_series(1, $1) g
) x
JOIN (SELECT store_id, row_number() OVER (ORDER BY store_id) - 1 AS store_no
      FROM bench_stores) s USING (store_no)
ON CONFLICT DO NOTHING
"""


async def leaderboard(url: str, rows: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        customers, stores, opted = 50_000, 200, 5_000  # every tenth customer opts in
        now = datetime.now(UTC)
        await conn.execute("CREATE TEMP TABLE bench_stores (store_id uuid)")
        await conn.execute(
            "INSERT INTO bench_stores SELECT gen_random_uuid() FROM generate_series(1, $1)",
            stores)
        t = time.perf_counter()
        await conn.execute(FILL, rows, customers, now, stores)
        # One phone per customer; one customer in ten opted in.
        await conn.execute(
            "INSERT INTO devices (device_id, token_hash, platform, customer_id,"
            " consent_leaderboard) SELECT gen_random_uuid(), sha256(g::text::bytea),"
            " 'android', 'F' || g, g % 10 = 0 FROM generate_series(0, $1 - 1) g", customers)
        await conn.execute(
            "INSERT INTO customers (customer_id, first_name) SELECT 'F' || g, 'Name' || g"
            " FROM generate_series(0, $1 - 1) g ON CONFLICT DO NOTHING", customers)
        await conn.execute("VACUUM ANALYZE loyalty_ledger")
        await conn.execute("ANALYZE devices")
        total = await conn.fetchval("SELECT count(*) FROM loyalty_ledger")
        print(f"\nleaderboard: {total:,} ledger rows ({customers:,} customers, {stores} stores,"
              f" 90 days; {opted:,} opted in), filled in {time.perf_counter() - t:.0f} s")
        store = await conn.fetchval("SELECT store_id FROM bench_stores LIMIT 1")
        cases = []
        for period in ("week", "month"):
            start, end = period_bounds(period, now, "Asia/Shanghai")
            cases.append((period, _BOARD.format(earned=_EARNED), (start, end, None, MAX_SHOWN)))
        start, end = period_bounds("month", now, "Asia/Shanghai")
        cases.append(("month, one store", _BOARD.format(earned=_EARNED_AT_STORE),
                      (start, end, store, MAX_SHOWN)))
        for name, sql, args in cases:
            plan = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *args)
            lines = [r[0] for r in plan]
            scans = sorted({ln.strip().removeprefix("->").strip().split("  (")[0]
                            for ln in lines if " Scan " in ln and "CTE Scan" not in ln})
            timed = await _timed(conn, sql, args)
            await conn.execute("SET enable_indexscan = off; SET enable_indexonlyscan = off;"
                               " SET enable_bitmapscan = off")
            peer = await _timed(conn, sql, args)
            await conn.execute("RESET enable_indexscan; RESET enable_indexonlyscan;"
                               " RESET enable_bitmapscan")
            print(f"  {name:>18}: {timed * 1000:7.1f} ms (median of 5); peer without index"
                  f" scans {peer * 1000:7.1f} ms; ratio {peer / timed:.1f}x")
            for scan in scans:
                print(f"      plan: {scan}")
            if name == "week":
                print("\n".join("      | " + ln for ln in lines))
    finally:
        await conn.close()


async def _timed(conn: asyncpg.Connection, sql: str, args: tuple) -> float:
    times = []
    for _ in range(5):
        t = time.perf_counter()
        await conn.fetch(sql, *args)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phones", type=int, default=32)
    ap.add_argument("--visits", type=int, default=40)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--leaderboard-only", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gpbench"))
    server = embedded_server(tmp)
    url = ensure_database(server, "bench")
    try:
        if args.leaderboard_only:
            conn = await asyncpg.connect(url)
            try:
                await migrate(conn)
            finally:
                await conn.close()
            await leaderboard(url, args.rows)
            return
        print(f"{datetime.now(UTC):%Y-%m-%d} geopush serve (1 worker, sender off), embedded"
              f" PostgreSQL, {STORES} stores; {args.phones} phones at once, each linked to a"
              f" customer, {args.visits} store visits each (one batch per visit:"
              f" enter, dwell, exit)")
        results: dict[bool, list[dict]] = {True: [], False: []}
        first = True
        for round_no, loyalty in enumerate((True, False, True, False)):
            port = free_port()
            proc = serve(url, tmp, port, loyalty)
            base = f"http://127.0.0.1:{port}"
            try:
                await ready(base)
                if first:
                    await open_stores(base)
                    first = False
                r = await ingest(base, f"r{round_no}", args.phones, args.visits)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            results[loyalty].append(r)
            print(f"loyalty {'on ' if loyalty else 'off'}: {r['batches']} batches"
                  f" ({r['dwells']} dwells) in {r['seconds']:.1f} s = {r['rate']:,.0f}"
                  f" batches/s; latency p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms")
        on = statistics.median(r["rate"] for r in results[True])
        off = statistics.median(r["rate"] for r in results[False])
        print(f"ratio: loyalty on ingests {on / off:.2f}x the batches/s of loyalty off")
        conn = await asyncpg.connect(url)
        try:
            credited = await conn.fetchval(
                "SELECT count(*) FROM loyalty_ledger WHERE reason = 'checkin'")
            await conn.execute("TRUNCATE loyalty_ledger, loyalty_badges")
        finally:
            await conn.close()
        print(f"check-ins credited in the two 'on' runs: {credited}")
        await leaderboard(url, args.rows)
    finally:
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
