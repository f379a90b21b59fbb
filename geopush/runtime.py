"""What one running geopush process shares between its handlers: config, pool, index, clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
from aiohttp import web

from geopush.config import Config
from geopush.identity import CustomerLinkKeys

if TYPE_CHECKING:
    from geopush.store.geofence_index import LiveGeofenceIndex


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    config: Config
    pool: asyncpg.Pool
    fences: LiveGeofenceIndex
    bootstrap_admin_hash: bytes | None = None
    now: Callable[[], datetime] = utc_now
    link_keys: CustomerLinkKeys = field(default_factory=CustomerLinkKeys)
    key_cache: dict[bytes, Any] = field(default_factory=dict)
    # device id -> (window start, count), for the per-device ping rate limit
    rate: dict[Any, list[float]] = field(default_factory=dict)


RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)
