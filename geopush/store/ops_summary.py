"""The ops dashboard's summary (`GET /v1/ops/summary`), read and shaped here, off the handler.

It aggregates from PostgreSQL in a handful of queries inside one read-only snapshot, so its
numbers agree with each other, and adds this process's counters of what is never stored
(rejected pings, events since start). It names no customer, device token or coordinate:
ids, counts and reason codes only.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from geopush import metrics
from geopush.codes import DeliveryStatus, Outcome
from geopush.timefmt import format_ts, format_ts_or_none

RECENT_FAILURES = 20
MAX_OFFERS = 200
# A dashboard refreshing every few seconds must never hold a connection for long.
_STATEMENT_TIMEOUT = "5s"

_OUTBOX = """
SELECT count(*) AS depth,
       count(*) FILTER (WHERE next_attempt_at <= now()) AS due,
       count(*) FILTER (WHERE lease_until > now()) AS in_flight,
       min(created_at) AS oldest
FROM deliveries WHERE status = 'queued'
"""
# One pass over the window's deliveries gives the status/reason table and each offer's
# delivery funnel; the groups are few (offers x statuses x reasons), the rows are not.
_DELIVERIES = """
SELECT offer_id, status, coalesce(reason, '') AS reason, count(*) AS n,
       count(opened_at) AS opened, count(redeemed_at) AS redeemed
FROM deliveries WHERE created_at >= $1
GROUP BY offer_id, status, coalesce(reason, '')
"""
_DECISIONS = """
SELECT offer_id, outcome, coalesce(reason, '') AS reason, count(*) AS n
FROM decisions WHERE decided_at >= $1
GROUP BY offer_id, outcome, coalesce(reason, '')
"""
_RECENT_FAILURES = """
SELECT delivery_id, offer_id, reason, attempts, created_at, finished_at, last_error
FROM deliveries WHERE status = 'failed'
ORDER BY finished_at DESC NULLS LAST LIMIT $1
"""
_OFFERS = """
SELECT offer_id, definition ->> 'name' AS name, trigger, status,
       (definition ->> 'priority')::integer AS priority, created_at
FROM offers WHERE deleted_at IS NULL ORDER BY created_at, offer_id LIMIT $1
"""
_GEOFENCES = """
SELECT count(*) AS total, count(*) FILTER (WHERE enabled) AS enabled FROM geofences
"""
_PINGS = "SELECT count(*) FROM pings WHERE received_at >= $1"


def _iso(value: datetime | None) -> str | None:
    return format_ts_or_none(value)


def _ping_counts() -> dict[str, Any]:
    """Accepted and rejected pings since the service started (rejected pings are never
    stored, so only the counters know them)."""
    counts = metrics.counter_totals("geopush_pings", "result", "reason")
    rejected = {
        key.split("/", 1)[1]: int(value)
        for key, value in counts.items() if key.startswith("rejected/")
    }
    accepted = int(sum(v for k, v in counts.items() if k.startswith("accepted/")))
    return {"accepted": accepted, "rejected": rejected,
            "rejected_total": sum(rejected.values())}


def _new_funnel() -> dict[str, Any]:
    return {
        "triggered": 0, "suppressed": {}, "control": 0, "queued": 0,
        "deliveries": {s.value: 0 for s in DeliveryStatus},
        "failed": {}, "opened": 0, "redeemed": 0,
    }


async def ops_summary(pool: asyncpg.Pool, now: datetime, hours: int,
                      geofences_loaded: int) -> dict[str, Any]:
    """Outbox, deliveries, failures, offer funnels, geofences and pings, as the dashboard
    reads them: deliveries and decisions over the last `hours` before `now`; the outbox,
    recent failures and geofences as of now (`geofences_loaded`: this process's index);
    `pings.since_start` and `events.since_start` since the service started, over all its
    workers.
    """
    since = now - timedelta(hours=hours)
    async with pool.acquire() as conn, conn.transaction(
        isolation="repeatable_read", readonly=True
    ):
        await conn.execute("SELECT set_config('statement_timeout', $1, true)",
                           _STATEMENT_TIMEOUT)
        outbox = await conn.fetchrow(_OUTBOX)
        delivery_rows = await conn.fetch(_DELIVERIES, since)
        decision_rows = await conn.fetch(_DECISIONS, since)
        failures = await conn.fetch(_RECENT_FAILURES, RECENT_FAILURES)
        offer_rows = await conn.fetch(_OFFERS, MAX_OFFERS)
        fences = await conn.fetchrow(_GEOFENCES)
        pings_stored = await conn.fetchval(_PINGS, since)

    by_status = {s.value: 0 for s in DeliveryStatus}
    by_reason: dict[tuple[str, str], int] = defaultdict(int)
    funnels: dict[str, dict[str, Any]] = defaultdict(_new_funnel)
    opened = redeemed = 0
    for r in delivery_rows:
        status, reason, n = r["status"], r["reason"], r["n"]
        by_status[status] = by_status.get(status, 0) + n
        by_reason[(status, reason)] += n
        opened += r["opened"]
        redeemed += r["redeemed"]
        f = funnels[str(r["offer_id"])]
        f["deliveries"][status] = f["deliveries"].get(status, 0) + n
        if status == DeliveryStatus.FAILED:
            f["failed"][reason] = f["failed"].get(reason, 0) + n
        f["opened"] += r["opened"]
        f["redeemed"] += r["redeemed"]
    for r in decision_rows:
        f = funnels[str(r["offer_id"])]
        f["triggered"] += r["n"]
        if r["outcome"] == Outcome.SUPPRESSED:
            f["suppressed"][r["reason"]] = f["suppressed"].get(r["reason"], 0) + r["n"]
        elif r["outcome"] == Outcome.CONTROL:
            f["control"] += r["n"]
        elif r["outcome"] == Outcome.QUEUED:
            f["queued"] += r["n"]

    oldest = outbox["oldest"]
    body = {
        "generated_at": format_ts(now),
        "window_hours": hours,
        "since": format_ts(since),
        "outbox": {
            "depth": outbox["depth"],
            "due": outbox["due"],
            "in_flight": outbox["in_flight"],
            "oldest_queued_at": _iso(oldest),
            "oldest_age_s": None if oldest is None else (now - oldest).total_seconds(),
        },
        "deliveries": {
            "total": sum(by_status.values()),
            "by_status": by_status,
            "by_reason": [
                {"status": s, "reason": reason or None, "count": n}
                for (s, reason), n in sorted(by_reason.items(), key=lambda kv: -kv[1])
            ],
            "opened": opened,
            "redeemed": redeemed,
        },
        "recent_failures": [
            {
                "id": str(r["delivery_id"]),
                "offer_id": str(r["offer_id"]),
                "reason": r["reason"],
                "attempts": r["attempts"],
                "created_at": _iso(r["created_at"]),
                "finished_at": _iso(r["finished_at"]),
                "last_error": r["last_error"],
            }
            for r in failures
        ],
        "offers": [
            {
                "id": str(r["offer_id"]),
                "name": r["name"],
                "trigger": r["trigger"],
                "status": r["status"],
                "priority": r["priority"],
                "funnel": funnels.get(str(r["offer_id"]), _new_funnel()),
            }
            for r in offer_rows
        ],
        "geofences": {
            "loaded": geofences_loaded,
            "enabled": fences["enabled"],
            "total": fences["total"],
        },
        "pings": {"stored": pings_stored, "since_start": _ping_counts()},
        "events": {"since_start": {
            k: int(v) for k, v in metrics.counter_totals("geopush_events", "type").items()
        }},
    }
    return body
