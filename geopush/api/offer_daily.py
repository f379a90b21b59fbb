"""`GET /v1/offers/{offer_id}/stats/daily`: an offer's funnel day by day, for the charts.

Days are UTC calendar days, the last `days` (default 30, at most 366) ending today. Each
figure is counted on the day it happened: `triggered` and `control` on the decision's day,
`queued` on the delivery's creation, `sent` on FCM's acceptance, `opened` and `redeemed`
on the app's report. Over every day the sums are the figures of `/stats` for that period.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp import web

from geopush.api.body import path_id, query_int
from geopush.api.errors import not_found
from geopush.api.openapi import BY_STATS, Query, documented
from geopush.api.runtime import RUNTIME

DEFAULT_DAYS = 30
MAX_DAYS = 366

# Each branch counts one figure per UTC day; the union is one round trip.
_DAILY = """
SELECT d, k, n FROM (
    SELECT (decided_at AT TIME ZONE 'UTC')::date AS d, 'triggered' AS k,
           count(DISTINCT event_id) + count(*) FILTER (WHERE event_id IS NULL) AS n
    FROM decisions WHERE offer_id = $1 AND decided_at >= $2 GROUP BY 1
    UNION ALL
    SELECT day, 'triggered', sum(events)::bigint FROM decisions_pruned
    WHERE offer_id = $1 AND day >= ($2 AT TIME ZONE 'UTC')::date GROUP BY 1
    UNION ALL
    SELECT (decided_at AT TIME ZONE 'UTC')::date, 'control', count(*)
    FROM decisions WHERE offer_id = $1 AND decided_at >= $2 AND outcome = 'control' GROUP BY 1
    UNION ALL
    SELECT (created_at AT TIME ZONE 'UTC')::date, 'queued', count(*)
    FROM deliveries WHERE offer_id = $1 AND created_at >= $2 GROUP BY 1
    UNION ALL
    SELECT (sent_at AT TIME ZONE 'UTC')::date, 'sent', count(*)
    FROM deliveries WHERE offer_id = $1 AND sent_at >= $2 AND status = 'sent' GROUP BY 1
    UNION ALL
    SELECT (opened_at AT TIME ZONE 'UTC')::date, 'opened', count(*)
    FROM deliveries WHERE offer_id = $1 AND opened_at >= $2 GROUP BY 1
    UNION ALL
    SELECT (redeemed_at AT TIME ZONE 'UTC')::date, 'redeemed', count(*)
    FROM deliveries WHERE offer_id = $1 AND redeemed_at >= $2 GROUP BY 1
) per_day
"""
_KEYS = ("triggered", "control", "queued", "sent", "opened", "redeemed")


@documented("An offer's sends, opens and redemptions per day", auth=BY_STATS,
            query=(Query("days", {"type": "integer", "minimum": 1}),))
async def get_offer_daily(request: web.Request) -> web.Response:
    offer_id = path_id(request, "offer_id", "offer")
    days = query_int(request, "days", DEFAULT_DAYS, 1, MAX_DAYS)
    today = request.app[RUNTIME].now().astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    since = datetime(first.year, first.month, first.day, tzinfo=UTC)
    async with request.app[RUNTIME].pool.acquire() as conn, conn.transaction(
        readonly=True, isolation="repeatable_read"
    ):
        if not await conn.fetchval("SELECT true FROM offers WHERE offer_id = $1", offer_id):
            raise not_found("offer")
        rows = await conn.fetch(_DAILY, offer_id, since)
    series = {k: [0] * days for k in _KEYS}
    for r in rows:
        i = (r["d"] - first).days
        if 0 <= i < days:
            series[r["k"]][i] += r["n"]
    return web.json_response({
        "offer_id": str(offer_id),
        "days": [(first + timedelta(days=i)).isoformat() for i in range(days)],
        **series,
    })


def routes() -> list[web.RouteDef]:
    return [web.get("/v1/offers/{offer_id}/stats/daily", get_offer_daily)]
