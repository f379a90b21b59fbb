"""Retention (SPEC section 10): raw pings are kept `ping_retention_days`, then deleted.

`pings` is partitioned by the hour of `ts` (migration 0007): an expired hour is dropped as a
whole partition, which costs the same for a thousand rows as for a billion, instead of being
deleted row by row. Only rows in the default partition (hours no partition covered when they
arrived) are deleted one by one. The same hourly run creates the next day's partitions, so
the default partition normally stays empty. Each step holds an advisory lock, so every node
may run this at once.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import asyncpg

from geopush.config import Config

_BATCH = 50_000
_LOCK_KEY = 0x7069_6E67  # "ping": one advisory lock for partition maintenance
# Partitions are created this far ahead (a ping may be up to `future_skew_s` ahead of now,
# and the job runs every hour).
AHEAD = timedelta(days=1)
_PARTITION = re.compile(r"^pings_(\d{8})h(\d{2})$")
_PARTITIONS = """
SELECT c.relname, c.reltuples FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'pings'::regclass
"""
_DELETE_DEFAULT = """
WITH gone AS (DELETE FROM pings_default WHERE ctid IN (SELECT ctid FROM pings_default
    WHERE ts < $1 LIMIT $2) RETURNING 1)
SELECT count(*) FROM gone
"""


def partition_hour(name: str) -> datetime | None:
    """The hour an hourly partition of `pings` starts at, from its name; None otherwise."""
    match = _PARTITION.match(name)
    if match is None:
        return None
    return datetime.strptime(match.group(1) + match.group(2), "%Y%m%d%H").replace(tzinfo=UTC)


async def ensure_ping_partitions(pool: asyncpg.Pool, now: datetime | None = None) -> int:
    """Create the hourly partitions of `pings` from the current hour to a day ahead."""
    now = now or datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        made: int = await conn.fetchval(
            "SELECT geopush_ping_partitions($1, $2)", now - timedelta(hours=1), now + AHEAD
        )
    return made


async def drop_expired_partitions(pool: asyncpg.Pool, cutoff: datetime) -> int:
    """Drop the hourly partitions wholly before `cutoff`; return the rows they held.

    The row count is the planner's estimate where statistics exist (counting a large
    partition would cost what dropping it saves), else an exact count.
    """
    total = 0
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        # Dropping a partition locks `pings` briefly; never queue ingest behind a long wait.
        await conn.execute("SET LOCAL lock_timeout = '5s'")
        for row in await conn.fetch(_PARTITIONS):
            hour = partition_hour(row["relname"])
            if hour is None or hour + timedelta(hours=1) > cutoff:
                continue
            name = row["relname"]
            rows = int(row["reltuples"])
            if rows < 0:  # never analysed: count it
                rows = await conn.fetchval(f'SELECT count(*) FROM "{name}"')
            await conn.execute(f'DROP TABLE "{name}"')
            total += rows
    return total


async def apply_retention(pool: asyncpg.Pool, config: Config) -> int:
    """Drop or delete expired pings, delete old idempotency answers, create the partitions
    ahead; return the pings removed."""
    days = config.privacy.ping_retention_days
    now = datetime.now(UTC)
    cutoff = now - timedelta(days=days)
    total = await drop_expired_partitions(pool, cutoff)
    while True:
        deleted = await pool.fetchval(_DELETE_DEFAULT, cutoff, _BATCH)
        total += deleted
        if deleted < _BATCH:
            break
    await pool.execute(
        "DELETE FROM ping_batches WHERE created_at < now() - make_interval(days => $1)",
        min(days, 7),
    )
    await ensure_ping_partitions(pool, now)
    return total
