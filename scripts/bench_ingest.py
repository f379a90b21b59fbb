#!/usr/bin/env python3
"""End-to-end ingest over HTTP: `geopush serve` on embedded PostgreSQL, 10,000 circle fences,
2,000 devices walking near them, 64 clients at once, each request answered after COMMIT.

    .venv/bin/python scripts/bench_ingest.py [--seconds 15] [--workers 1 2] [--batches 1 10 100]
                                             [--offers 0 20] [--code DIR] [--no-write]

For every (workers, active offers, pings per request): a load generator in another process
(aiohttp on loopback, `--clients` connections, bounded by `--seconds` and a request cap)
sends batches and reports requests/s, pings/s and the latency of each request (p50, p99).
With 20 offers, each targets 500 of the fences on `enter` (5 of them with `max_sends`), so
events lead to decisions; the sender is off, so deliveries stay queued.
`--code DIR` runs the server from another checkout (e.g. an older commit, for before/after).
After each closed-loop row (its maximum), `--open-loop 0.25 0.5 0.9` offers a fixed arrival
rate at those shares of it and reports p50/p99/p99.9 from each request's scheduled instant.
Server CPU per request is read from /proc/<pid>/stat of the server's processes before/after.
`--profile` records py-spy's raw stacks of the (first) worker for each run, in the temp
directory (`pip install -e ".[bench]"`).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ADMIN = "bench-admin-key-0123456789abcdef"
MESSAGE = {"default_locale": "en", "translations": {"en": {"title": "Hi", "body": "Offer"}}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the load generator (its own process) --------------------------------------------------


async def load(url: str, tokens_file: str, batch: int, clients: int, seconds: float,
               max_requests: int, warm: bool = False) -> dict[str, float]:
    """Send batches for `seconds`; the devices' walks go on where the last run left them
    (saved in `tokens_file`). `warm`: one ping per device, unmeasured, so measured runs do
    not see every device's first ping (which enters every fence it starts in)."""
    devices = json.loads(Path(tokens_file).read_text())
    rng = random.Random(batch)
    state = [{"token": d["token"], "lon": d["lon"], "lat": d["lat"],
              "heading": d.get("heading", rng.uniform(0, 2 * math.pi)),
              "ts": d.get("ts", time.time() - 60)}
             for d in devices]
    if warm:
        batch, max_requests, seconds = 1, len(state), 3600.0
    latencies: list[float] = []
    pings_sent = 0
    errors = 0
    deadline = time.perf_counter() + seconds
    step_s = 0.01  # device time between the pings of one batch

    def next_batch(dev: dict) -> list[dict]:
        now = time.time()
        base = max(dev["ts"] + step_s, now - batch * step_s)
        out = []
        for k in range(batch):
            ts = base + k * step_s
            walked = 5.0 * (ts - dev["ts"])  # 5 m/s in device time
            dev["ts"] = ts
            dev["lon"] += walked * math.cos(dev["heading"]) / 85_000
            dev["lat"] += walked * math.sin(dev["heading"]) / 111_000
            if rng.random() < 0.05:
                dev["heading"] = rng.uniform(0, 2 * math.pi)
            out.append({"lat": dev["lat"], "lon": dev["lon"], "accuracy_m": 10,
                        "ts": datetime.fromtimestamp(ts, UTC).isoformat().replace(
                            "+00:00", "Z")})
        return out

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        nonlocal pings_sent, errors
        mine = state[i::clients]
        k = 0
        while (time.perf_counter() < deadline and len(latencies) < max_requests
               and not (warm and k >= len(mine))):
            dev = mine[k % len(mine)]
            k += 1
            body = {"pings": next_batch(dev)}
            t = time.perf_counter()
            async with session.post(f"{url}/v1/pings", json=body,
                                    headers={"Authorization": f"Bearer {dev['token']}"}) as r:
                await r.read()
                if r.status != 202:
                    errors += 1
                    continue
            latencies.append(time.perf_counter() - t)
            pings_sent += batch

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(i, session) for i in range(clients)))
        elapsed = time.perf_counter() - started
    Path(tokens_file).write_text(json.dumps(state))
    latencies.sort()
    n = len(latencies)
    return {"requests": n, "seconds": elapsed, "rps": n / elapsed,
            "pings_per_s": pings_sent / elapsed, "errors": errors,
            "p50_ms": latencies[n // 2] * 1000 if n else 0,
            "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else 0}


async def open_load(url: str, tokens_file: str, batch: int, rate: float, seconds: float,
                    max_requests: int) -> dict[str, float]:
    """Open loop: request k leaves at `start + k / rate`, whether or not earlier answers are
    back, and its latency counts from that scheduled instant (a late sender's wait counts
    too). Closed-loop clients at saturation measure their own queue, not the service."""
    devices = json.loads(Path(tokens_file).read_text())
    rng = random.Random(batch)
    state = [{"token": d["token"], "lon": d["lon"], "lat": d["lat"],
              "heading": d.get("heading", rng.uniform(0, 2 * math.pi)),
              "ts": d.get("ts", time.time() - 60)} for d in devices]
    busy: set[int] = set()  # one request in flight per device: its pings stay in order
    latencies: list[float] = []
    errors = skipped = 0
    step_s = 0.01

    def next_batch(dev: dict) -> list[dict]:
        now = time.time()
        base = max(dev["ts"] + step_s, now - batch * step_s)
        out = []
        for k in range(batch):
            ts = base + k * step_s
            walked = 5.0 * (ts - dev["ts"])
            dev["ts"] = ts
            dev["lon"] += walked * math.cos(dev["heading"]) / 85_000
            dev["lat"] += walked * math.sin(dev["heading"]) / 111_000
            if rng.random() < 0.05:
                dev["heading"] = rng.uniform(0, 2 * math.pi)
            out.append({"lat": dev["lat"], "lon": dev["lon"], "accuracy_m": 10,
                        "ts": datetime.fromtimestamp(ts, UTC).isoformat().replace(
                            "+00:00", "Z")})
        return out

    async def one(session: aiohttp.ClientSession, i: int, due: float) -> None:
        nonlocal errors
        dev = state[i]
        body = {"pings": next_batch(dev)}
        try:
            async with session.post(f"{url}/v1/pings", json=body,
                                    headers={"Authorization": f"Bearer {dev['token']}"}) as r:
                await r.read()
                ok = r.status == 202
        except aiohttp.ClientError:
            ok = False
        finally:
            busy.discard(i)
        if ok:
            latencies.append(time.perf_counter() - due)
        else:
            errors += 1

    total = min(max_requests, int(rate * seconds))
    tasks: list[asyncio.Task[None]] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        nxt = 0
        for k in range(total):
            due = start + k / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            for _ in range(len(state)):  # the next device with nothing in flight
                nxt = (nxt + 1) % len(state)
                if nxt not in busy:
                    break
            else:
                skipped += 1
                continue
            busy.add(nxt)
            tasks.append(asyncio.create_task(one(session, nxt, due)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    Path(tokens_file).write_text(json.dumps(state))
    latencies.sort()
    n = len(latencies)

    def q(f: float) -> float:
        return latencies[min(n - 1, int(n * f))] * 1000 if n else 0.0

    return {"requests": n, "seconds": elapsed, "rps": n / elapsed, "offered_rps": rate,
            "pings_per_s": n * batch / elapsed, "errors": errors + skipped,
            "p50_ms": q(0.5), "p99_ms": q(0.99), "p999_ms": q(0.999)}


def proc_cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes, from /proc/<pid>/stat (fields 14, 15)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


# --- the harness -----------------------------------------------------------------------------


CATEGORIES = ("coffee", "tea", "pastry", "beans")


async def _customers_who_bought(conn: Any, n: int) -> None:
    """`--learning`: every device belongs to a customer with a purchase, a quarter of them
    within `recently_bought_days`, so SPEC 15's per-customer checks have rows to read."""
    now = datetime.now(UTC)
    await conn.copy_records_to_table(
        "customers", columns=["customer_id", "first_name", "language"],
        records=[(f"bench-c{i}", "Bench", "en") for i in range(n)])
    await conn.copy_records_to_table(
        "transactions", columns=["transaction_id", "customer_id", "ts", "amount", "category"],
        records=[(f"bench-t{i}", f"bench-c{i}", now - timedelta(days=2 if i % 4 == 0 else 30),
                  Decimal("9.50"), CATEGORIES[i % len(CATEGORIES)]) for i in range(n)])


async def call(session: aiohttp.ClientSession, method: str, url: str, key: str,
               body: object = None) -> dict:
    async with session.request(method, url, json=body,
                               headers={"Authorization": f"Bearer {key}"}) as r:
        data = await r.json()
        if r.status >= 300:
            raise RuntimeError(f"{url}: {r.status} {data}")
        return data


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        from geopush.store.database import embedded_server, ensure_database

        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="gpbench"))
        self.pg = embedded_server(self.tmp / "pg")
        self.dsn = ensure_database(self.pg, "bench")
        self.proc: subprocess.Popen | None = None
        self.base = ""

    def close(self) -> None:
        self.stop()
        self.pg.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)

    async def start(self, workers: int) -> None:
        port = free_port()
        env = {**os.environ, "GEOPUSH_DATABASE_URL": self.dsn,
               "GEOPUSH_SERVER_PORT": str(port), "GEOPUSH_SERVER_WORKERS": str(workers),
               "GEOPUSH_SERVER_RUN_SENDER": "false", "GEOPUSH_AUTH_BOOTSTRAP_ADMIN_KEY": ADMIN,
               "GEOPUSH_LIMITS_DEVICE_RATE_PER_S": "100000",
               "GEOPUSH_LIMITS_ADDRESS_PING_RATE_PER_S": "1000000",
               "GEOPUSH_DATABASE_POOL_SIZE": "20",
               # The walkers' fixes are 10 ms apart (100 of them fit in a second of device
               # time); the minimum interval between fixes is a policy, not a cost: off.
               "GEOPUSH_GEO_MIN_PING_INTERVAL_S": "0"}
        if self.args.code:
            env["PYTHONPATH"] = str(Path(self.args.code).resolve())
        self.proc = subprocess.Popen([sys.executable, "-m", "geopush", "serve"], env=env,
                                     cwd=self.tmp, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as s:
            for _ in range(600):
                try:
                    async with s.get(f"{self.base}/readyz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("geopush serve did not get ready")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=60)
            self.proc = None

    async def setup_data(self) -> list[dict]:
        """10k circle fences (HTTP import), 20 offers (paused), 2k devices (straight into the
        database: registering them is not what is measured)."""
        import asyncpg

        from scripts.bench_geo import fences

        geoms = fences(self.args.fences, circles_only=True)
        async with aiohttp.ClientSession() as s:
            mk = (await call(s, "POST", f"{self.base}/v1/keys", ADMIN,
                             {"role": "marketer", "name": "bench"}))["key"]
            features = [{"type": "Feature", "properties": {"name": gid,
                                                           "radius_m": g["radius_m"]},
                         "geometry": {"type": "Point", "coordinates": g["center"]}}
                        for gid, g in geoms.items()]
            for i in range(0, len(features), 5000):
                await call(s, "POST", f"{self.base}/v1/geofences/import", mk,
                           {"type": "FeatureCollection", "features": features[i:i + 5000]})
            conn = await asyncpg.connect(self.dsn)
            try:
                ids = [str(r[0]) for r in await conn.fetch(
                    "SELECT geofence_id FROM geofences ORDER BY name")]
                self.offer_ids = []
                for k in range(20):
                    body = {"name": f"bench {k}", "trigger": "enter", "message": MESSAGE,
                            "geofence_ids": ids[k * 500:(k + 1) * 500], "cooldown_s": 60,
                            "status": "paused"}
                    if k < 5:
                        body["max_sends"] = 1_000_000
                    if self.args.learning:
                        body["category"] = CATEGORIES[k % len(CATEGORIES)]
                    self.offer_ids.append((await call(s, "POST", f"{self.base}/v1/offers",
                                                      mk, body))["id"])
                rng = random.Random(3)
                devices = []
                rows = []
                centres = list(geoms.values())
                for i in range(self.args.devices):
                    token = f"dev_bench_{i}_{uuid.uuid4().hex}"
                    # Spread as the fences are: some start inside one, most do not.
                    g = centres[rng.randrange(len(centres))]
                    lon = g["center"][0] + rng.uniform(-0.01, 0.01)
                    lat = g["center"][1] + rng.uniform(-0.01, 0.01)
                    if i < self.args.away * self.args.devices:
                        lat += 0.5  # about 55 km north of every fence: the common batch

                    devices.append({"token": token, "lon": lon, "lat": lat})
                    rows.append((uuid.uuid4(), hashlib.sha256(token.encode()).digest(),
                                 f"fcm-bench-{i}", "android", "en", "UTC", True, True,
                                 f"bench-c{i}" if self.args.learning else None))
                if self.args.learning:
                    await _customers_who_bought(conn, self.args.devices)
                await conn.copy_records_to_table(
                    "devices", records=rows,
                    columns=["device_id", "token_hash", "fcm_token", "platform", "locale",
                             "timezone", "consent_location", "consent_push", "customer_id"])
            finally:
                await conn.close()
        return devices

    async def set_offers(self, active: int) -> None:
        async with aiohttp.ClientSession() as s:
            for k, oid in enumerate(self.offer_ids):
                await call(s, "PATCH", f"{self.base}/v1/offers/{oid}", ADMIN,
                           {"status": "active" if k < active else "paused"})

    async def counts(self) -> dict[str, int]:
        import asyncpg

        conn = await asyncpg.connect(self.dsn)
        try:
            return {t: await conn.fetchval(f"SELECT count(*) FROM {t}")
                    for t in ("events", "decisions", "deliveries")}
        finally:
            await conn.close()

    def run_load(self, tokens_file: Path, batch: int, warm: bool = False,
                 tag: str = "", rate: float | None = None) -> dict[str, float]:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--load", self.base,
               "--tokens", str(tokens_file), "--batch", str(batch),
               "--clients", str(self.args.clients), "--seconds", str(self.args.seconds)]
        if warm:
            cmd.append("--warm")
        if rate is not None:
            cmd += ["--rate", f"{rate:.1f}"]
        spy = None
        if self.args.profile and self.proc is not None and not warm:
            target = self.proc.pid
            kids = psutil.Process(target).children()
            if kids:
                target = kids[0].pid
            out = Path(tempfile.gettempdir()) / f"geopush-profile-ingest{tag}-{batch}.txt"
            py_spy = str(Path(sys.executable).parent / "py-spy")
            spy = subprocess.Popen([py_spy, "record", "-p", str(target), "-o", str(out),
                                    "-d", str(int(self.args.seconds)), "--nonblocking",
                                    "--format", "raw"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = [psutil.Process(self.proc.pid)] if self.proc else []
        server += server[0].children(recursive=True) if server else []
        pids = [p.pid for p in server]
        cpu0 = proc_cpu_s(pids)
        result = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                           text=True).stdout)
        cpu1 = proc_cpu_s(pids)
        result["server_cpu_s"] = cpu1 - cpu0
        result["rss_mib"] = sum(p.memory_info().rss for p in server) / 2**20
        if spy is not None:
            spy.wait(timeout=120)
        return result


async def harness(args: argparse.Namespace) -> None:
    from scripts.bench_report import command, machine, table, write_section

    started = machine()
    bench = Bench(args)
    rows = []
    open_rows: list[list[object]] = []
    try:
        await bench.start(1)
        devices = await bench.setup_data()
        tokens_file = bench.tmp / "devices.json"
        tokens_file.write_text(json.dumps(devices))
        warmed = bench.run_load(tokens_file, 1, warm=True)
        print(f"warm-up: one ping from each of {warmed['requests']} devices", flush=True)
        for workers in args.workers:
            bench.stop()
            await bench.start(workers)
            for offers in args.offers:
                await bench.set_offers(offers)
                await asyncio.sleep(1.0)
                for batch in args.batches:
                    before = await bench.counts()
                    r = bench.run_load(tokens_file, batch, tag=f"-w{workers}-o{offers}")
                    after = await bench.counts()
                    events = after["events"] - before["events"]
                    decisions = after["decisions"] - before["decisions"]
                    # Server CPU (workers and their children, not PostgreSQL) per request:
                    # less sensitive than requests/s to what else runs on the machine.
                    cpu_ms = r["server_cpu_s"] * 1000 / max(1, r["requests"])
                    print(f"workers {workers}, offers {offers}, {batch}/request: "
                          f"{r['rps']:,.0f} req/s, {r['pings_per_s']:,.0f} pings/s, p50 "
                          f"{r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, errors "
                          f"{r['errors']}, events {events}, decisions {decisions}, server "
                          f"CPU {cpu_ms:.2f} ms/request, load average {os.getloadavg()[0]:.1f}",
                          flush=True)
                    rows.append([workers, offers, batch, r["rps"], r["pings_per_s"],
                                 r["p50_ms"], r["p99_ms"], cpu_ms, events / r["seconds"],
                                 decisions / r["seconds"], r["errors"], r["rss_mib"]])
                    for share in args.open_loop:
                        o = bench.run_load(tokens_file, batch, rate=r["rps"] * share)
                        o_cpu = o["server_cpu_s"] * 1000 / max(1, o["requests"])
                        print(f"  open loop at {share:.0%} of the maximum "
                              f"({o['offered_rps']:,.0f} req/s offered): {o['rps']:,.0f} "
                              f"req/s, p50 {o['p50_ms']:.1f} ms, p99 {o['p99_ms']:.1f} ms, "
                              f"p99.9 {o['p999_ms']:.1f} ms, errors {o['errors']}, server "
                              f"CPU {o_cpu:.2f} ms/request", flush=True)
                        open_rows.append([workers, offers, batch, f"{share:.0%}",
                                          o["offered_rps"], o["rps"], o["p50_ms"],
                                          o["p99_ms"], o["p999_ms"], o_cpu, o["errors"]])
    finally:
        bench.close()
    label = f" (server code from `{args.code}`)" if args.code else ""
    body = "\n".join([
        f"Run: {started}{label}.", "", "```", command(), "```", "",
        f"`geopush serve` (sender off) on embedded PostgreSQL, {args.fences:,} circle fences,"
        f" {args.devices:,} devices walking at 5 m/s among them (spread as the fences are;"
        f" {args.away:.0%} of them 55 km away from every fence),"
        f" {args.clients} clients on loopback in another process, {args.seconds:g} s per"
        " row. With 20 offers: `enter` offers on 500 fences each, 5 with `max_sends`.", "",
        table(["workers", "active offers", "pings/request", "requests/s", "pings/s",
               "p50 ms", "p99 ms", "server CPU ms/request", "events/s", "decisions/s",
               "errors", "server RSS MiB"],
              rows),
    ])
    if open_rows:
        body += "\n\nOpen loop (a fixed arrival rate, latency from each request's scheduled" \
                " instant) at shares of the closed-loop maximum above:\n\n" + table(
            ["workers", "active offers", "pings/request", "share", "offered req/s",
             "answered req/s", "p50 ms", "p99 ms", "p99.9 ms", "server CPU ms/request",
             "errors"], open_rows)
    if not args.no_write:
        write_section("ingest" + ("-" + args.label if args.label else ""),
                      "Ingest over HTTP — `scripts/bench_ingest.py`"
                      + (f" ({args.label})" if args.label else ""), body)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--offers", type=int, nargs="+", default=[0, 20])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 10, 100])
    ap.add_argument("--fences", type=int, default=10_000)
    ap.add_argument("--devices", type=int, default=2_000)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--away", type=float, default=0.0,
                    help="share of devices walking far from every fence (the fences are"
                         " dense: among them, about 4 pings in 5 are near one)")
    ap.add_argument("--max-requests", type=int, default=200_000)
    ap.add_argument("--code", help="run the server from this checkout (PYTHONPATH)")
    ap.add_argument("--label", default="", help="a separate section, e.g. 'before'")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--open-loop", type=float, nargs="*", default=[0.25, 0.5, 0.9],
                    help="after each closed-loop maximum, open-loop runs at these shares")
    # The load generator's own arguments (the harness starts it with these).
    ap.add_argument("--load")
    ap.add_argument("--tokens")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--warm", action="store_true")
    ap.add_argument("--rate", type=float, help="open loop: requests per second")
    ap.add_argument("--learning", action="store_true",
                    help="offers carry categories, devices belong to customers who bought"
                         " (SPEC 15's preference, fatigue and recent-purchase checks do work)")
    args = ap.parse_args()
    if args.load and args.rate:
        print(json.dumps(asyncio.run(open_load(args.load, args.tokens, args.batch, args.rate,
                                               args.seconds, args.max_requests))))
        return
    if args.load:
        print(json.dumps(asyncio.run(load(args.load, args.tokens, args.batch, args.clients,
                                          args.seconds, args.max_requests, args.warm))))
        return
    asyncio.run(harness(args))


if __name__ == "__main__":
    main()
