#!/usr/bin/env python3
"""Memory and disk: the resident size of a geofence index with 100,000 fences, and the
PostgreSQL table and index sizes of 1,000,000 devices' state (the schema of every
migration), with bytes per row for the capacity arithmetic of docs/SCALING.md.

    .venv/bin/python scripts/bench_storage.py [--devices 1000000] [--no-write]

State per device: the device row (token hash, FCM token, last fix), one ping (the hourly
partition it lands in), and for one device in ten an open visit, an event, a decision and
a queued delivery. Sizes are `pg_total_relation_size` after VACUUM ANALYZE.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geopush.geo.geometry import parse_geometry
from geopush.geo.index import GeofenceIndex
from geopush.store.database import embedded_server, ensure_database
from geopush.store.migrations import migrate
from scripts.bench_geo import fences
from scripts.bench_report import command, machine, table, write_section

FILL = """
INSERT INTO devices (device_id, token_hash, fcm_token, platform, locale, timezone,
                     consent_location, consent_push, last_ping_ts, last_lat, last_lon)
SELECT gen_random_uuid(), sha256(i::text::bytea), 'fcm-token-' || md5(i::text) || md5(i::text),
       'android', 'fr-CA', 'America/Montreal', true, true, now(),
       45.5 + random() / 10, -73.6 + random() / 10
FROM generate_series(1, $1) AS i;
"""
FILL_REST = [
    """INSERT INTO pings (device_id, ts, lat, lon, accuracy_m, speed_mps)
       SELECT device_id, now() - random() * interval '50 minutes', last_lat, last_lon, 12, 1.2
       FROM devices""",
    """INSERT INTO visits (device_id, geofence_id, entered_at, dwell_fired, last_inside)
       SELECT device_id, gen_random_uuid(), now(), false, true FROM devices
       WHERE get_byte(token_hash, 0) < 26""",
    """INSERT INTO events (event_id, device_id, geofence_id, store_id, type, ts, source)
       SELECT gen_random_uuid(), device_id, geofence_id, gen_random_uuid(), 'enter',
              entered_at, 'ping' FROM visits""",
    """INSERT INTO decisions (decision_id, event_id, device_id, offer_id, store_id, outcome,
                              decided_at)
       SELECT gen_random_uuid(), event_id, device_id, gen_random_uuid(), store_id, 'queued',
              now() FROM events""",
    """INSERT INTO deliveries (delivery_id, decision_id, event_id, device_id, offer_id,
                               store_id, geofence_id, trigger, event_ts, status, expires_at,
                               title, body)
       SELECT gen_random_uuid(), decision_id, event_id, device_id, offer_id, store_id,
              gen_random_uuid(), 'enter', now(), 'queued', now() + interval '15 minutes',
              'Bonjour Marie', 'Un café offert chez Cafe du Coin' FROM decisions""",
]
def index_rss(n: int) -> tuple[float, float]:
    """(MiB the index of n fences adds to this process, seconds to build it)."""
    geoms = fences(n)
    parsed = [(gid, parse_geometry(g)) for gid, g in geoms.items()]
    del geoms
    gc.collect()
    before = psutil.Process().memory_info().rss
    t = time.perf_counter()
    index = GeofenceIndex.build(parsed)
    index.locate(np.array([116.4]), np.array([39.9]), 20.0)  # the grid for the 20 m buffer
    index.locate(np.full(20, 116.4), np.full(20, 39.9), 20.0)
    seconds = time.perf_counter() - t
    gc.collect()
    return (psutil.Process().memory_info().rss - before) / 2**20, seconds


async def sizes(dsn: str, devices: int) -> list[list[object]]:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        await conn.execute(FILL, devices)
        for statement in FILL_REST:
            await conn.execute(statement)
        await conn.execute("VACUUM ANALYZE")
        tables = ["devices", "pings", "visits", "events", "decisions", "deliveries"]
        rows = []
        for t in tables:
            count = await conn.fetchval(f"SELECT count(*) FROM {t}")
            table_bytes = await conn.fetchval(
                "SELECT coalesce(sum(pg_table_size(oid)), 0) FROM pg_class"
                " WHERE oid = to_regclass($1) OR oid IN"
                " (SELECT inhrelid FROM pg_inherits WHERE inhparent = to_regclass($1))", t)
            index_bytes = await conn.fetchval(
                "SELECT coalesce(sum(pg_indexes_size(oid)), 0) FROM pg_class"
                " WHERE oid = to_regclass($1) OR oid IN"
                " (SELECT inhrelid FROM pg_inherits WHERE inhparent = to_regclass($1))", t)
            table_bytes, index_bytes = float(table_bytes), float(index_bytes)
            rows.append([t, count, table_bytes / 2**20, index_bytes / 2**20,
                         (table_bytes + index_bytes) / max(count, 1)])
        return rows
    finally:
        await conn.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=1_000_000)
    ap.add_argument("--fences", type=int, default=100_000)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    started = machine()
    rss, build_s = index_rss(args.fences)
    print(f"index of {args.fences} fences: +{rss:.0f} MiB RSS, built in {build_s:.1f} s")
    tmp = Path(tempfile.mkdtemp(prefix="gpstore"))
    server = embedded_server(tmp)
    try:
        dsn = ensure_database(server, "bench")
        rows = asyncio.run(sizes(dsn, args.devices))
    finally:
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    for r in rows:
        print(r)
    body = "\n".join([
        f"Run: {started}.", "", "```", command(), "```", "",
        f"- Geofence index of {args.fences:,} fences (2/3 circles, 1/3 squares) with its"
        f" grid for the 20 m buffer: **{rss:.0f} MiB** resident in the process, built in"
        f" {build_s:.1f} s (each worker process holds one).",
        f"- {args.devices:,} devices' state in PostgreSQL (one ping each; one in ten with an"
        " open visit, an event, a decision and a queued delivery), after VACUUM ANALYZE:", "",
        table(["table", "rows", "table MiB", "indexes MiB", "bytes/row (with indexes)"], rows),
    ])
    if not args.no_write:
        write_section("storage", "Memory and storage — `scripts/bench_storage.py`", body)


if __name__ == "__main__":
    main()
