"""The summary behind the ops dashboard (`GET /v1/ops/summary`); the page is in pages.py,
the queries and the shape in `geopush.store.ops_summary`."""

from __future__ import annotations

from aiohttp import web

from geopush.api.body import query_int
from geopush.api.openapi import BY_OPS, Query, documented
from geopush.api.runtime import RUNTIME
from geopush.store.ops_summary import ops_summary

DEFAULT_WINDOW_H = 24
MAX_WINDOW_H = 30 * 24


@documented("Outbox, deliveries, funnels and pings for the dashboard", auth=BY_OPS,
            query=(Query("hours", {"type": "integer", "minimum": 1}),))
async def summary(request: web.Request) -> web.Response:
    """Outbox, deliveries, failures, offer funnels, geofences and pings, for the dashboard
    (`geopush.store.ops_summary` reads and shapes them)."""
    hours = query_int(request, "hours", DEFAULT_WINDOW_H, 1, MAX_WINDOW_H)
    rt = request.app[RUNTIME]
    return web.json_response(await ops_summary(rt.pool, rt.now(), hours,
                                               len(rt.fences.info)))


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1/ops/summary", summary),
    ]
