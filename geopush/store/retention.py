"""Retention (SPEC section 10): raw pings are kept `ping_retention_days`, then deleted."""

from __future__ import annotations

import asyncpg

from geopush.config import Config

_BATCH = 50_000


async def apply_retention(pool: asyncpg.Pool, config: Config) -> int:
    """Delete expired pings and idempotency answers in bounded chunks; return pings deleted."""
    days = config.privacy.ping_retention_days
    total = 0
    while True:
        deleted = await pool.fetchval(
            "WITH gone AS (DELETE FROM pings WHERE ctid IN (SELECT ctid FROM pings"
            " WHERE ts < now() - make_interval(days => $1) LIMIT $2) RETURNING 1)"
            " SELECT count(*) FROM gone", days, _BATCH,
        )
        total += deleted
        if deleted < _BATCH:
            break
    await pool.execute(
        "DELETE FROM ping_batches WHERE created_at < now() - make_interval(days => $1)",
        min(days, 7),
    )
    return total
