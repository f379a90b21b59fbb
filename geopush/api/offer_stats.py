"""`GET /v1/offers/{offer_id}/stats`: what an offer did, and what it earned (SPEC section 7).

The figures and their definitions are `geopush.store.offer_stats`'s.
"""

from __future__ import annotations

from aiohttp import web

from geopush.api.body import path_id
from geopush.api.errors import not_found
from geopush.api.openapi import BY_STATS, documented
from geopush.api.runtime import RUNTIME
from geopush.store.offer_stats import read_offer_stats


@documented("An offer's funnel, suppressions and conversion lift", auth=BY_STATS)
async def get_offer_stats(request: web.Request) -> web.Response:
    offer_id = path_id(request, "offer_id", "offer")
    rt = request.app[RUNTIME]
    stats = await read_offer_stats(rt.pool, offer_id, rt.config.campaigns.conversion_window_days)
    if stats is None:
        raise not_found("offer")
    return web.json_response(stats)


def routes() -> list[web.RouteDef]:
    return [web.get("/v1/offers/{offer_id}/stats", get_offer_stats)]
