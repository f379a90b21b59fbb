"""`GET /v1/ops/timeseries`: what the service did minute by minute, for the ops dashboard
(the queries and the answer's shape are `geopush.store.ops_timeseries`)."""

from __future__ import annotations

from aiohttp import web

from geopush.api.body import query_int
from geopush.api.openapi import BY_OPS, Query, documented
from geopush.api.runtime import RUNTIME
from geopush.store.ops_timeseries import ops_timeseries

DEFAULT_MINUTES = 60
MAX_MINUTES = 24 * 60


@documented("Per-minute counts for the dashboard charts", auth=BY_OPS,
            query=(Query("minutes", {"type": "integer", "minimum": 1}),))
async def timeseries(request: web.Request) -> web.Response:
    minutes = query_int(request, "minutes", DEFAULT_MINUTES, 1, MAX_MINUTES)
    rt = request.app[RUNTIME]
    return web.json_response(await ops_timeseries(rt.pool, rt.now(), minutes))


def routes() -> list[web.RouteDef]:
    return [web.get("/v1/ops/timeseries", timeseries)]
