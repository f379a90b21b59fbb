"""Which address a request comes from, for the per-address limits.

By default the TCP peer: a client can write anything in `X-Forwarded-For`, so trusting it
would let one host pose as any number of addresses. Behind reverse proxies the peer is the
proxy; the operator then says how many proxies are in front (`[limits] trusted_proxy_hops`),
and the address is the one the outermost trusted proxy saw: that many entries from the
right of `X-Forwarded-For`, each proxy having appended the address it was connected from.
"""

from __future__ import annotations

from aiohttp import web

UNKNOWN = "unknown"


def client_address(request: web.Request, trusted_proxy_hops: int) -> str:
    peer = request.remote or UNKNOWN
    if trusted_proxy_hops <= 0:
        return peer
    forwarded = [
        part.strip()
        for header in request.headers.getall("X-Forwarded-For", [])
        for part in header.split(",")
        if part.strip()
    ]
    if len(forwarded) < trusted_proxy_hops:
        # Fewer entries than proxies: a request that did not come through all of them.
        return forwarded[0] if forwarded else peer
    return forwarded[-trusted_proxy_hops]
