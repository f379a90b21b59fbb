#!/usr/bin/env python3
"""What one address's devices can make geopush store, with and without the device-time bounds.

`geopush serve` (one worker, sender off) on embedded PostgreSQL, one store with a 50 m circle
and an active enter offer. From one address, `--devices` devices attack for `--seconds`, each
as fast as its rate limits answer (a 429 waits its Retry-After):

- half of them flood pings backdated to a day ago, 500 a batch, as close together as the
  server accepts (1 ms apart without the bounds, `min_ping_interval_s` apart with them);
- the other half zig-zag across the fence's edge (0.5 s apart without the bounds, the
  fastest the speed check lets through; 1 s with them), so every other ping is an enter
  candidate for the offer.

Two runs in the same go: today's defaults (`[geo] min_ping_interval_s = 1`,
`max_enters_per_hour = 60`) and the peer with both bounds off, as before. Reported: rows and
bytes added to `pings`, `events` and `decisions`, and per day. Without the bounds the day is
the measured rate times 86,400 s. With them it is capped by device time: a device's pings
span at most a day of backlog plus the day itself, one per `min_ping_interval_s`, and its
enters at most `max_enters_per_hour` per hour of that span.

    .venv/bin/python scripts/bench_abuse_volume.py [--devices 10] [--seconds 20] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import math
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
from scripts.bench_leaderboard_poll import ready
from scripts.bench_report import command, machine, table, write_section

ADMIN = "bench-admin-key-0123456789abcdef"
LAT, LON = 39.95, 116.45
SIZES = """
SELECT (SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('pings')),
       pg_total_relation_size('events'), pg_total_relation_size('decisions'),
       (SELECT count(*) FROM pings), (SELECT count(*) FROM events),
       (SELECT count(*) FROM decisions)
"""


def serve(url: str, tmp: Path, port: int, bounded: bool) -> subprocess.Popen:
    env = {**os.environ, "GEOPUSH_DATABASE_URL": url, "GEOPUSH_SERVER_PORT": str(port),
           "GEOPUSH_SERVER_RUN_SENDER": "false", "GEOPUSH_AUTH_BOOTSTRAP_ADMIN_KEY": ADMIN,
           "GEOPUSH_CAMPAIGNS_QUIET_HOURS_START": "00:00",
           "GEOPUSH_CAMPAIGNS_QUIET_HOURS_END": "00:00"}
    if not bounded:
        env |= {"GEOPUSH_GEO_MIN_PING_INTERVAL_S": "0", "GEOPUSH_GEO_MAX_ENTERS_PER_HOUR": "0"}
    return subprocess.Popen([sys.executable, "-m", "geopush", "serve"], env=env, cwd=tmp,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def north(metres: float) -> tuple[float, float]:
    return LAT + metres / 111_132.954, LON


async def attack(base: str, devices: int, seconds: float, spacing_s: float) -> dict[str, int]:
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as s:
        await ready(s, base)
        store = await call(s, "POST", f"{base}/v1/stores", ADMIN, {
            "external_id": f"A{time.time_ns()}", "name": "Store", "timezone": "Asia/Shanghai",
            "location": {"lat": LAT, "lon": LON}})
        fence = await call(s, "POST", f"{base}/v1/geofences", ADMIN, {
            "name": "door", "store_id": store["id"],
            "geometry": {"type": "Circle", "center": [LON, LAT], "radius_m": 50}})
        await call(s, "POST", f"{base}/v1/offers", ADMIN, {
            "trigger": "enter", "geofence_ids": [fence["id"]],
            "message": {"default_locale": "en",
                        "translations": {"en": {"title": "Hi", "body": "Come in"}}}})
        app = (await call(s, "POST", f"{base}/v1/keys", ADMIN, {"role": "app"}))["key"]
        tokens = []
        for i in range(devices):
            reg = await call(s, "POST", f"{base}/v1/devices", app, {
                "fcm_token": f"attacker-{i}-{time.time_ns()}", "platform": "android",
                "locale": "en", "timezone": "Asia/Shanghai"})
            await call(s, "PUT", f"{base}/v1/devices/me/consent", reg["device_token"],
                       {"location": True, "push": True, "categories": None})
            tokens.append(reg["device_token"])
        stop = time.perf_counter() + seconds
        statuses: dict[str, int] = {}
        # 45 m and 75 m from the centre of a 50 m circle: in, then beyond the 20 m buffer;
        # 30 m apart, so 0.5 s between them is within max_speed_mps (70).
        inside, outside = north(45), north(75)

        async def device(token: str, zigzag: bool) -> None:
            ts = datetime.now(UTC) - timedelta(hours=23, minutes=59)
            n = 0
            step = timedelta(seconds=max(spacing_s, 0.5) if zigzag else spacing_s)
            while time.perf_counter() < stop:
                pings = []
                for _ in range(500):
                    lat, lon = (inside if n % 2 == 0 else outside) if zigzag else inside
                    pings.append({"lat": lat, "lon": lon, "accuracy_m": 10,
                                  "ts": ts.isoformat()})
                    ts += step
                    n += 1
                async with s.post(f"{base}/v1/pings", json={"pings": pings},
                                  headers={"Authorization": f"Bearer {token}"}) as r:
                    await r.read()
                    statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
                    if r.status == 429:
                        await asyncio.sleep(float(r.headers.get("Retry-After", "0.1")))

        await asyncio.gather(*(device(t, i % 2 == 1) for i, t in enumerate(tokens)))
    return statuses


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    args = ap.parse_args()
    header = machine()
    tmp = Path(tempfile.mkdtemp(prefix="gpbench"))
    server = embedded_server(tmp)
    results: dict[bool, dict[str, float]] = {}
    try:
        for bounded in (True, False):
            url = ensure_database(server, "bounded" if bounded else "peer")
            conn = await asyncpg.connect(url)
            await migrate(conn)
            before = await conn.fetchrow(SIZES)
            port = free_port()
            proc = serve(url, tmp, port, bounded)
            try:
                statuses = await attack(f"http://127.0.0.1:{port}", args.devices,
                                        args.seconds, 1.0 if bounded else 0.001)
            finally:
                proc.terminate()
                proc.wait(timeout=60)
            after = await conn.fetchrow(SIZES)
            await conn.close()
            delta = [float(after[i] - before[i]) for i in range(6)]
            results[bounded] = {"pings_mb": delta[0] / 1e6, "events_mb": delta[1] / 1e6,
                                "decisions_mb": delta[2] / 1e6, "pings": delta[3],
                                "events": delta[4], "decisions": delta[5],
                                "requests": sum(statuses.values()),
                                "refused": statuses.get("429", 0)}
            print("today" if bounded else "peer", results[bounded], statuses)
    finally:
        server.cleanup()

    def per_day(r: dict[str, float], bounded: bool) -> tuple[float, float]:
        """(rows a day, GB a day) over the three tables."""
        scale = 86_400 / args.seconds
        rows = r["pings"] + r["events"] + r["decisions"]
        mb = r["pings_mb"] + r["events_mb"] + r["decisions_mb"]
        if not bounded:
            return rows * scale, mb * scale / 1000
        # Device time caps each device: two days of span (a day's backlog and the day).
        half = math.ceil(args.devices / 2)
        ping_cap = 2 * 86_400 * args.devices
        enter_cap = 2 * 24 * 60 * half  # zig-zagging devices, 60 enters an hour of span
        per_event = r["events_mb"] / max(r["events"], 1)
        per_decision = r["decisions_mb"] / max(r["decisions"], 1)
        per_ping = r["pings_mb"] / max(r["pings"], 1)
        events = min(r["events"] * scale, 2 * enter_cap)  # an enter and its exit
        decisions = min(r["decisions"] * scale, enter_cap)
        pings = min(r["pings"] * scale, ping_cap)
        return (pings + events + decisions,
                (pings * per_ping + events * per_event + decisions * per_decision) / 1000)

    rows = []
    for name, bounded in (("device-time bounds (today)", True), ("peer: no bounds", False)):
        r = results[bounded]
        day_rows, day_gb = per_day(r, bounded)
        rows.append([name, r["requests"], r["refused"], int(r["pings"]), int(r["events"]),
                     int(r["decisions"]), r["pings_mb"] + r["events_mb"] + r["decisions_mb"],
                     f"{day_rows:,.0f}", f"{day_gb:,.2f}"])
    today, peer = per_day(results[True], True), per_day(results[False], False)
    body = (f"Command: `{command()}`. {header}.\n\n{args.devices} devices of one address"
            f" attack for {args.seconds:g} s (half flood backdated pings, half zig-zag across"
            " a fence edge with an active enter offer), each as fast as its limits answer:\n\n"
            + table(["run", "requests", "429", "pings", "events", "decisions",
                     f"MB in {args.seconds:g} s", "rows a day", "GB a day"], rows)
            + f"\n\nRatio: {peer[1] / max(today[1], 1e-9):,.0f}x less stored a day with the"
            " bounds. A day with the bounds is capped by device time: each device's pings"
            " span at most a day of backlog plus the day itself, one a second, and its"
            " enters at most 60 an hour of that span; the first seconds spend the backlog,"
            " after which a device stores what a real phone would.")
    print(body)
    if args.write:
        write_section("abuse-volume", "What one address's devices can make geopush store",
                      body)


if __name__ == "__main__":
    asyncio.run(main())
