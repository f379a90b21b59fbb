"""Outbox upkeep that does not need FCM: expire deliveries past their ttl and cancel the
enter/dwell ones whose visit has ended.

The sender runs it before each claim; a process without FCM credentials runs it on its own
timer, so queued deliveries still end (`failed`/`expired`, `cancelled`/`left_geofence`)
instead of piling up and using up an offer's `max_sends`.
"""

from __future__ import annotations

import asyncpg

from geopush import metrics
from geopush.delivery.outbox import cancel_left, expire

#: Rows settled per statement; the next round takes the rest.
SETTLE_LIMIT = 1000


async def settle_outbox(conn: asyncpg.Connection) -> tuple[int, int]:
    """Expire and cancel what is due; (expired, cancelled) counts, also in the metrics."""
    expired = await expire(conn, SETTLE_LIMIT)
    if expired:
        metrics.DELIVERIES.labels("failed", "expired").inc(expired)
    left = await cancel_left(conn, SETTLE_LIMIT)
    if left:
        metrics.DELIVERIES.labels("cancelled", "left_geofence").inc(left)
    return expired, left
