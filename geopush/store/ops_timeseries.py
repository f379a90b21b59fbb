"""What the service did minute by minute (`GET /v1/ops/timeseries`), for the ops dashboard.

Every figure is counted from PostgreSQL (pings, events, decisions, deliveries), inside one
read-only snapshot, so it is the same whichever process answers and however many workers
`geopush serve --workers N` runs: the database is the one place all of them write to.
Rejected pings are never stored, so they are not here (`/metrics` counts them).

The answer is `minutes` buckets of 60 s ending with the current (partial) minute:
`{"start", "step_s", "minutes", "pings": [..], "events": {type: [..]},
"decisions": {outcome: [..]}, "sent": [..], "failed": {reason: [..]},
"cancelled": {reason: [..]}, "latency": {"p50": [..], "p99": [..], "window": {"p50",
"p99", "count"}}}`, latency being event ts → FCM accepted (seconds) of the deliveries
sent in each minute (null in a minute with none).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg

from geopush.timefmt import format_ts

_STATEMENT_TIMEOUT = "5s"

_PINGS = """
SELECT date_trunc('minute', received_at) AS m, '' AS k, count(*) AS n
FROM pings WHERE received_at >= $1 GROUP BY 1
"""
_EVENTS = """
SELECT date_trunc('minute', created_at) AS m, type AS k, count(*) AS n
FROM events WHERE created_at >= $1 GROUP BY 1, 2
"""
_DECISIONS = """
SELECT date_trunc('minute', decided_at) AS m, outcome AS k, count(*) AS n
FROM decisions WHERE decided_at >= $1 GROUP BY 1, 2
"""
# Event-to-send latency is how fast geopush answers a visit: feedback requests wait
# `[feedback] delay_s` on purpose, and a recovery answers a rating, not the visit it names,
# so neither is counted in it (they are still counted as sent).
_REACTS = "trigger NOT IN ('feedback', 'recovery')"
_SENT = """
SELECT date_trunc('minute', sent_at) AS m, '' AS k, count(*) AS n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - event_ts))
           FILTER (WHERE {reacts}) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - event_ts))
           FILTER (WHERE {reacts}) AS p99
FROM deliveries WHERE sent_at >= $1 AND status = 'sent' GROUP BY 1
""".replace("{reacts}", _REACTS)
_SENT_WINDOW = """
SELECT count(*) AS n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - event_ts))
           FILTER (WHERE {reacts}) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - event_ts))
           FILTER (WHERE {reacts}) AS p99
FROM deliveries WHERE sent_at >= $1 AND status = 'sent'
""".replace("{reacts}", _REACTS)
_ENDED = """
SELECT date_trunc('minute', finished_at) AS m, status, coalesce(reason, 'unknown') AS k,
       count(*) AS n
FROM deliveries WHERE finished_at >= $1 AND status IN ('failed', 'cancelled') GROUP BY 1, 2, 3
"""


def _bucketed(rows: list[asyncpg.Record], start: datetime, minutes: int,
              keys: tuple[str, ...] = ()) -> dict[str, list[int]]:
    """{key: [count per minute]}; `keys` are present even when zero all along."""
    out: dict[str, list[int]] = {k: [0] * minutes for k in keys}
    for r in rows:
        i = int((r["m"] - start).total_seconds() // 60)
        if 0 <= i < minutes:
            out.setdefault(r["k"], [0] * minutes)[i] += r["n"]
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


async def ops_timeseries(pool: asyncpg.Pool, now: datetime, minutes: int) -> dict[str, Any]:
    """`minutes` buckets of 60 s ending with the minute of `now`, in one snapshot."""
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    async with pool.acquire() as conn, conn.transaction(
        isolation="repeatable_read", readonly=True
    ):
        await conn.execute("SELECT set_config('statement_timeout', $1, true)",
                           _STATEMENT_TIMEOUT)
        pings = await conn.fetch(_PINGS, start)
        events = await conn.fetch(_EVENTS, start)
        decisions = await conn.fetch(_DECISIONS, start)
        sent = await conn.fetch(_SENT, start)
        window = await conn.fetchrow(_SENT_WINDOW, start)
        ended = await conn.fetch(_ENDED, start)

    p50: list[float | None] = [None] * minutes
    p99: list[float | None] = [None] * minutes
    for r in sent:
        i = int((r["m"] - start).total_seconds() // 60)
        if 0 <= i < minutes:
            p50[i], p99[i] = _round(r["p50"]), _round(r["p99"])
    body: dict[str, Any] = {
        "generated_at": format_ts(now),
        "start": format_ts(start),
        "step_s": 60,
        "minutes": minutes,
        "pings": _bucketed(pings, start, minutes, ("",))[""],
        "events": _bucketed(events, start, minutes, ("enter", "dwell", "exit")),
        "decisions": _bucketed(decisions, start, minutes, ("queued", "suppressed", "control")),
        "sent": _bucketed(sent, start, minutes, ("",))[""],
        "failed": _bucketed([r for r in ended if r["status"] == "failed"], start, minutes),
        "cancelled": _bucketed([r for r in ended if r["status"] == "cancelled"], start,
                               minutes),
        "latency": {"p50": p50, "p99": p99, "window": {
            "count": window["n"], "p50": _round(window["p50"]), "p99": _round(window["p99"])}},
    }
    return body
