#!/usr/bin/env python3
"""End-to-end ingest: real GeoLife pings over HTTP into `geopush serve` on embedded
PostgreSQL, 1,000 geofences, many devices at once. Compares batches of 500 pings with
batches of 10 (a chatty client: the per-request and per-transaction cost), side by side.

    .venv/bin/python scripts/bench_ingest.py [--devices 16] [--pings-per-device 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geopush.store.database import embedded_server, ensure_database
from scripts.bench_geo import fences
from tests.geolife import geolife_fixes

ADMIN = "bench-admin-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def call(session: aiohttp.ClientSession, method: str, url: str, key: str,
               body: object = None) -> dict:
    async with session.request(method, url, json=body,
                               headers={"Authorization": f"Bearer {key}"}) as r:
        data = await r.json()
        if r.status >= 300:
            raise RuntimeError(f"{url}: {r.status} {data}")
        return data


async def run(base: str, devices: int, per_device: int, batch: int) -> dict:
    fixes = geolife_fixes()
    tracks = [fixes["001"], fixes["005"]]
    async with aiohttp.ClientSession() as s:
        app_key = (await call(s, "POST", f"{base}/v1/keys", ADMIN, {"role": "app"}))["key"]
        tokens = []
        for i in range(devices):
            reg = await call(s, "POST", f"{base}/v1/devices", app_key, {
                "fcm_token": f"bench-{batch}-{i}", "platform": "android", "locale": "en",
                "timezone": "Asia/Shanghai"})
            await call(s, "PUT", f"{base}/v1/devices/me/consent", reg["device_token"],
                       {"location": True, "push": True, "categories": None})
            tokens.append(reg["device_token"])
        now = datetime.now(UTC)
        latencies: list[float] = []

        async def device(i: int) -> int:
            track = tracks[i % 2]
            offset = (i // 2) * per_device % max(1, len(track) - per_device)
            part = track[offset:offset + per_device]
            shift = now - timedelta(seconds=30) - part[-1].ts
            pings = [{"lat": f.lat, "lon": f.lon, "accuracy_m": 10,
                      "ts": (f.ts + shift).isoformat().replace("+00:00", "Z")} for f in part]
            for k in range(0, len(pings), batch):
                t = time.perf_counter()
                await call(s, "POST", f"{base}/v1/pings", tokens[i],
                           {"pings": pings[k:k + batch]})
                latencies.append(time.perf_counter() - t)
            return len(pings)

        t = time.perf_counter()
        sent = sum(await asyncio.gather(*[device(i) for i in range(devices)]))
        elapsed = time.perf_counter() - t
    latencies.sort()
    return {"pings": sent, "seconds": elapsed, "rate": sent / elapsed,
            "p50_ms": statistics.median(latencies) * 1000,
            "p95_ms": latencies[int(len(latencies) * 0.95)] * 1000}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=16)
    ap.add_argument("--pings-per-device", type=int, default=5000)
    ap.add_argument("--fences", type=int, default=1000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gpbench"))
    server = embedded_server(tmp)
    url = ensure_database(server, "bench")
    port = free_port()
    env = {**os.environ, "GEOPUSH_DATABASE_URL": url, "GEOPUSH_SERVER_PORT": str(port),
           "GEOPUSH_SERVER_RUN_SENDER": "false", "GEOPUSH_AUTH_BOOTSTRAP_ADMIN_KEY": ADMIN,
           "GEOPUSH_LIMITS_DEVICE_RATE_PER_S": "100000", "GEOPUSH_DATABASE_POOL_SIZE": "20",
           "GEOPUSH_LIMITS_ADDRESS_PING_RATE_PER_S": "100000"}
    proc = subprocess.Popen([sys.executable, "-m", "geopush", "serve"], env=env, cwd=tmp,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(300):
                try:
                    async with s.get(f"{base}/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            mk = (await call(s, "POST", f"{base}/v1/keys", ADMIN, {"role": "marketer"}))["key"]
            features = [{"type": "Feature", "properties": {"name": gid, **(
                {"radius_m": g["radius_m"]} if g["type"] == "Circle" else {})},
                "geometry": ({"type": "Point", "coordinates": g["center"]}
                             if g["type"] == "Circle" else g)}
                for gid, g in fences(args.fences).items()]
            await call(s, "POST", f"{base}/v1/geofences/import", mk,
                       {"type": "FeatureCollection", "features": features})
        print(f"{datetime.now(UTC):%Y-%m-%d} geopush serve (1 worker), embedded PostgreSQL,"
              f" {args.fences} geofences, {args.devices} devices at once,"
              f" {args.pings_per_device} GeoLife pings each")
        results = {}
        for batch in (500, 10):
            results[batch] = r = await run(base, args.devices, args.pings_per_device, batch)
            rss = psutil.Process(proc.pid).memory_info().rss / 2**20
            print(f"batches of {batch:>3}: {r['pings']} pings in {r['seconds']:.1f} s ="
                  f" {r['rate']:,.0f} pings/s; batch latency p50 {r['p50_ms']:.1f} ms,"
                  f" p95 {r['p95_ms']:.1f} ms; server RSS {rss:.0f} MiB")
        print(f"ratio: batches of 500 ingest {results[500]['rate'] / results[10]['rate']:.1f}x"
              " the pings/s of batches of 10")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
