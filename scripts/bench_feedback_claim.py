#!/usr/bin/env python3
"""The sender's claim with many feedback requests waiting their delay (SPEC section 14).

A feedback request is queued `[feedback] delay_s` after its exit. geopush stores that
not-before time as the delivery's own `next_attempt_at`, so the sender's claim stays one
range scan of the `deliveries_due` index that stops at the first row not yet due. The peer,
in the same go and on the same rows, is the design the issue warns against: the delay
computed at claim time (`next_attempt_at` left at the exit, the claim filtering
`trigger = 'feedback' AND event_ts + delay > now()` out), so every waiting request is read
again by every claim.

Embedded PostgreSQL; `--waiting` feedback requests whose visits ended 5 minutes ago (due in
5 more), 50 deliveries due now; each claim runs the statement and rolls back, `--claims`
times; reported: median and p90 claim time.

    .venv/bin/python scripts/bench_feedback_claim.py [--waiting 100000] [--claims 200] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geopush.delivery.outbox import _CLAIM
from geopush.store.database import embedded_server, ensure_database
from geopush.store.migrations import migrate
from scripts.bench_report import command, machine, table, write_section

FILL = """
INSERT INTO deliveries (delivery_id, device_id, offer_id, trigger, event_ts, status,
                        next_attempt_at, expires_at)
SELECT gen_random_uuid(), gen_random_uuid(), gen_random_uuid(),
       CASE WHEN i <= 50 THEN 'enter' ELSE 'feedback' END,
       CASE WHEN i <= 50 THEN now() - interval '1 minute' ELSE now() - interval '5 minutes' END,
       'queued',
       CASE WHEN i <= 50 THEN now() - interval '1 second'
            WHEN $2 THEN now() + interval '5 minutes'   -- the exit + 600 s, stored
            ELSE now() - interval '5 minutes' END,      -- the exit; the delay computed later
       now() + interval '2 hours'
FROM generate_series(1, $1::int + 50) AS i
"""
# The peer's claim: the delay computed here instead of stored.
PEER_CLAIM = _CLAIM.replace(
    "WHERE status = 'queued' AND next_attempt_at <= now() AND expires_at > now()",
    "WHERE status = 'queued' AND next_attempt_at <= now() AND expires_at > now()\n"
    "      AND NOT (trigger = 'feedback' AND event_ts + interval '600 seconds' > now())", 1)


async def run(url: str, waiting: int, claims: int, stored: bool) -> tuple[float, float, int]:
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        await conn.execute(FILL, waiting, stored)
        await conn.execute("ANALYZE deliveries")
        statement = _CLAIM if stored else PEER_CLAIM
        times = []
        got = 0
        for _ in range(claims):
            tx = conn.transaction()
            await tx.start()
            started = time.perf_counter()
            got = len(await conn.fetch(statement, 50, 30.0))
            times.append((time.perf_counter() - started) * 1000)
            await tx.rollback()
        times.sort()
        return statistics.median(times), times[int(0.9 * (len(times) - 1))], got
    finally:
        await conn.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--waiting", type=int, default=100_000)
    ap.add_argument("--claims", type=int, default=200)
    ap.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    args = ap.parse_args()
    header = machine()
    tmp = Path(tempfile.mkdtemp(prefix="gpbench"))
    server = embedded_server(str(tmp))
    try:
        ours = await run(ensure_database(server, "stored"), args.waiting, args.claims, True)
        peer = await run(ensure_database(server, "computed"), args.waiting, args.claims, False)
    finally:
        server.cleanup()
    assert ours[2] == peer[2] == 50, (ours, peer)
    body = (f"Command: `{command()}`. {header}.\n\n{args.waiting:,} feedback requests waiting"
            f" their delay and 50 deliveries due; {args.claims} claims of 50 each, rolled"
            " back:\n\n"
            + table(["claim", "median ms", "p90 ms", "claimed"], [
                ["not-before stored in next_attempt_at (geopush)", ours[0], ours[1], ours[2]],
                ["peer: delay computed at claim time", peer[0], peer[1], peer[2]]])
            + f"\n\nRatio: the peer's claim takes {peer[0] / max(ours[0], 1e-9):,.0f}x as long"
            " (median); geopush's stays one index range scan whatever waits behind it.")
    print(body)
    if args.write:
        write_section("feedback-claim", "The sender's claim behind waiting feedback requests",
                      body)


if __name__ == "__main__":
    asyncio.run(main())
