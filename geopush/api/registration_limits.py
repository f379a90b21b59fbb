"""`POST /v1/devices` rate limits (SPEC section 10), per app key and per client address.

The app key ships inside every app, so it identifies nobody: without these limits anyone
could mint devices without end (each a fresh per-device ping allowance). The counts live in
PostgreSQL (`geopush.store.rate_windows`), so the limits hold across all processes and
machines sharing the database.
"""

from __future__ import annotations

from aiohttp import web

from geopush.api.auth import Principal
from geopush.api.client_address import client_address
from geopush.api.errors import ApiError
from geopush.api.token_buckets import retry_after
from geopush.runtime import RUNTIME
from geopush.store.rate_windows import Limit, hit

WINDOW_S = 60.0


async def check_registration_rate(request: web.Request, principal: Principal) -> None:
    """Count this registration; 429 with Retry-After when the key or the address is over."""
    rt = request.app[RUNTIME]
    limits = rt.config.limits
    address = client_address(request, limits.trusted_proxy_hops)
    wait = await hit(rt.pool, [
        Limit(f"register:key:{principal.key_id}", limits.register_key_rate_per_min),
        Limit(f"register:addr:{address}", limits.register_rate_per_min),
    ], WINDOW_S)
    if wait > 0:
        raise ApiError(429, "rate_limited", "too many device registrations, try again later",
                       headers={"Retry-After": retry_after(wait)})
