"""`POST /v1/pings`: a device's batch of location fixes, answered after COMMIT."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from geopush import metrics
from geopush.api.auth import require_device
from geopush.api.body import field_error, read_object
from geopush.api.client_address import client_address
from geopush.api.errors import ApiError
from geopush.api.token_buckets import retry_after
from geopush.ingest.pipeline import process_batch
from geopush.runtime import RUNTIME, Runtime

MAX_PINGS = 500


def _check_rate(request: web.Request, rt: Runtime, device_id: Any) -> None:
    """Token buckets of this process: per device (`device_rate_per_s`), and per client
    address (`address_ping_rate_per_s`) for the many devices one host can register."""
    now = time.monotonic()
    wait = rt.device_rate.take(device_id, now)
    if wait > 0:
        raise ApiError(429, "rate_limited", "too many ping batches for this device",
                       headers={"Retry-After": retry_after(wait)})
    address = client_address(request, rt.config.limits.trusted_proxy_hops)
    wait = rt.address_rate.take(address, now)
    if wait > 0:
        raise ApiError(429, "rate_limited", "too many ping batches from this address",
                       headers={"Retry-After": retry_after(wait)})


async def post_pings(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    device_id = await require_device(request)
    _check_rate(request, rt, device_id)
    body = await read_object(request)
    pings = body.get("pings")
    if not isinstance(pings, list):
        raise field_error("pings", "must be a list of pings")
    if len(pings) > MAX_PINGS:
        raise ApiError(413, "too_many_pings", f"at most {MAX_PINGS} pings per batch")
    batch_id = body.get("batch_id")
    if batch_id is not None and (not isinstance(batch_id, str) or not 0 < len(batch_id) <= 200):
        raise field_error("batch_id", "must be a string of 1 to 200 characters")

    started = time.perf_counter()
    async with rt.pool.acquire() as conn, conn.transaction():
        result = await process_batch(
            conn, rt.fences, rt.config, device_id, pings, batch_id, rt.now()
        )
    metrics.INGEST.observe(time.perf_counter() - started)
    if not result.replayed:
        response = result.response
        metrics.PINGS.labels("accepted", "").inc(response["accepted"])
        for item in response["rejected"]:
            metrics.PINGS.labels("rejected", item["reason"]).inc()
        for event in result.events:
            metrics.EVENTS.labels(str(event.type)).inc()
        result.decisions.observe()
        result.loyalty.observe()
    return web.json_response(result.response, status=202)


def routes() -> list[web.RouteDef]:
    return [web.post("/v1/pings", post_pings)]
