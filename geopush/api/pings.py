"""`POST /v1/pings`: a device's batch of location fixes, answered after COMMIT."""

from __future__ import annotations

import time
from typing import Annotated, Any

from aiohttp import web
from pydantic import WithJsonSchema

from geopush import metrics
from geopush.api.auth import require_device
from geopush.api.body import read_model
from geopush.api.client_address import client_address
from geopush.api.errors import ApiError
from geopush.api.openapi import BY_DEVICE, PING_ANSWER, documented
from geopush.api.runtime import RUNTIME, Runtime
from geopush.api.schema import Chars, RequestBody
from geopush.api.token_buckets import retry_after
from geopush.geo.filters import PING_SCHEMA
from geopush.ingest.pipeline import ingest_batch

MAX_PINGS = 500

# Each ping is checked on its own by the filters of SPEC section 2: a malformed one is
# rejected as `invalid` with its index, not a 400 for the whole batch. So items are any
# JSON value here; the schema (`geopush.geo.filters.PING_SCHEMA`, beside the check it
# describes) documents what a good ping is.
class PingBatch(RequestBody):
    pings: Annotated[list[Annotated[Any, WithJsonSchema(PING_SCHEMA)]],
                     WithJsonSchema({"type": "array", "items": PING_SCHEMA,
                                     "maxItems": MAX_PINGS})]
    batch_id: Annotated[str, Chars(200, min_length=1)] | None = None


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


@documented("Send a batch of location pings (answered after COMMIT)", auth=BY_DEVICE,
            body=PingBatch, status=202, errors=(403, 429), response=PING_ANSWER)
async def post_pings(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    device_id = await require_device(request, cached=True)
    _check_rate(request, rt, device_id)
    body = await read_model(request, PingBatch)
    pings, batch_id = body.pings, body.batch_id
    if len(pings) > MAX_PINGS:
        raise ApiError(413, "too_many_pings", f"at most {MAX_PINGS} pings per batch")

    started = time.perf_counter()
    result = await ingest_batch(rt.pool, rt.fences, rt.config, device_id, pings, batch_id,
                                rt.now(), rt.offer_keys, common=not rt.on_citus)
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
