"""Recognition by name (SPEC section 15): staff hear that a best customer walked in.

For an `enter` at a store by a device linked to a customer who consented to recognition
and is in segment `best` or at `[recognition] min_level` or above, one `vip_arrival` store
alert per store per customer per local day of the store, queued through the store alerts
outbox in the ingest transaction (never waiting on the store). The once-a-day rule is a
primary key (`recognition_arrivals`): the insert that wins queues the alert.

Cost: nothing is read unless the batch has an enter at a store and the device is linked;
then one query tells whether the customer is eligible at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from geopush.alerts.outbox import enqueue_alert
from geopush.campaigns.decide import zone
from geopush.codes import EventType, Segment
from geopush.config import Config
from geopush.geo.visits import VisitEvent
from geopush.loyalty.levels import subject_totals
from geopush.loyalty.rules import level_for
from geopush.store.preferences import read_preferences
from geopush.timefmt import format_ts

ALERT_TYPE = "vip_arrival"

# Two reads, not a join: devices are distributed by device and customers by customer on a
# Citus cluster, which cannot join them in one statement.
_CONSENT = "SELECT consent_recognition FROM devices WHERE device_id = $1"
_WHO = """
SELECT c.first_name, coalesce(c.segment, 'unknown') AS segment,
       coalesce((SELECT r.categories FROM customer_recommendations r
                 WHERE r.customer_id = c.customer_id), '{}') AS recommended
FROM customers c WHERE c.customer_id = $1
"""
_STORE_ZONES = "SELECT store_id, timezone FROM stores WHERE store_id = ANY($1::uuid[])"
_CLAIM_DAY = """
INSERT INTO recognition_arrivals (store_id, subject, day) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING RETURNING store_id
"""
_SET_ALERT = """
UPDATE recognition_arrivals SET alert_id = $4 WHERE store_id = $1 AND subject = $2 AND day = $3
"""
# The customer's last arrival at this store before this one, on any of their devices.
_LAST_VISIT = """
SELECT max(e.ts) FROM events e JOIN devices d ON d.device_id = e.device_id
WHERE d.customer_id = $1 AND e.store_id = $2 AND e.type = 'enter' AND e.ts < $3
"""


def eligible(config: Config, segment: str, level: str) -> bool:
    """Segment `best`, or a level at or above `[recognition] min_level`."""
    levels = config.loyalty.levels
    return segment == Segment.BEST or levels.get(level, -1) >= levels[
        config.recognition.min_level]


async def recognize_arrivals(conn: asyncpg.Connection, config: Config,
                             store_of: dict[str, str | None], device: asyncpg.Record,
                             events: Sequence[VisitEvent]) -> int:
    """Queue the day's first `vip_arrival` per store entered in this batch; how many."""
    customer_id = device["customer_id"]
    if not config.recognition.enabled or customer_id is None:
        return 0
    arrivals: dict[str, datetime] = {}
    for e in events:
        store_id = store_of.get(e.geofence_id)
        if e.type is EventType.ENTER and store_id and store_id not in arrivals:
            arrivals[store_id] = e.ts
    if not arrivals:
        return 0
    if not await conn.fetchval(_CONSENT, device["device_id"]):
        return 0
    row = await conn.fetchrow(_WHO, customer_id)
    who: dict[str, Any] = dict(row) if row is not None else {
        "first_name": None, "segment": "unknown", "recommended": []}
    subject = f"c:{customer_id}"
    _, lifetime = await subject_totals(conn, subject)
    level = level_for(lifetime, config.loyalty.levels)
    if not eligible(config, who["segment"], level):
        return 0
    zones = {str(r["store_id"]): r["timezone"]
             for r in await conn.fetch(_STORE_ZONES, list(arrivals))}
    queued = 0
    preferences: dict[str, Any] | None = None
    for store_id, ts in arrivals.items():
        store = UUID(store_id)
        day = ts.astimezone(zone(zones.get(store_id))).date()
        if await conn.fetchval(_CLAIM_DAY, store, subject, day) is None:
            continue  # greeted here already today
        if preferences is None:
            preferences = (await read_preferences(conn, subject)).as_json()
        last = await conn.fetchval(_LAST_VISIT, customer_id, store, ts)
        alert_id = await enqueue_alert(conn, store, ALERT_TYPE, {
            "arrived_at": format_ts(ts),
            "first_name": who["first_name"],
            "level": level,
            "segment": who["segment"],
            "last_visit": None if last is None else format_ts(last),
            "preferences": preferences,
            "recommended_categories": list(who["recommended"]),
        }, device_id=device["device_id"], customer_id=customer_id)
        if alert_id is not None:
            await conn.execute(_SET_ALERT, store, subject, day, alert_id)
            queued += 1
    return queued
