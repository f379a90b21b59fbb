"""Liveness, readiness and Prometheus metrics: open to anyone, no personal data."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from geopush import metrics
from geopush.alerts.outbox import depth as alerts_depth
from geopush.api.errors import error_response
from geopush.api.openapi import documented
from geopush.api.runtime import RUNTIME
from geopush.delivery.outbox import outbox_depth
from geopush.store.migrations import pending


@documented("Liveness: the process answers",
            response={"type": "object", "properties": {"status": {"const": "ok"}}})
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@documented("Readiness: database, migrations and geofence index")
async def readyz(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(2):
            async with rt.pool.acquire() as conn:
                waiting = await pending(conn)
        checks["database"] = "ok"
        checks["migrations"] = "ok" if not waiting else f"pending: {', '.join(waiting)}"
    except Exception:  # any failure to reach the database means not ready
        checks["database"] = "unavailable"
        checks["migrations"] = "unknown"
    checks["geofence_index"] = "ok" if rt.fences.loaded else "loading"
    if all(v == "ok" for v in checks.values()):
        return web.json_response({"status": "ready", "checks": checks,
                                  "geofences": len(rt.fences.info)})
    return error_response(503, "not_ready", "not ready", [checks], headers={"Retry-After": "2"})


@documented("Prometheus metrics", media="text/plain", response={"type": "string"})
async def metrics_text(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    try:
        async with asyncio.timeout(1):
            depth = await outbox_depth(rt.pool)
        metrics.OUTBOX_DEPTH.set(depth)
        async with asyncio.timeout(1), rt.pool.acquire() as conn:
            metrics.ALERTS_OUTBOX_DEPTH.set(await alerts_depth(conn))
    except Exception:  # the gauge keeps its last value; metrics answer without the database
        pass
    body = metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.get("/metrics", metrics_text),
    ]
