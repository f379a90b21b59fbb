"""One ping batch, end to end, in one transaction: filters, geofences, visits, decisions.

The device row is locked first (`FOR UPDATE`), so two batches of one device arriving at two
processes are applied one after the other and can never both fire the same enter. Every
write is one statement per batch (arrays through `unnest`), never one per ping. The answer
goes back only after COMMIT: an acknowledged ping, its events and its queued deliveries are
durable.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import numpy as np

from geopush.codes import EventType
from geopush.config import Config
from geopush.errors import Forbidden, Unauthorized
from geopush.geo.filters import LastFix, PingRules, filter_pings
from geopush.geo.visits import DeviceVisits, OpenVisit, Step, VisitEvent, VisitRules, advance
from geopush.ingest.decisions import DecisionSummary, decide_events
from geopush.loyalty.checkins import LoyaltyTally, record_checkins
from geopush.store.geofence_index import LiveGeofenceIndex

_LOCK_DEVICE = """
SELECT device_id, customer_id, consent_location, consent_push, consent_categories,
       fcm_token, fcm_token_active, locale, timezone, last_ping_ts, last_lat, last_lon
FROM devices WHERE device_id = $1 FOR UPDATE
"""
_PRIOR_BATCH = "SELECT response FROM ping_batches WHERE device_id = $1 AND batch_id = $2"
_OPEN_VISITS = """
SELECT geofence_id, entered_at, dwell_fired, last_inside FROM visits WHERE device_id = $1
"""
_INSERT_PINGS = """
INSERT INTO pings (device_id, ts, lat, lon, accuracy_m, speed_mps)
SELECT $1, * FROM unnest($2::timestamptz[], $3::float8[], $4::float8[], $5::float8[],
                         $6::float8[])
ON CONFLICT DO NOTHING
"""
_UPDATE_LAST_FIX = """
UPDATE devices SET last_ping_ts = $2, last_lat = $3, last_lon = $4 WHERE device_id = $1
"""
_DELETE_VISITS = "DELETE FROM visits WHERE device_id = $1 AND geofence_id = ANY($2::uuid[])"
_UPSERT_VISITS = """
INSERT INTO visits (device_id, geofence_id, entered_at, dwell_fired, last_inside)
SELECT $1, * FROM unnest($2::uuid[], $3::timestamptz[], $4::bool[], $5::bool[])
ON CONFLICT (device_id, geofence_id) DO UPDATE
SET entered_at = EXCLUDED.entered_at, dwell_fired = EXCLUDED.dwell_fired,
    last_inside = EXCLUDED.last_inside
"""
_INSERT_EVENTS = """
INSERT INTO events (event_id, device_id, geofence_id, store_id, type, ts, source)
SELECT u.event_id, $1, u.geofence_id, u.store_id, u.type, u.ts, $7
FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::timestamptz[])
     AS u(event_id, geofence_id, store_id, type, ts)
"""
_SAVE_BATCH = """
INSERT INTO ping_batches (device_id, batch_id, response) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING
"""


@dataclass
class BatchResult:
    """The answer of `POST /v1/pings` and what the metrics need to know about it."""

    response: dict[str, Any]
    replayed: bool = False
    events: list[VisitEvent] = field(default_factory=list)
    decisions: DecisionSummary = field(default_factory=DecisionSummary)
    loyalty: LoyaltyTally = field(default_factory=LoyaltyTally)


def ping_rules(config: Config) -> PingRules:
    g = config.geo
    return PingRules(
        future_skew_s=g.future_skew_s, max_ping_age_s=g.max_ping_age_s,
        max_accuracy_m=g.max_accuracy_m, max_speed_mps=g.max_speed_mps,
    )


def visit_rules(config: Config) -> VisitRules:
    return VisitRules(visit_timeout_s=config.geo.visit_timeout_s,
                      exit_buffer_m=config.geo.exit_buffer_m)


def event_json(event: VisitEvent) -> dict[str, Any]:
    return {"type": str(event.type), "geofence_id": event.geofence_id,
            "ts": event.ts.isoformat().replace("+00:00", "Z")}


async def process_batch(
    conn: asyncpg.Connection,
    fences: LiveGeofenceIndex,
    config: Config,
    device_id: UUID,
    raw_pings: list[Any],
    batch_id: str | None,
    now: datetime,
) -> BatchResult:
    """Apply one batch for one device; the caller holds the transaction."""
    device = await conn.fetchrow(_LOCK_DEVICE, device_id)
    if device is None:
        raise Unauthorized("unknown device token")
    if not device["consent_location"]:
        raise Forbidden("the device has not consented to location; pings are not stored",
                        code="no_location_consent")
    if batch_id is not None:
        prior = await conn.fetchval(_PRIOR_BATCH, device_id, batch_id)
        if prior is not None:
            return BatchResult(response=prior, replayed=True)

    last = None
    if device["last_ping_ts"] is not None:
        last = LastFix(device["last_ping_ts"], device["last_lat"], device["last_lon"])
    filtered = filter_pings(raw_pings, last, now, ping_rules(config))
    accepted = filtered.accepted
    events: list[VisitEvent] = []
    summary = DecisionSummary()
    loyalty = LoyaltyTally()
    if accepted:
        events = await _apply_visits(conn, fences, config, device, accepted)
        await conn.execute(
            _INSERT_PINGS, device_id,
            [p.ts for p in accepted], [p.lat for p in accepted], [p.lon for p in accepted],
            [p.accuracy_m for p in accepted], [p.speed_mps for p in accepted],
        )
        final = filtered.last
        assert final is not None
        await conn.execute(_UPDATE_LAST_FIX, device_id, final.ts, final.lat, final.lon)
        if events:
            store_of = {
                e.geofence_id: info.store_id
                for e in events if (info := fences.info.get(e.geofence_id))
            }
            event_ids = await insert_events(conn, store_of, device_id, events, "ping")
            loyalty = await record_checkins(conn, config, device, events, event_ids, store_of,
                                            now)
            summary = await decide_events(conn, config, store_of, device, events, event_ids, now)

    response = {
        "accepted": len(accepted),
        "rejected": [{"index": i, "reason": str(r)} for i, r in filtered.rejected],
        "events": [event_json(e) for e in events],
    }
    if batch_id is not None:
        await conn.execute(_SAVE_BATCH, device_id, batch_id, response)
    return BatchResult(response=response, events=events, decisions=summary, loyalty=loyalty)


async def _apply_visits(
    conn: asyncpg.Connection,
    fences: LiveGeofenceIndex,
    config: Config,
    device: asyncpg.Record,
    accepted: list[Any],
) -> list[VisitEvent]:
    rules = visit_rules(config)
    lons = np.fromiter((p.lon for p in accepted), dtype=np.float64, count=len(accepted))
    lats = np.fromiter((p.lat for p in accepted), dtype=np.float64, count=len(accepted))
    inside, near = fences.index.locate(lons, lats, rules.exit_buffer_m)
    steps = [Step(p.ts, inside[i], near[i]) for i, p in enumerate(accepted)]
    rows = await conn.fetch(_OPEN_VISITS, device["device_id"])
    before = {
        str(r["geofence_id"]): OpenVisit(str(r["geofence_id"]), r["entered_at"],
                                         r["dwell_fired"], r["last_inside"])
        for r in rows
    }
    state = DeviceVisits(last_ts=device["last_ping_ts"], open=dict(before))
    after, events = advance(state, steps, fences.dwell_s, rules)
    closed = [gid for gid in before if gid not in after.open]
    if closed:
        await conn.execute(_DELETE_VISITS, device["device_id"], closed)
    changed = [v for gid, v in after.open.items() if before.get(gid) != v]
    if changed:
        await conn.execute(
            _UPSERT_VISITS, device["device_id"],
            [v.geofence_id for v in changed], [v.entered_at for v in changed],
            [v.dwell_fired for v in changed], [v.last_inside for v in changed],
        )
    return events


async def insert_events(
    conn: asyncpg.Connection,
    store_of: dict[str, str | None],
    device_id: UUID,
    events: list[VisitEvent],
    source: str,
) -> list[UUID]:
    """Store events (one statement) and return their new ids, in order."""
    ids = [uuid.uuid4() for _ in events]
    await conn.execute(
        _INSERT_EVENTS, device_id, ids, [e.geofence_id for e in events],
        [store_of.get(e.geofence_id) for e in events],
        [str(e.type) for e in events], [e.ts for e in events], source,
    )
    return ids


__all__ = ["BatchResult", "EventType", "insert_events", "process_batch"]
