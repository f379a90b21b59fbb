"""Where an alert may go: a store's `alert_url`, checked twice against SSRF.

When a store is written, the URL must be https, or http on a loopback host (SPEC section 15).
When an alert is sent, the host's addresses are resolved by `SafeResolver`, which drops every
address of loopback, private, link-local, multicast or reserved networks unless
`[alerts] allow_private_addresses` is true; the connection can only go to an address it kept,
so a DNS name that points (or later re-points) inside the network reaches nothing. Redirects
are never followed: a 3xx answer fails the alert (`redirect_refused`).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

LOOPBACK_NAMES = frozenset({"localhost"})


class DestinationRefused(OSError):
    """The alert URL's host has no address an alert may reach."""


def is_loopback_host(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a store's alert_url, or None when it can."""
    if len(url) > 2000:
        return "must be at most 2000 characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "is not a URL"
    if not parts.hostname:
        return "must name a host"
    if parts.username or parts.password:
        return "must not carry credentials"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and is_loopback_host(parts.hostname):
        return None
    return "must be https (http only on a loopback host)"


def address_allowed(address: str, allow_private: bool) -> bool:
    """May an alert connect to this IP address?"""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified or ip.is_multicast:
        return False
    if allow_private:
        return True
    return ip.is_global and not (ip.is_private or ip.is_loopback or ip.is_link_local
                                 or ip.is_reserved)


class SafeResolver(AbstractResolver):
    """aiohttp's resolver with the addresses an alert may not reach removed."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        kept = [a for a in found if address_allowed(a["host"], self.allow_private)]
        if not kept:
            raise DestinationRefused(f"no address of {host!r} may receive alerts")
        return kept

    async def close(self) -> None:
        await self._inner.close()
