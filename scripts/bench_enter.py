#!/usr/bin/env python3
"""Delivery end to end: N phones (3,000 by default) enter one store at once.

    .venv/bin/python scripts/bench_enter.py [--phones 3000] [--clients 128] [--workers 1]
                                            [--no-write]

`geopush serve` (sender on, aiohttp transport) on embedded PostgreSQL, `geopush
fcm-emulator` in its own process. One store with a 150 m circle and an active `enter`
offer; N devices with location and push consent (written straight into the database:
registering them is not what is measured). Then every phone sends one ping at the store's
centre, all at once (`--clients` connections from a load process of their own); each ping
is an enter, each enter an offer decision, each decision a queued delivery the sender
drains into the emulator.

Measured: from the first ping sent to the last push recorded at the emulator (messages/s
over that span); each phone's ping sent → its push received at the emulator, p50/p99; the
server's event → FCM accepted (`deliveries.sent_at − events.created_at`), p50/p99. The peer,
in the same run: a bare aiohttp client posting N such messages to the same emulator (no
database, no decisions; `bench_sender.bare_client`).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geopush.store.database import embedded_server, ensure_database
from scripts.bench_ingest import ADMIN, MESSAGE, call, free_port
from scripts.bench_report import command, machine, table, write_section
from scripts.bench_sender import bare_client, wait_http

STORE_LAT, STORE_LON = 39.9087, 116.3975

_EVENT_TO_SEND = """
SELECT count(*), percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (
           ORDER BY extract(epoch FROM d.sent_at - e.created_at))
FROM deliveries d JOIN events e USING (event_id) WHERE d.status = 'sent'
"""


async def enter_all(url: str, tokens: list[str], clients: int) -> dict[str, object]:
    """Every phone sends one ping at the store's centre, `clients` requests in flight.
    Returns the wall-clock time each phone's request left, and the answers' statuses."""
    ts = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    body = json.dumps({"pings": [{"lat": STORE_LAT, "lon": STORE_LON, "accuracy_m": 10,
                                  "ts": ts}]})
    sent_at: dict[int, float] = {}
    statuses: dict[int, int] = {}
    queue = list(range(len(tokens)))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as s:
        async def client() -> None:
            while queue:
                i = queue.pop()
                sent_at[i] = time.time()
                async with s.post(f"{url}/v1/pings", data=body, headers={
                        "Authorization": f"Bearer {tokens[i]}",
                        "Content-Type": "application/json"}) as r:
                    await r.read()
                    statuses[i] = r.status
        started = time.time()
        await asyncio.gather(*(client() for _ in range(clients)))
        answered = time.time()
    return {"started": started, "answered": answered, "sent_at": sent_at,
            "statuses": statuses}


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="gpenter"))
        self.pg = embedded_server(self.tmp / "pg")
        self.dsn = ensure_database(self.pg, "bench")
        self.procs: list[subprocess.Popen] = []

    def close(self) -> None:
        for p in reversed(self.procs):
            p.terminate()
            p.wait(timeout=60)
        self.pg.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)

    async def start(self) -> tuple[str, str, Path]:
        emu_port, port = free_port(), free_port()
        creds = self.tmp / "sa.json"
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "geopush", "fcm-emulator", "--port", str(emu_port),
             "--write-credentials", str(creds)], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL))
        emu = f"http://127.0.0.1:{emu_port}"
        await wait_http(f"{emu}/healthz")
        env = {**os.environ, "GEOPUSH_DATABASE_URL": self.dsn,
               "GEOPUSH_SERVER_PORT": str(port),
               "GEOPUSH_SERVER_WORKERS": str(self.args.workers),
               "GEOPUSH_AUTH_BOOTSTRAP_ADMIN_KEY": ADMIN,
               "GEOPUSH_LIMITS_DEVICE_RATE_PER_S": "100000",
               "GEOPUSH_LIMITS_ADDRESS_PING_RATE_PER_S": "1000000",
               "GEOPUSH_DATABASE_POOL_SIZE": "20",
               # No outcome may depend on the hour the benchmark runs.
               "GEOPUSH_CAMPAIGNS_QUIET_HOURS_START": "00:00",
               "GEOPUSH_CAMPAIGNS_QUIET_HOURS_END": "00:00",
               "GEOPUSH_FCM_CREDENTIALS_FILE": str(creds), "GEOPUSH_FCM_ENDPOINT": emu,
               "GEOPUSH_FCM_TRANSPORT": self.args.transport}
        self.procs.append(subprocess.Popen([sys.executable, "-m", "geopush", "serve"],
                                           env=env, cwd=self.tmp, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL))
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as s:
            for _ in range(600):
                try:
                    async with s.get(f"{base}/readyz") as r:
                        if r.status == 200:
                            return base, emu, creds
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("geopush serve did not get ready")

    async def setup(self, base: str) -> list[str]:
        """One store, its 150 m circle, an active enter offer; N consenting devices."""
        async with aiohttp.ClientSession() as s:
            mk = (await call(s, "POST", f"{base}/v1/keys", ADMIN,
                             {"role": "marketer", "name": "bench"}))["key"]
            store = await call(s, "POST", f"{base}/v1/stores", mk, {
                "external_id": "S-bench", "name": "Store", "timezone": "UTC",
                "location": {"lat": STORE_LAT, "lon": STORE_LON}})
            fence = await call(s, "POST", f"{base}/v1/geofences", mk, {
                "name": "door", "store_id": store["id"],
                "geometry": {"type": "Circle", "center": [STORE_LON, STORE_LAT],
                             "radius_m": 150}})
            await call(s, "POST", f"{base}/v1/offers", mk, {
                "name": "Coffee", "trigger": "enter", "message": MESSAGE, "ttl_s": 900,
                "geofence_ids": [fence["id"]]})
        tokens = [f"dev_enter_{i}_{uuid.uuid4().hex}" for i in range(self.args.phones)]
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.copy_records_to_table(
                "devices", records=[
                    (uuid.uuid4(), hashlib.sha256(t.encode()).digest(), f"fcm-enter-{i}",
                     "android", "en", "UTC", True, True) for i, t in enumerate(tokens)],
                columns=["device_id", "token_hash", "fcm_token", "platform", "locale",
                         "timezone", "consent_location", "consent_push"])
        finally:
            await conn.close()
        return tokens

    async def pushes(self, emu: str, n: int, within_s: float) -> dict[str, float]:
        """Wait for `n` pushes at the emulator; the time each token's first arrived."""
        deadline = time.perf_counter() + within_s
        got: dict[str, float] = {}
        async with aiohttp.ClientSession() as s:
            while True:
                async with s.get(f"{emu}/messages") as r:
                    items = (await r.json())
                items = items.get("messages", items) if isinstance(items, dict) else items
                for m in items:
                    token = m["message"].get("token")
                    at = datetime.fromisoformat(m["received_at"].replace("Z", "+00:00"))
                    got.setdefault(token, at.timestamp())
                if len(got) >= n or time.perf_counter() > deadline:
                    return got
                await asyncio.sleep(0.5)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phones", type=int, default=3000)
    ap.add_argument("--clients", type=int, default=128, help="pings in flight at once")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--transport", default="aiohttp")
    ap.add_argument("--within", type=float, default=600.0, help="give up after (s)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    run = Run(args)
    try:
        base, emu, creds = await run.start()
        tokens = await run.setup(base)
        await asyncio.sleep(1.0)
        started = machine()
        load0 = os.getloadavg()[0]
        sent = await enter_all(base, tokens, args.clients)
        ok = sum(1 for v in sent["statuses"].values() if v == 202)
        got = await run.pushes(emu, ok, args.within)
        load1 = os.getloadavg()[0]
        conn = await asyncpg.connect(run.dsn)
        try:
            n_sent, (e2s50, e2s99) = await conn.fetchrow(_EVENT_TO_SEND)
            counts = dict(await conn.fetch(
                "SELECT outcome, count(*) FROM decisions GROUP BY outcome"))
        finally:
            await conn.close()
        first, last = min(got.values()), max(got.values())
        span = last - sent["started"]
        per_phone = [got[f"fcm-enter-{i}"] - t for i, t in sent["sent_at"].items()
                     if f"fcm-enter-{i}" in got]
        bare = await bare_client(args.phones, emu, creds)
        rate = len(got) / span
        print(f"{args.phones} phones: {ok} pings accepted in "
              f"{sent['answered'] - sent['started']:.1f} s; {len(got)} pushes, the last "
              f"{span:.1f} s after the first ping ({rate:,.0f} msg/s); first push after "
              f"{first - sent['started']:.2f} s; ping → push p50 "
              f"{pct(per_phone, 0.5) * 1000:.0f} ms p99 {pct(per_phone, 0.99) * 1000:.0f} ms;"
              f" event → sent ({n_sent}) p50 {e2s50 * 1000:.0f} ms p99 {e2s99 * 1000:.0f} ms;"
              f" decisions {counts}; peer bare aiohttp {bare:,.0f} msg/s; load average "
              f"{load0:.1f} → {load1:.1f}", flush=True)
    finally:
        run.close()
    rows = [
        ["pings accepted (202)", f"{ok:,} of {args.phones:,}"],
        ["all pings answered after", f"{sent['answered'] - sent['started']:.1f} s"],
        ["first push at the emulator after", f"{first - sent['started']:.2f} s"],
        ["last push at the emulator after", f"{span:.1f} s"],
        ["pushes received", f"{len(got):,}"],
        ["**messages/s, first ping → last push**", f"**{rate:,.0f}**"],
        ["ping sent → push at the emulator, p50 / p99",
         f"{pct(per_phone, 0.5) * 1000:,.0f} / {pct(per_phone, 0.99) * 1000:,.0f} ms"],
        ["event → FCM accepted (`sent_at − events.created_at`), p50 / p99",
         f"{e2s50 * 1000:,.0f} / {e2s99 * 1000:,.0f} ms"],
        ["peer: bare aiohttp client, same emulator, no database", f"{bare:,.0f} msg/s"],
        ["**ratio** geopush end to end ÷ peer", f"**{rate / bare:.2f}**"],
    ]
    body = "\n".join([
        f"Run: {started}; load average {load1:.1f} at the end.", "", "```", command(),
        "```", "",
        f"`geopush serve` ({args.workers} worker(s), sender on, `{args.transport}` transport)"
        " on embedded PostgreSQL and `geopush fcm-emulator` in its own process. One store,"
        f" a 150 m circle, an active `enter` offer; {args.phones:,} devices with push consent."
        f" Every phone sends one ping at the store's centre, all at once ({args.clients}"
        " requests in flight): each ping is an enter, a decision and a queued delivery.", "",
        table(["", ""], rows),
    ])
    if not args.no_write:
        write_section("enter", "Delivery end to end: phones enter one store at once —"
                      " `scripts/bench_enter.py`", body)


if __name__ == "__main__":
    asyncio.run(main())
