"""Dwell for phones that stop sending: a visit whose device's last ping was inside gets its
dwell when the time is up, even without another ping (SPEC section 3), unless the device
has been silent past `visit_timeout_s` (its visit is over, only not yet closed) or has
withdrawn location consent (SPEC section 10: the sweeper fires nothing for it; the
withdrawal also closed its visits, this is the check under the lock).

Each device is handled in its own transaction under the same device row lock as ingest
(`SKIP LOCKED`: a device whose batch is being processed is left for the next sweep), and the
visit is read again under the lock, so a ping and the sweeper never both fire one dwell.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from geopush import metrics
from geopush.codes import EventType
from geopush.config import Config
from geopush.geo.visits import VisitEvent
from geopush.ingest.decisions import decide_events, decide_offers
from geopush.ingest.pipeline import insert_events
from geopush.loyalty.checkins import record_checkins

# A device silent for longer than visit_timeout_s gets no dwell: its next ping will close
# the visit with an exit stamped at its last ping, which must not precede a dwell.
_DUE_DEVICES = """
SELECT DISTINCT v.device_id FROM visits v JOIN geofences g USING (geofence_id)
JOIN devices d ON d.device_id = v.device_id
WHERE NOT v.dwell_fired AND v.last_inside AND g.enabled AND d.consent_location
  AND v.entered_at + make_interval(secs => g.dwell_s) <= $1
  AND d.last_ping_ts >= $1::timestamptz - make_interval(secs => $3)
LIMIT $2
"""
_LOCK_DEVICE = """
SELECT device_id, customer_id, consent_location, consent_push, consent_categories,
       fcm_token, fcm_token_active, locale, timezone
FROM devices WHERE device_id = $1 AND consent_location
  AND last_ping_ts >= $2::timestamptz - make_interval(secs => $3)
FOR UPDATE SKIP LOCKED
"""
# The dwell's end as an interval compare (immutable), not `entered_at + make_interval(...)`
# (stable): Citus refuses a stable function over a column in an UPDATE.
_DUE_VISITS = """
UPDATE visits v SET dwell_fired = true
FROM geofences g
WHERE v.device_id = $1 AND g.geofence_id = v.geofence_id AND NOT v.dwell_fired
  AND v.last_inside AND g.enabled
  AND $2::timestamptz - v.entered_at >= g.dwell_s * interval '1 second'
RETURNING v.geofence_id, g.store_id
"""


async def sweep_dwells(pool: asyncpg.Pool, config: Config, now: datetime,
                       limit: int = 500) -> int:
    """Fire the dwells that are due; return how many fired."""
    fired = 0
    timeout = config.geo.visit_timeout_s
    for row in await pool.fetch(_DUE_DEVICES, now, limit, timeout):
        fired += await _sweep_device(pool, config, row["device_id"], now)
    return fired


async def _sweep_device(pool: asyncpg.Pool, config: Config, device_id: UUID,
                        now: datetime) -> int:
    async with pool.acquire() as conn, conn.transaction():
        device = await conn.fetchrow(_LOCK_DEVICE, device_id, now, config.geo.visit_timeout_s)
        if device is None:
            return 0
        due = await conn.fetch(_DUE_VISITS, device_id, now)
        if not due:
            return 0
        events = [VisitEvent(EventType.DWELL, str(r["geofence_id"]), now) for r in due]
        store_of = {str(r["geofence_id"]): (str(r["store_id"]) if r["store_id"] else None)
                    for r in due}
        ids = await insert_events(conn, store_of, device_id, events, "sweeper")
        loyalty = await record_checkins(conn, config, device, events, ids, store_of, now,
                                        decide_offers)
        summary = await decide_events(conn, config, store_of, device, events, ids, now)
    metrics.EVENTS.labels("dwell").inc(len(events))
    summary.observe()
    loyalty.observe()
    return len(events)
