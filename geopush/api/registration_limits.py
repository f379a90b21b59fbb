"""`POST /v1/devices` rate limits (SPEC section 10), per client address and per network.

The app key ships inside every app, so it identifies nobody: without these limits anyone
could mint devices without end (each a fresh per-device ping allowance). The counts live in
PostgreSQL (`geopush.store.rate_windows`), so the limits hold across all processes and
machines sharing the database.

Each budget belongs to the ones who spend it: an address (a carrier's NAT may hold many
phones: `register_rate_per_min`), and its network (an IPv4 /24 or IPv6 /48, what one host
or one small provider can rotate through: `register_network_rate_per_min`). A budget shared
by every install, per app key, would let ten addresses lock every genuine phone out, so
`register_key_rate_per_min` is off (0) unless an operator wants a ceiling for the whole app.
"""

from __future__ import annotations

import ipaddress

from aiohttp import web

from geopush.api.auth import Principal
from geopush.api.client_address import client_address
from geopush.api.errors import ApiError
from geopush.api.runtime import RUNTIME
from geopush.api.token_buckets import retry_after
from geopush.store.rate_windows import Limit, hit


async def check_registration_rate(request: web.Request, principal: Principal) -> None:
    """Count this registration; 429 with Retry-After when the key or the address is over."""
    rt = request.app[RUNTIME]
    limits = rt.config.limits
    address = client_address(request, limits.trusted_proxy_hops)
    budgets = [
        Limit(f"register:addr:{address}", limits.register_rate_per_min),
        Limit(f"register:net:{network_of(address)}", limits.register_network_rate_per_min),
    ]
    if limits.register_key_rate_per_min:
        budgets.append(Limit(f"register:key:{principal.key_id}",
                             limits.register_key_rate_per_min))
    at = rt.limits_clock() if rt.limits_clock else None
    wait = await hit(rt.pool, budgets, limits.register_window_s, at)
    if wait > 0:
        raise ApiError(429, "rate_limited", "too many device registrations, try again later",
                       headers={"Retry-After": retry_after(wait)})


def network_of(address: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) an address is in; the address itself if it is none."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
