"""`GET /v1/offers/{offer_id}/stats/daily`: an offer's funnel day by day, for the charts.

Days are UTC calendar days, the last `days` (default 30, at most 366) ending today. Each
figure is counted on the day it happened: `triggered` and `control` on the decision's day,
`queued` on the delivery's creation, `sent` on FCM's acceptance, `opened` and `redeemed`
on the app's report. Over every day the sums are the figures of `/stats` for that period.
"""

from __future__ import annotations

from datetime import UTC

from aiohttp import web

from geopush.api.body import path_id, query_int
from geopush.api.errors import not_found
from geopush.api.openapi import BY_STATS, Query, documented
from geopush.api.runtime import RUNTIME
from geopush.store.offer_stats import offer_daily

DEFAULT_DAYS = 30
MAX_DAYS = 366


@documented("An offer's sends, opens and redemptions per day", auth=BY_STATS,
            query=(Query("days", {"type": "integer", "minimum": 1}),))
async def get_offer_daily(request: web.Request) -> web.Response:
    offer_id = path_id(request, "offer_id", "offer")
    days = query_int(request, "days", DEFAULT_DAYS, 1, MAX_DAYS)
    rt = request.app[RUNTIME]
    answer = await offer_daily(rt.pool, offer_id, rt.now().astimezone(UTC).date(), days)
    if answer is None:
        raise not_found("offer")
    return web.json_response(answer)


def routes() -> list[web.RouteDef]:
    return [web.get("/v1/offers/{offer_id}/stats/daily", get_offer_daily)]
