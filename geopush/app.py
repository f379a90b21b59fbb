"""`create_app(config)`: routes, middlewares and the resources one process runs."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from aiohttp import web

from geopush.api import devices, geofences, health, keys, offers, pings, stores
from geopush.api.auth import role_middleware
from geopush.api.errors import error_middleware
from geopush.api.runtime import RUNTIME, Runtime, utc_now
from geopush.config import Config
from geopush.identity import CustomerLinkKeys
from geopush.store.database import create_pool, resolve_database_url
from geopush.store.geofence_index import LiveGeofenceIndex
from geopush.store.keys import hash_secret
from geopush.store.migrations import migrate

log = logging.getLogger(__name__)

MAX_HEADER_FIELD_BYTES = 64 * 1024


def _route_modules() -> list:
    from geopush.api import (
        alerts,
        challenges,
        crm,
        deliveries,
        foresight,
        insights,
        loyalty,
        offer_daily,
        offer_stats,
        ops,
        ops_timeseries,
        pages,
        preferences,
        reference,
        service,
    )

    return [health, keys, devices, pings, stores, geofences, foresight, offers, offer_stats, crm,
            deliveries, ops,
            pages, ops_timeseries, offer_daily,
            insights,
            reference,
            loyalty, challenges,
            alerts, service, preferences]


def _freeze_startup_objects() -> None:
    """Keep what start-up built out of the garbage collector's full passes.

    Modules, the index, the SDKs: hundreds of thousands of objects that live as long as
    the process. A full collection walks them all, holding the GIL for a tenth of a second
    or more, and a large import allocates enough to trigger several: every request waited
    meanwhile. Frozen (`gc.freeze`), they are skipped, and a full pass walks only what was
    allocated since.
    """
    gc.collect()
    gc.freeze()


def create_app(config: Config, *, database_url: str | None = None,
               limits_clock: Callable[[], datetime] | None = None) -> web.Application:
    """The aiohttp application; database, index and background work start with it.

    `limits_clock` replaces the database clock of the registration limits (tests only)."""
    app = web.Application(
        middlewares=[error_middleware, role_middleware],
        client_max_size=config.limits.max_body_bytes,
        # aiohttp refuses a header field over 8 KiB itself, with a plain-text 400 the
        # error middleware never sees; up to this size it reaches the handlers, so an
        # oversized Authorization header gets the JSON 401 like any other bad key.
        # Likewise a request line up to this size reaches the middleware, which answers a URL
        # over `MAX_URL_BYTES` with a JSON 414.
        handler_args={"max_field_size": MAX_HEADER_FIELD_BYTES,
                      "max_line_size": MAX_HEADER_FIELD_BYTES},
    )
    for module in _route_modules():
        app.add_routes(module.routes())

    async def resources(app: web.Application) -> AsyncIterator[None]:
        url = database_url
        if url is None:
            url = await asyncio.get_running_loop().run_in_executor(
                None, resolve_database_url, config)
        pool = await create_pool(url, config.database.pool_size,
                                 acquire_timeout=config.database.acquire_timeout_s)
        async with pool.acquire() as conn:
            await migrate(conn, distributed=config.database.distributed)
        fences = LiveGeofenceIndex(buffer_m=config.geo.exit_buffer_m)
        await fences.reload(pool)
        bootstrap = config.auth.bootstrap_admin_key
        from geopush.insights.mining_pool import MiningPool
        from geopush.insights.refresh import RulesRefresher

        miner = MiningPool()
        rt = Runtime(config=config, pool=pool, fences=fences, miner=miner,
                     rules=RulesRefresher(miner, url, config, utc_now), database_url=url,
                     bootstrap_admin_hash=hash_secret(bootstrap) if bootstrap else None,
                     link_keys=CustomerLinkKeys.from_config(
                         config.auth.customer_link_secret,
                         config.auth.customer_link_public_key_file),
                     limits_clock=limits_clock)
        app[RUNTIME] = rt
        tasks = [asyncio.create_task(fences.follow(pool, url), name="geofence-listener")]
        await rt.offer_keys.reload(pool)
        tasks.append(asyncio.create_task(rt.offer_keys.follow(pool, url),
                                         name="offer-keys-listener"))
        # Always: the sweeper and retention run on every node; the sender only where
        # [server] run_sender is true (Background decides).
        from geopush.background import Background

        background = Background(config, url, rt.miner)
        background.start()
        _freeze_startup_objects()
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, background.stop)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await rt.rules.close()
            rt.miner.shutdown()
            await pool.close()

    app.cleanup_ctx.append(resources)
    return app
