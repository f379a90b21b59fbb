"""Retention (SPEC section 10): personal data is kept `[privacy] ping_retention_days`.

Past that age go: raw pings, a device's last known position (`devices.last_lat/last_lon`,
whose `last_ping_ts` stays: a time is not a place, and ingest still orders pings by it), the
idempotency answers of ping batches (at most a week: a client retries within minutes), and
the rate limits' finished windows, consent changes past `[privacy] consent_log_retention_days`
(each device's latest stays), suppressed decisions past `[privacy] decision_retention_days`
(folded into per-day counts that offer stats add back), visit events past
`[privacy] event_retention_days` (folded into per-day counts per geofence and type, in
`events_daily`), and spent customer proofs once they could no longer link anyway.

`pings` is partitioned by the hour of `ts` (migration 0007): an expired hour is dropped as a
whole partition, which costs the same for a thousand rows as for a billion, instead of being
deleted row by row. Only rows in the default partition (hours no partition covered when they
arrived) are deleted one by one. Each round also creates the next day's partitions, so the
default partition normally stays empty.

Every node runs this (see `geopush.background`). A session advisory lock lets one node at
a time do a round; the others skip theirs. Every step is also idempotent (bounded deletes,
drops and creations that check first), so a round cut short (a crash, a lost lock) is
simply finished by the next.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from geopush.config import Config
from geopush.store.link_proofs import forget_spent_proofs
from geopush.store.rate_windows import forget_old_windows

log = logging.getLogger(__name__)

_LOCK_KEY = 0x6765_6F72  # "geor": retention's advisory lock
_BATCH = 50_000
# Answers to repeated batch_ids are kept at most this long (a retry comes within minutes).
_BATCH_ANSWER_DAYS = 7
# Finished rate-limit windows are kept this long after they end (`forget_old_windows` is
# given this plus `[limits] register_window_s`, the age of a window's start when it ends).
_RATE_WINDOW_KEEP_S = 3600.0
# Hourly partitions of `pings` are created this far ahead (the round runs every hour).
PARTITIONS_AHEAD = timedelta(days=1)
_PARTITION = re.compile(r"^pings_(\d{8})h(\d{2})$")

_PARTITIONS = """
SELECT c.relname, c.reltuples FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'pings'::regclass
"""
_DELETE_DEFAULT_PINGS = """
WITH gone AS (DELETE FROM pings_default p USING (
    SELECT device_id, ts FROM pings_default
    WHERE ts < now() - make_interval(days => $1) LIMIT $2) AS old
    WHERE p.device_id = old.device_id AND p.ts = old.ts RETURNING 1)
SELECT count(*) FROM gone
"""
# A device whose batch holds its row meanwhile is waited for, then checked again: its fresh
# position is kept. (No SKIP LOCKED: on Citus it needs the distribution column.)
_FORGET_POSITIONS = """
WITH gone AS (
    UPDATE devices d SET last_lat = NULL, last_lon = NULL
    FROM (SELECT device_id FROM devices
          WHERE last_ping_ts < now() - make_interval(days => $1)
            AND (last_lat IS NOT NULL OR last_lon IS NOT NULL)
          LIMIT $2) AS old
    WHERE d.device_id = old.device_id AND d.last_ping_ts < now() - make_interval(days => $1)
    RETURNING 1)
SELECT count(*) FROM gone
"""
_DELETE_BATCH_ANSWERS = """
WITH gone AS (DELETE FROM ping_batches b USING (
    SELECT device_id, batch_id FROM ping_batches
    WHERE created_at < now() - make_interval(days => $1) LIMIT $2) AS old
    WHERE b.device_id = old.device_id AND b.batch_id = old.batch_id RETURNING 1)
SELECT count(*) FROM gone
"""

# Consent changes past their retention, each device's latest kept (what it consents to now).
_DELETE_CONSENT_LOG = """
WITH gone AS (DELETE FROM consent_log c USING (
    SELECT l.device_id, l.id FROM consent_log l
    WHERE l.changed_at < now() - make_interval(days => $1)
      AND EXISTS (SELECT 1 FROM consent_log n WHERE n.device_id = l.device_id AND n.id > l.id)
    LIMIT $2) AS old
    WHERE c.device_id = old.device_id AND c.id = old.id RETURNING 1)
SELECT count(*) FROM gone
"""

# Suppressed decisions past their retention, folded into per-day counts in the same statement.
# The events of one chunk are counted distinct within it (an event has one decision per
# offer, so chunks almost never split one).
_PRUNE_SUPPRESSED = """
WITH gone AS (
    DELETE FROM decisions d USING (
        SELECT device_id, decision_id FROM decisions
        WHERE outcome = 'suppressed' AND decided_at < now() - make_interval(days => $1)
        LIMIT $2) AS old
    WHERE d.device_id = old.device_id AND d.decision_id = old.decision_id
    RETURNING d.offer_id, d.event_id, coalesce(d.reason, 'unknown') AS reason,
              (d.decided_at AT TIME ZONE 'UTC')::date AS day
), folded AS (
    INSERT INTO decisions_pruned (offer_id, day, reason, decisions, events)
    SELECT offer_id, day, reason, count(*),
           count(DISTINCT event_id) + count(*) FILTER (WHERE event_id IS NULL)
    FROM gone GROUP BY offer_id, day, reason
    ON CONFLICT (offer_id, day, reason) DO UPDATE
    SET decisions = decisions_pruned.decisions + EXCLUDED.decisions,
        events = decisions_pruned.events + EXCLUDED.events
)
SELECT count(*) FROM gone
"""

# Service quality (SPEC section 14): answers keep their scores for the gap but lose the
# comment and who gave them; cases past their recovery window lose who they were about;
# finished store alerts (names, comments) go.
_FORGET_ANSWERERS = """
WITH old AS (
    SELECT response_id FROM feedback_responses
    WHERE created_at < now() - make_interval(days => $1)
      AND (device_id IS NOT NULL OR customer_id IS NOT NULL OR comment IS NOT NULL)
    LIMIT $2 FOR UPDATE SKIP LOCKED
), done AS (
    UPDATE feedback_responses r SET device_id = NULL, customer_id = NULL, comment = NULL
    FROM old WHERE r.response_id = old.response_id RETURNING 1
)
SELECT count(*) FROM done
"""
_FORGET_CASE_PEOPLE = """
WITH old AS (
    SELECT case_id FROM service_cases
    WHERE opened_at < now() - make_interval(days => $1)
      AND (device_id IS NOT NULL OR customer_id IS NOT NULL)
    LIMIT $2 FOR UPDATE SKIP LOCKED
), done AS (
    UPDATE service_cases c SET device_id = NULL, customer_id = NULL
    FROM old WHERE c.case_id = old.case_id RETURNING 1
)
SELECT count(*) FROM done
"""
_DELETE_ALERTS = """
WITH done AS (
    DELETE FROM store_alerts WHERE alert_id IN (
        SELECT alert_id FROM store_alerts
        WHERE status <> 'queued' AND created_at < now() - make_interval(days => $1)
        LIMIT $2)
    RETURNING 1
)
SELECT count(*) FROM done
"""
# Visit events past their retention, folded into per-day counts in the same statement.
_PRUNE_EVENTS = """
WITH gone AS (
    DELETE FROM events e USING (
        SELECT device_id, event_id FROM events
        WHERE created_at < now() - make_interval(days => $1) LIMIT $2) AS old
    WHERE e.device_id = old.device_id AND e.event_id = old.event_id
    RETURNING e.geofence_id, e.type, e.store_id, (e.ts AT TIME ZONE 'UTC')::date AS day
), folded AS (
    INSERT INTO events_daily (day, geofence_id, type, store_id, events)
    SELECT day, geofence_id, type, (array_agg(store_id))[1], count(*)
    FROM gone GROUP BY day, geofence_id, type
    ON CONFLICT (day, geofence_id, type) DO UPDATE
    SET events = events_daily.events + EXCLUDED.events
)
SELECT count(*) FROM gone
"""


@dataclass(frozen=True)
class RetentionRound:
    """What one round removed (all zero when another node held the lock)."""

    pings: int = 0
    positions: int = 0
    batch_answers: int = 0
    rate_windows: int = 0
    link_proofs: int = 0
    consent_log: int = 0
    decisions: int = 0
    events: int = 0
    partitions_created: int = 0
    skipped: bool = False
    feedback_answers: int = 0
    service_cases: int = 0
    store_alerts: int = 0


async def apply_retention(pool: asyncpg.Pool, config: Config) -> int:
    """Apply retention once; return the number of pings deleted (0 if another node is at it).

    The one entry point the background loop and the tests call.
    """
    return (await retention_round(pool, config)).pings


async def retention_round(pool: asyncpg.Pool, config: Config) -> RetentionRound:
    days = config.privacy.ping_retention_days
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK_KEY):
            return RetentionRound(skipped=True)
        try:
            now = datetime.now(UTC)
            pings = await drop_expired_partitions(conn, now - timedelta(days=days))
            done = RetentionRound(
                pings=pings + await _chunked(conn, _DELETE_DEFAULT_PINGS, days),
                positions=await _chunked(conn, _FORGET_POSITIONS, days),
                batch_answers=await _chunked(conn, _DELETE_BATCH_ANSWERS,
                                             min(days, _BATCH_ANSWER_DAYS)),
                rate_windows=await forget_old_windows(
                    conn, _RATE_WINDOW_KEEP_S + config.limits.register_window_s),
                link_proofs=await forget_spent_proofs(conn, now, _BATCH),
                consent_log=await _chunked(conn, _DELETE_CONSENT_LOG,
                                           config.privacy.consent_log_retention_days),
                decisions=await _chunked(conn, _PRUNE_SUPPRESSED,
                                         config.privacy.decision_retention_days),
                events=await _chunked(conn, _PRUNE_EVENTS,
                                      config.privacy.event_retention_days),
                partitions_created=await ensure_ping_partitions(conn, now),
                feedback_answers=await _chunked(conn, _FORGET_ANSWERERS,
                                                config.feedback.comment_retention_days),
                # Once the recovery window has passed, who the case was about is not needed.
                service_cases=await _chunked(conn, _FORGET_CASE_PEOPLE,
                                             config.feedback.recovery_window_days + 1),
                store_alerts=await _chunked(conn, _DELETE_ALERTS,
                                            config.alerts.retention_days),
            )
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    if done.pings or done.positions:
        log.info("retention: %d pings deleted, %d last positions forgotten",
                 done.pings, done.positions)
    return done


def partition_hour(name: str) -> datetime | None:
    """The hour an hourly partition of `pings` starts at, from its name; None otherwise."""
    match = _PARTITION.match(name)
    if match is None:
        return None
    return datetime.strptime(match.group(1) + match.group(2), "%Y%m%d%H").replace(tzinfo=UTC)


async def ensure_ping_partitions(conn: asyncpg.Connection, now: datetime) -> int:
    """Create the hourly partitions of `pings` from the current hour to a day ahead."""
    made: int = await conn.fetchval("SELECT geopush_ping_partitions($1, $2)",
                                    now - timedelta(hours=1), now + PARTITIONS_AHEAD)
    return made


async def drop_expired_partitions(conn: asyncpg.Connection, cutoff: datetime) -> int:
    """Drop the hourly partitions wholly before `cutoff`; return the rows they held.

    The row count is the planner's estimate where statistics exist (counting a large
    partition would cost what dropping it saves), else an exact count. Dropping a partition
    locks `pings` for a moment; a 5 s lock timeout keeps ingest from queueing behind a long
    wait (the partition is then dropped by a later round).
    """
    total = 0
    for row in await conn.fetch(_PARTITIONS):
        hour = partition_hour(row["relname"])
        if hour is None or hour + timedelta(hours=1) > cutoff:
            continue
        name = row["relname"]
        try:
            async with conn.transaction():
                await conn.execute("SET LOCAL lock_timeout = '5s'")
                rows = int(row["reltuples"])
                if rows < 0:  # never analysed: count it
                    rows = await conn.fetchval(f'SELECT count(*) FROM "{name}"')
                await conn.execute(f'DROP TABLE IF EXISTS "{name}"')
        except asyncpg.LockNotAvailableError:
            log.warning("retention: %s busy, dropped by a later round", name)
            continue
        total += rows
    return total


async def _chunked(conn: asyncpg.Connection, statement: str, days: int) -> int:
    """Run a bounded delete until a chunk comes back short; return the rows removed."""
    total = 0
    while True:
        n = await conn.fetchval(statement, days, _BATCH)
        total += n
        if n < _BATCH:
            return total
