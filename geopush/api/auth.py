"""Bearer credentials: API keys with a role, and device tokens given at registration.

Both are random strings shown once and stored only as SHA-256 hashes (they are 256-bit
random, so a plain hash is enough: there is nothing to brute-force).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from uuid import UUID

from aiohttp import web

from geopush.api.errors import ApiError
from geopush.api.openapi import ATTRIBUTE, Doc
from geopush.api.runtime import RUNTIME
from geopush.codes import Role
from geopush.store.devices import device_by_token_hash
from geopush.store.keys import hash_secret, key_by_hash, new_secret  # noqa: F401  (re-exported)

# Which roles may call what, beyond admin who may call everything.
MARKETER = (Role.MARKETER,)
STATS = (Role.MARKETER, Role.OPS)
OPS = (Role.OPS,)
APP = (Role.APP,)

# How long a process trusts its last look at a key. Revocation must reach every process
# within 1 s (SPEC section 7); a bounded cache needs no listener that could silently drop,
# and one indexed lookup per key and process twice a second costs nothing.
KEY_CACHE_S = 0.5
_KEY_CACHE_MAX = 10_000


@dataclass(frozen=True)
class Principal:
    key_id: str
    role: Role


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "missing bearer credentials",
                       headers={"WWW-Authenticate": "Bearer"})
    return token.strip()


async def require_role(request: web.Request, *roles: Role) -> Principal:
    """The caller's key; 401 without a valid one, 403 when its role may not do this."""
    token = _bearer(request)
    rt = request.app[RUNTIME]
    digest = hash_secret(token)
    principal: Principal | None = None
    if rt.bootstrap_admin_hash is not None and secrets.compare_digest(
        digest, rt.bootstrap_admin_hash
    ):
        principal = Principal("bootstrap", Role.ADMIN)
    else:
        cached = rt.key_cache.get(digest)
        if cached and cached[1] > time.monotonic():
            principal = cached[0]
        else:
            row = await key_by_hash(rt.pool, digest)
            if row is not None:
                principal = Principal(str(row["id"]), Role(row["role"]))
                if len(rt.key_cache) >= _KEY_CACHE_MAX:  # keep memory bounded
                    rt.key_cache.clear()
                rt.key_cache[digest] = (principal, time.monotonic() + KEY_CACHE_S)
    if principal is None:
        raise ApiError(401, "unauthorized", "unknown or revoked key",
                       headers={"WWW-Authenticate": "Bearer"})
    if principal.role is not Role.ADMIN and principal.role not in roles:
        raise ApiError(403, "forbidden", f"role {principal.role} may not do this")
    return principal


# The key of the request being handled: set by the middleware in the request's own task,
# where its handler runs (aiohttp's typed request keys need a newer aiohttp than we ask for).
_PRINCIPAL: ContextVar[Principal] = ContextVar("geopush_principal")


@web.middleware
async def role_middleware(request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                          ) -> web.StreamResponse:
    """Enforce each route's role where it is declared, in `@documented(auth=...)`: a route
    for role keys answers 401/403 here, before its handler reads anything, and its handler
    finds the caller with `caller(request)`."""
    doc: Doc | None = getattr(request.match_info.handler, ATTRIBUTE, None)
    if doc is not None and doc.auth.scheme == "apiKey":
        _PRINCIPAL.set(await require_role(request, *doc.auth.roles))
    return await handler(request)


def caller(request: web.Request) -> Principal:
    """The key `role_middleware` let through for this request."""
    del request  # one per task; the argument keeps call sites explicit about whose it is
    return _PRINCIPAL.get()


# Device token hash -> device id. A token names one device for the device's whole life (an
# erased device's row is gone, so whoever uses the id next finds nothing), so an entry never
# goes stale in a way that matters to a caller that looks the device up by id afterwards.
_DEVICE_IDS: dict[bytes, UUID] = {}
_DEVICE_IDS_MAX = 200_000


async def require_device(request: web.Request, *, cached: bool = False) -> UUID:
    """The device id behind a device token; 401 when the token is unknown or erased.

    `cached`: answer from this process's memory of earlier lookups, for a handler that
    then finds the device by id and answers 401 itself when it is gone (ping ingest).
    """
    token = _bearer(request)
    digest = hash_secret(token)
    if cached and (known := _DEVICE_IDS.get(digest)) is not None:
        return known
    rt = request.app[RUNTIME]
    device_id = await device_by_token_hash(rt.pool, digest)
    if device_id is not None and cached:
        if len(_DEVICE_IDS) >= _DEVICE_IDS_MAX:
            _DEVICE_IDS.clear()
        _DEVICE_IDS[digest] = device_id
    if device_id is None:
        raise ApiError(401, "unauthorized", "unknown device token",
                       headers={"WWW-Authenticate": "Bearer"})
    return device_id
