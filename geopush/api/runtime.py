"""What one running geopush process shares between its handlers: config, pool, index, clock.

HTTP state, so it lives in the API layer: built by `geopush.app` at start, read by the
handlers as `request.app[RUNTIME]`. Everything in it is set when it is constructed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web

from geopush.api.token_buckets import TokenBuckets
from geopush.config import Config
from geopush.identity import CustomerLinkKeys
from geopush.insights.mining_pool import MiningPool
from geopush.insights.refresh import RulesRefresher
from geopush.loyalty.leaderboard import Leaderboards
from geopush.store.geofence_index import LiveGeofenceIndex
from geopush.store.offer_keys import LiveOfferKeys


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    config: Config
    pool: asyncpg.Pool
    fences: LiveGeofenceIndex
    # Basket mining in child processes (the query lane), and the background rules' refresher.
    miner: MiningPool
    rules: RulesRefresher
    database_url: str
    bootstrap_admin_hash: bytes | None = None
    now: Callable[[], datetime] = utc_now
    # The clock the registration limits' windows count by; None: the database's, which all
    # processes share. Tests inject a fixed time so they never wait for a minute boundary.
    limits_clock: Callable[[], datetime] | None = None
    link_keys: CustomerLinkKeys = field(default_factory=CustomerLinkKeys)
    key_cache: dict[bytes, Any] = field(default_factory=dict)
    # The ping rate limits of this process, per device and per client address.
    device_rate: TokenBuckets = field(init=False)
    address_rate: TokenBuckets = field(init=False)
    # Leaderboards computed at most every `[loyalty] leaderboard_refresh_s`, and how often a
    # device may read them.
    leaderboards: Leaderboards = field(init=False)
    leaderboard_rate: TokenBuckets = field(init=False)
    # The active offers' (trigger, target) keys: ingest skips the offer query for events
    # none could match. Unknown (decide all) until app start-up loads them.
    offer_keys: LiveOfferKeys = field(default_factory=LiveOfferKeys)
    # The tables are laid out on a Citus cluster: ingest takes the full path for every batch
    # (the common batch's one-statement function crashes Citus 14.0.1's coordinator).
    on_citus: bool = False

    def __post_init__(self) -> None:
        limits = self.config.limits
        # Bursts of 3 s worth; the maps forget the least recently used beyond their size.
        self.device_rate = TokenBuckets(limits.device_rate_per_s,
                                        max(3.0 * limits.device_rate_per_s, 1.0), 100_000)
        self.address_rate = TokenBuckets(limits.address_ping_rate_per_s,
                                         max(3.0 * limits.address_ping_rate_per_s, 1.0), 20_000)
        self.leaderboards = Leaderboards(self.config.loyalty.leaderboard_refresh_s)
        per_s = limits.leaderboard_rate_per_min / 60.0
        self.leaderboard_rate = TokenBuckets(per_s, max(limits.leaderboard_rate_per_min / 3, 1.0),
                                             100_000)


RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)
