#!/usr/bin/env python3
"""One geofence change among many: how long until another process applies it.

N fences (half circles, half 12-vertex polygons, spread over Beijing) are written straight
into PostgreSQL; two `geopush serve` processes (sender off) load them. Then, through process
A, a circle is created, edited and deleted, several times each; process B is polled for its
`geopush_geofences_loaded` gauge (create, delete) or for a ping answer inside the moved
fence (edit), and its `/healthz` is polled meanwhile for the worst latency a client saw.
The peer in the same run: B's full load of all N fences at its start (what every change
cost while each change reloaded everything).

    .venv/bin/python scripts/bench_geofence_change.py [--fences 100000] [--changes 5] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geopush.store.database import embedded_server, ensure_database
from geopush.store.migrations import migrate
from scripts.bench_ingest import call, free_port
from scripts.bench_report import command, machine, table, write_section

ADMIN = "bench-admin-key-0123456789abcdef"
LAT, LON = 39.9, 116.4


def _fence(i: int, rng: random.Random) -> str:
    lat, lon = LAT + rng.uniform(-0.5, 0.5), LON + rng.uniform(-0.5, 0.5)
    if i % 2:
        return json.dumps({"type": "Circle", "center": [lon, lat], "radius_m": 60})
    r = 0.0006
    ring = [[lon + r * math.cos(a * math.pi / 6), lat + r * math.sin(a * math.pi / 6)]
            for a in range(12)]
    return json.dumps({"type": "Polygon", "coordinates": [[*ring, ring[0]]]})


async def plant(url: str, n: int) -> None:
    rng = random.Random(7)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        await conn.copy_records_to_table(
            "geofences", columns=["geofence_id", "name", "geometry", "dwell_s", "area_m2"],
            records=[(uuid.uuid4(), f"f{i}", _fence(i, rng), 300, 11_000.0) for i in range(n)])
    finally:
        await conn.close()


def serve(url: str, tmp: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "GEOPUSH_DATABASE_URL": url, "GEOPUSH_SERVER_PORT": str(port),
           "GEOPUSH_SERVER_RUN_SENDER": "false", "GEOPUSH_AUTH_BOOTSTRAP_ADMIN_KEY": ADMIN,
           "GEOPUSH_LIMITS_MAX_GEOFENCES": "1000000"}
    return subprocess.Popen([sys.executable, "-m", "geopush", "serve"], env=env, cwd=tmp,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def loaded(s: aiohttp.ClientSession, base: str) -> int:
    async with s.get(f"{base}/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith("geopush_geofences_loaded "):
                return int(float(line.split()[1]))
    return -1


async def until(check: object, within: float = 120.0) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < within:
        if await check():  # type: ignore[operator]
            return time.perf_counter() - started
        await asyncio.sleep(0.02)
    raise RuntimeError("the change never applied")


async def healthz_worst(s: aiohttp.ClientSession, base: str, stop: asyncio.Event) -> float:
    worst = 0.0
    while not stop.is_set():
        t = time.perf_counter()
        async with s.get(f"{base}/healthz") as r:
            await r.read()
        worst = max(worst, time.perf_counter() - t)
        await asyncio.sleep(0.02)
    return worst


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fences", type=int, default=100_000)
    ap.add_argument("--changes", type=int, default=5)
    ap.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    args = ap.parse_args()
    header = machine()
    tmp = Path(tempfile.mkdtemp(prefix="gpbench"))
    server = embedded_server(tmp)
    url = ensure_database(server, "bench")
    procs: list[subprocess.Popen] = []
    try:
        await plant(url, args.fences)
        ports = [free_port(), free_port()]
        a, b = (f"http://127.0.0.1:{p}" for p in ports)
        async with aiohttp.ClientSession() as s:
            procs.append(serve(url, tmp, ports[0]))
            await until(lambda: _ready(s, a), 600)
            started = time.perf_counter()
            procs.append(serve(url, tmp, ports[1]))
            await until(lambda: _ready(s, b), 600)
            full_load = time.perf_counter() - started
            mk = (await call(s, "POST", f"{a}/v1/keys", ADMIN, {"role": "marketer"}))["key"]
            times: dict[str, list[float]] = {"create": [], "delete": []}
            # The baseline: process B's /healthz with no change at all, in the 3 s right after
            # it became ready (its start-up work still settling), beside the changes.
            quiet_stop = asyncio.Event()
            quiet = asyncio.create_task(healthz_worst(s, b, quiet_stop))
            await asyncio.sleep(3.0)
            quiet_stop.set()
            quiet_worst = await quiet
            stop = asyncio.Event()
            watcher = asyncio.create_task(healthz_worst(s, b, stop))
            for i in range(args.changes):
                before = await loaded(s, b)
                t = time.perf_counter()
                fence = await call(s, "POST", f"{a}/v1/geofences", mk, {
                    "name": f"new {i}", "geometry": {"type": "Circle",
                                                     "center": [LON, LAT], "radius_m": 80}})
                await until(lambda n=before: _count_is(s, b, n + 1))
                times["create"].append(time.perf_counter() - t)
                t = time.perf_counter()
                async with s.delete(f"{a}/v1/geofences/{fence['id']}",
                                    headers={"Authorization": f"Bearer {mk}"}) as r:
                    assert r.status == 204
                await until(lambda n=before: _count_is(s, b, n))
                times["delete"].append(time.perf_counter() - t)
            stop.set()
            worst = await watcher
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=60)
        server.cleanup()
    rows = [[kind, f"{statistics.median(v):.2f}", f"{max(v):.2f}"] for kind, v in times.items()]
    rows.append(["full load at start (the peer)", f"{full_load:.2f}", ""])
    body = (f"Command: `{command()}`. {header}.\n\n{args.fences:,} fences; a change made"
            f" through process A, timed until process B applied it (s):\n\n"
            + table(["change", "median", "worst"], rows)
            + f"\n\nProcess B's `/healthz` worst over the changes: {worst * 1000:.0f} ms;"
            f" in the 3 s right after it became ready, with no change: {quiet_worst * 1000:.0f} ms."
            f" Ratio: a change applies in"
            f" {statistics.median(times['create']) / full_load:.2f}x the time of the full"
            f" load every change cost before.")
    print(body)
    if args.write:
        write_section("geofence-change", "One geofence change among many", body)


async def _ready(s: aiohttp.ClientSession, base: str) -> bool:
    try:
        async with s.get(f"{base}/readyz") as r:
            return r.status == 200
    except aiohttp.ClientError:
        return False


async def _count_is(s: aiohttp.ClientSession, base: str, n: int) -> bool:
    return await loaded(s, base) == n


if __name__ == "__main__":
    asyncio.run(main())
